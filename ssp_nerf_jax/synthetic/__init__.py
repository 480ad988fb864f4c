"""Procedural talking-portrait generator with exact ground truth.

    clip = synthetic.generate_clip(size=96, duration_s=24.0, seed=0)
"""
from ssp_nerf_jax.synthetic.generator import Clip
from ssp_nerf_jax.synthetic.generator import face_rects
from ssp_nerf_jax.synthetic.generator import generate_clip
from ssp_nerf_jax.synthetic.poses import load_pose_track
from ssp_nerf_jax.synthetic.scene import CLASS_COLORS
from ssp_nerf_jax.synthetic.scene import CLASS_NAMES
from ssp_nerf_jax.synthetic.speech import lip_width_from_audio
from ssp_nerf_jax.synthetic.speech import mouth_open_from_audio
from ssp_nerf_jax.synthetic.speech import synthesize_speech

__all__ = [
    'CLASS_COLORS', 'CLASS_NAMES', 'Clip', 'face_rects', 'generate_clip',
    'lip_width_from_audio', 'load_pose_track', 'mouth_open_from_audio',
    'synthesize_speech'
]
