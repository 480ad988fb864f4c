"""Procedural talking-portrait generator with exact ground truth.

    from ssp_nerf_jax import synthetic
    clip = synthetic.generate_clip(size=96, duration_s=24.0, seed=0)

A textured head (static in head space, driven by the real AD-NeRF Obama pose
track), an audio-driven mouth, a neck and torso that sway on their own in the
camera frame, and a static background; speech-like audio; per-pixel class
ids in SSP-NeRF's 11 classes.
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
