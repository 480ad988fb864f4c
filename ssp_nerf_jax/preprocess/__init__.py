"""Talking-head video -> AD-NeRF/SSP-NeRF processed folder.

    python -m ssp_nerf_jax.preprocess --video=clip.mp4 --out=DIR [--size=512]

Modules: `decode` (25 fps frames, 16 kHz audio), `landmarks` (mediapipe
face mesh, detection, person segmentation), `crop`, `parsing` (11 classes
from landmark polygons + person mask), `skin_tracks` (skin points followed
by optical flow), `pose_fit` (head poses and focal length by bundle
adjustment of landmarks and skin tracks), `background` (the plate),
`pipeline` (the stages in order, written atomically).
"""
