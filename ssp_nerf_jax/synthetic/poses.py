"""Real head poses for the synthetic heads: AD-NeRF's Obama track (MIT)."""
import functools
import importlib.resources
import json

import numpy as np

TRACK_SIZE = 450


@functools.lru_cache(maxsize=1)
def _read_track():
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
  """(c2w float32 [N, 4, 4] camera-to-head, OpenGL; focal, cx, cy; face_rect
  int32 [N, 4] (x, y, w, h)), in pixels of TRACK_SIZE frames."""
  c2w, focal, cx, cy, rects = _read_track()
  return c2w.copy(), focal, cx, cy, rects.copy()
