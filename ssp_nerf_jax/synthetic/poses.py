"""The packaged real head-pose track (AD-NeRF's Obama validation split).

Synthetic heads move like a real speaker: we replay 728 tracked head poses
(camera-to-head matrices, OpenGL axes, 450x450 px, focal 1100) from AD-NeRF
(MIT licence, see data/LICENSE.AD-NeRF).
"""
import functools
import importlib.resources
import json

import numpy as np

# Resolution at which the packaged track was tracked.
TRACK_SIZE = 450


@functools.lru_cache(maxsize=1)
def _read_track():
  """Parses the packaged JSON once; returns read-only arrays."""
  path = importlib.resources.files(__package__) / 'data' / 'obama_poses.json'
  with path.open('r') as f:
    meta = json.load(f)
  c2w = np.array([fr['transform_matrix'] for fr in meta['frames']],
                 dtype=np.float32)
  rects = np.array([fr['face_rect'] for fr in meta['frames']], dtype=np.int32)
  c2w.setflags(write=False)
  rects.setflags(write=False)
  return (c2w, float(meta['focal_len']), float(meta['cx']), float(meta['cy']),
          rects)


def load_pose_track():
  """Loads the real head-pose track.

  Returns:
    c2w: float32 [728, 4, 4] camera-to-head matrices (OpenGL axes).
    focal: focal length in pixels at 450 px.
    cx, cy: principal point in pixels at 450 px.
    face_rect: int32 [728, 4] tracked (x, y, w, h) face boxes at 450 px.
  """
  c2w, focal, cx, cy, rects = _read_track()
  # Copies so callers may modify them without touching the cache.
  return c2w.copy(), focal, cx, cy, rects.copy()


def ping_pong_indices(num_frames, track_len):
  """Indices into a pose track played forward, then backward, repeatedly.

  This is how AD-NeRF renders audio longer than the pose track; unlike
  `i % track_len` it never jumps.

  Args:
    num_frames: number of indices wanted.
    track_len: length of the pose track (>= 1).

  Returns:
    int64 [num_frames] indices in [0, track_len).
  """
  if track_len == 1:
    return np.zeros(num_frames, np.int64)
  period = 2 * track_len - 2
  i = np.arange(num_frames) % period
  return np.where(i < track_len, i, period - i)


def near_far(c2w):
  """AD-NeRF bounds: mean camera distance to the head origin -0.2 / +0.4.

  Args:
    c2w: [N, 4, 4] (or [N, 3, 4]) camera-to-head matrices.

  Returns:
    (near, far) as Python floats.
  """
  dist = float(np.mean(np.linalg.norm(np.asarray(c2w)[:, :3, 3], axis=-1)))
  return dist - 0.2, dist + 0.4
