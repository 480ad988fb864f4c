"""Mouth crops, real above render, of the val frames with the most open and most
closed mouths: `mouth_strip.png`, lip sync at a glance."""
from typing import Optional

import numpy as np

from ssp_nerf_jax.evaluation import metrics as metrics_lib

PER_SIDE = 5
ZOOM = 4
CROP_WIDTHS = 1.6  # crop side in mouth widths
GAP = 4


def mouth_boxes(parsing: np.ndarray, class_names) -> Optional[np.ndarray]:
  """[N, 4] mouth centre (row, col), width, area in pixels; NaN where none
  shows; None for parsing without mouth classes."""
  masks = metrics_lib.region_masks(parsing, tuple(class_names))['mouth']
  if masks is None:
    return None
  boxes = np.full((len(masks), 4), np.nan)
  for i, mask in enumerate(masks):
    rows, cols = np.nonzero(mask)
    if len(rows):
      boxes[i] = (rows.mean(), cols.mean(), cols.max() - cols.min() + 1,
                  len(rows))
  return boxes


def pick_frames(openness: np.ndarray, per_side: int = PER_SIDE) -> np.ndarray:
  """Indices of the `per_side` largest, then smallest, finite values."""
  order = [i for i in np.argsort(openness, kind='stable')
           if np.isfinite(openness[i])]
  per_side = min(per_side, len(order) // 2)
  return np.array(order[::-1][:per_side] + order[:per_side], np.int64)


def crop(image: np.ndarray, row: float, col: float, side: int) -> np.ndarray:
  """[side, side, 3] of `image` centred at (row, col), edge-padded."""
  half = side // 2
  padded = np.pad(image, ((side, side), (side, side), (0, 0)), mode='edge')
  top, left = int(round(row)) - half + side, int(round(col)) - half + side
  return padded[top:top + side, left:left + side]


def mouth_strip(real: np.ndarray, rendered: np.ndarray, parsing: np.ndarray,
                class_names,
                mouth_open: Optional[np.ndarray] = None
                ) -> Optional[np.ndarray]:
  """uint8 [2 side ZOOM, columns, 3], open mouths on the left, or None (no mouth
  classes, fewer than two mouths); openness: mouth_open, else mouth area."""
  boxes = mouth_boxes(parsing, class_names)
  if boxes is None:
    return None
  openness = boxes[:, 3]
  if mouth_open is not None and np.isfinite(mouth_open).any():
    openness = np.where(np.isfinite(openness), mouth_open, np.nan)
  picks = pick_frames(openness)
  if len(picks) < 2:
    return None
  side = max(8, int(round(CROP_WIDTHS * np.nanmedian(boxes[:, 2]))))
  columns = []
  for i in picks:
    pair = np.concatenate([crop(real[i], *boxes[i, :2], side),
                           crop(rendered[i], *boxes[i, :2], side)], axis=0)
    columns.append(np.kron(pair, np.ones((ZOOM, ZOOM, 1), np.uint8)))
    columns.append(np.full((2 * side * ZOOM, GAP, 3), 255, np.uint8))
  return np.concatenate(columns[:-1], axis=1)
