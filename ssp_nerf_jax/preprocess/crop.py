"""One square crop for a whole clip, around the tracked face.

A per-frame crop would move the camera with the head and hide the head
motion that the pose track must explain; one crop keeps the static camera
of the source.  Its side is a multiple of the face detector's box (head,
hair and shoulders in frame, as in AD-NeRF's portraits), large enough for
every frame's face, and clamped inside the frame.
"""
import numpy as np

# Crop side over the median face-box size (the detector's box spans brows
# to chin): AD-NeRF's 450 px Obama frames hold the head box (with hair)
# in 84 % of the height, i.e. about 2.3 face boxes.
CROP_SCALE = 2.4
# The face box centre sits this far down the crop: head in the upper half,
# shoulders below.
FACE_CENTER_HEIGHT = 0.45
# Every frame's face box, grown by this fraction on each side, stays
# inside the crop.
FACE_MARGIN = 0.25


def square_crop(boxes: np.ndarray, frame_hw: tuple[int, int]):
  """(x, y, side) integer crop in source pixels.

  Args:
    boxes: float [N, 4] face boxes (x, y, w, h) of the frames with a face.
    frame_hw: source (height, width).
  Returns:
    (x, y, side) with 0 <= x, x + side <= width, likewise y.
  """
  height, width = frame_hw
  centers = boxes[:, :2] + boxes[:, 2:] / 2
  face = float(np.median(np.maximum(boxes[:, 2], boxes[:, 3])))
  cx, cy = np.median(centers, axis=0)
  side = CROP_SCALE * face
  # Large enough for every frame's face (a speaker who leans).
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
