"""Builds a complete synthetic talking-portrait clip with exact ground truth."""
import dataclasses
from typing import Tuple

import numpy as np

from ssp_nerf_jax.rendering import rigid
from ssp_nerf_jax.synthetic import poses
from ssp_nerf_jax.synthetic import raycast
from ssp_nerf_jax.synthetic import scene
from ssp_nerf_jax.synthetic import shading
from ssp_nerf_jax.synthetic import speech
from ssp_nerf_jax.synthetic import textures

FPS = 25.0
# Bounds memory while amortising numpy's per-call overhead over frames.
_RAYS_PER_BATCH = 150_000


@dataclasses.dataclass(frozen=True)
class Clip:
  """A synthetic clip: images uint8 [N, H, W, 3], parsing uint8 [N, H, W],
  c2w float32 [N, 4, 4] (camera-to-head, OpenGL), face_rect int32 [N, 4],
  mouth_open float32 [N], audio float32 [T], background uint8 [H, W, 3];
  focal, cx, cy in pixels; near, far from rigid.adnerf_bounds."""
  images: np.ndarray
  parsing: np.ndarray
  c2w: np.ndarray
  face_rect: np.ndarray
  mouth_open: np.ndarray
  audio: np.ndarray
  sample_rate: int
  fps: float
  background: np.ndarray
  focal: float
  cx: float
  cy: float
  near: float
  far: float
  class_names: Tuple[str, ...]

  @property
  def num_frames(self):
    return self.images.shape[0]


def face_rects(parsing):
  """int32 [N, 4] (x, y, w, h) head-class boxes of parsing [N, H, W], or 0s."""
  head = np.isin(parsing, scene.HEAD_CLASSES)
  rects = np.zeros((len(parsing), 4), np.int32)
  rows, cols = head.any(axis=2), head.any(axis=1)
  for i in np.flatnonzero(rows.any(axis=1)):
    y = np.flatnonzero(rows[i])
    x = np.flatnonzero(cols[i])
    rects[i] = (x[0], y[0], x[-1] - x[0] + 1, y[-1] - y[0] + 1)
  return rects


def _to_uint8(rgb):
  return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def _render(c2w, mouth_open, lip_width, torso_rot, torso_trans, background,
            size, focal, cx, cy, supersample):
  """(images uint8 [N, size, size, 3], parsing uint8 [N, size, size]) of
  the frames, each pixel the mean of supersample^2 rays (`generate_clip`)."""
  sub_dirs = raycast.subpixel_directions(size, size, focal, cx, cy,
                                         supersample)
  # Odd supersampling has a ray through each centre, which gives the parsing.
  centre = len(sub_dirs) // 2 if supersample % 2 else None
  num_frames = len(c2w)
  images = np.empty((num_frames, size, size, 3), np.uint8)
  parsing = np.empty((num_frames, size, size), np.uint8)
  batch = max(1, _RAYS_PER_BATCH // (size * size))
  for start in range(0, num_frames, batch):
    s = slice(start, min(start + batch, num_frames))

    def shade(dirs, s=s):
      return shading.shade_frames(c2w[s], mouth_open[s], lip_width[s],
                                  torso_rot[s], torso_trans[s], dirs,
                                  background)

    total = 0.0
    for i, dirs in enumerate(sub_dirs):
      rgb, cls = shade(dirs)
      total = total + rgb
      if i == centre:
        parsing[s] = cls.reshape(-1, size, size)
    if centre is None:
      parsing[s] = shade(raycast.pixel_grid_directions(
          size, size, focal, cx, cy))[1].reshape(-1, size, size)
    images[s] = _to_uint8(total / len(sub_dirs)).reshape(-1, size, size, 3)
  return images, parsing


def generate_clip(size=96, duration_s=24.0, seed=0, supersample=1):
  """A Clip of round(duration_s * 25) square frames, size >= 16 pixels.

  The seed sets the audio (which drives the mouth) and the torso sway; the
  head replays the real pose track forward then backward.  Each pixel's
  colour is the mean of supersample x supersample rays spread over it, as a
  camera's pixel integrates light: one ray per pixel aliases edges and fine
  texture, which then crawl under sub-pixel motion (what sub-pixel skin
  tracking sees).  Parsing is the class at each pixel's centre."""
  if int(size) != size or size < 16:
    raise ValueError(f'size must be an integer >= 16, got {size!r}')
  if int(supersample) != supersample or supersample < 1:
    raise ValueError(
        f'supersample must be an integer >= 1, got {supersample!r}')
  if not duration_s > 0:
    raise ValueError(f'duration_s must be > 0, got {duration_s!r}')
  size = int(size)
  num_frames = max(1, int(round(duration_s * FPS)))
  audio = speech.synthesize_speech(duration_s, speech.SAMPLE_RATE, seed)
  mouth_open = speech.mouth_open_from_audio(audio, speech.SAMPLE_RATE,
                                            num_frames)
  lip_width = speech.lip_width_from_audio(audio, speech.SAMPLE_RATE,
                                          num_frames)

  track, focal450, _, _, _ = poses.load_pose_track()
  c2w = track[rigid.ping_pong_indices(num_frames, len(track))]
  torso_rot, torso_trans = scene.torso_poses(num_frames, track, seed, FPS)
  focal = focal450 * size / poses.TRACK_SIZE
  cx = cy = size / 2.0
  near, far = rigid.adnerf_bounds(c2w)

  background = textures.background_plate(size, size)
  images, parsing = _render(c2w, mouth_open, lip_width, torso_rot,
                            torso_trans, background, size, focal, cx, cy,
                            int(supersample))
  return Clip(
      images=images, parsing=parsing, c2w=c2w.astype(np.float32),
      face_rect=face_rects(parsing), mouth_open=mouth_open, audio=audio,
      sample_rate=speech.SAMPLE_RATE, fps=FPS,
      background=_to_uint8(background).reshape(size, size, 3),
      focal=float(focal), cx=float(cx), cy=float(cy), near=float(near),
      far=float(far), class_names=tuple(scene.CLASS_NAMES))
