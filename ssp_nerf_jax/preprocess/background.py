"""Background plate: per-pixel median where the person leaves it uncovered."""
import warnings

import cv2
import numpy as np

# Background: person probability below this after dilating by
# DILATE_FRACTION of the image size (soft mask edges, thin hair).
PERSON_THRESHOLD = 0.2
DILATE_FRACTION = 0.02
# Inpaint at this size and upsample: the fill is smooth, full-size is slow.
INPAINT_SIZE = 128


def background_mask(person: np.ndarray) -> np.ndarray:
  """bool [H, W]: True where a pixel shows background for sure."""
  size = max(1, int(round(DILATE_FRACTION * max(person.shape))))
  kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE,
                                     (2 * size + 1, 2 * size + 1))
  covered = cv2.dilate((person >= PERSON_THRESHOLD).astype(np.uint8), kernel)
  return covered == 0


def plate(frames: np.ndarray, persons: np.ndarray):
  """(uint8 [H, W, 3], unseen share): frames [K, H, W, 3], persons [K, H, W]."""
  seen = np.stack([background_mask(p) for p in persons])
  stack = np.where(seen[..., None], frames.astype(np.float32), np.nan)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', RuntimeWarning)
    median = np.nanmedian(stack, axis=0)
  unseen = ~seen.any(axis=0)
  result = np.nan_to_num(median).astype(np.uint8)
  if unseen.any():
    result = fill(result, unseen)
  return result, float(unseen.mean())


def fill(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
  """`image` with the `hole` pixels inpainted (OpenCV Telea)."""
  height, width = hole.shape
  scale = INPAINT_SIZE / max(height, width)
  small_hw = (max(1, int(round(width * scale))),
              max(1, int(round(height * scale))))
  small = cv2.resize(image, small_hw, interpolation=cv2.INTER_AREA)
  # Area resizing blends the hole into its neighbours: grow it by a pixel.
  small_hole = cv2.dilate(
      cv2.resize(hole.astype(np.uint8), small_hw,
                 interpolation=cv2.INTER_AREA), np.ones((3, 3), np.uint8))
  small_hole = (small_hole > 0).astype(np.uint8)
  if small_hole.all():
    return np.full_like(image, 128)
  filled = cv2.inpaint(small, small_hole, 3, cv2.INPAINT_TELEA)
  filled = cv2.resize(filled, (width, height), interpolation=cv2.INTER_LINEAR)
  return np.where(hole[..., None], filled, image)
