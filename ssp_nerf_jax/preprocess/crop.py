"""One square crop per clip, so that the head moves in a static camera."""
import numpy as np

# Crop side over the median face box (brows to chin), AD-NeRF's framing.
CROP_SCALE = 2.4
# Face-box centre height over the crop side.
FACE_CENTER_HEIGHT = 0.45
# Every face box, grown by this fraction per side, stays inside the crop.
FACE_MARGIN = 0.25


def square_crop(boxes: np.ndarray, frame_hw: tuple[int, int]):
  """(x, y, side) inside the frame from face boxes float [N, 4] (x, y, w, h)."""
  height, width = frame_hw
  centers = boxes[:, :2] + boxes[:, 2:] / 2
  face = float(np.median(np.maximum(boxes[:, 2], boxes[:, 3])))
  cx, cy = np.median(centers, axis=0)
  side = CROP_SCALE * face
  grown = boxes[:, 2:] * (1 + 2 * FACE_MARGIN)
  reach_x = np.abs(centers[:, 0] - cx) + grown[:, 0] / 2
  reach_top = cy - (centers[:, 1] - grown[:, 1] / 2)
  reach_bottom = centers[:, 1] + grown[:, 1] / 2 - cy
  side = max(side, 2 * reach_x.max(), reach_top.max() / FACE_CENTER_HEIGHT,
             reach_bottom.max() / (1 - FACE_CENTER_HEIGHT))
  side = int(min(round(side), height, width))
  x = int(round(cx - side / 2))
  y = int(round(cy - FACE_CENTER_HEIGHT * side))
  x = min(max(x, 0), width - side)
  y = min(max(y, 0), height - side)
  return x, y, side
