"""Skin corners tracked by optical flow, for `pose_fit.fit_poses`.

Landmarks can slide over the skin as the head turns; texture corners cannot.
"""
import dataclasses
from typing import Optional

import cv2
import numpy as np

from ssp_nerf_jax.preprocess import landmarks as landmarks_lib

# Eye and brow landmarks per side: left out of the region (they move alone).
_EYE_AND_BROW_IDS = (
    (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161,
     246, 46, 53, 52, 65, 55, 70, 63, 105, 66, 107),
    (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387,
     388, 466, 276, 283, 282, 295, 285, 300, 293, 334, 296, 336))
# The *_PX constants are pixels at this frame size and scale with it.
REFERENCE_SIZE = 256
EYE_MARGIN_PX = 2.5
MIN_DISTANCE_PX = 4.0
WINDOW_PX = 15
PYRAMID_LEVELS = 3
# Relative to the best corner; low because smooth skin has weak corners.
CORNER_QUALITY = 0.001
# Features added at once at most, when fewer than MIN_ALIVE are alive; more
# tracks slow the pose fit without changing its rotations.
MAX_FEATURES = 200
MIN_ALIVE = 100
# Drop a feature when tracking back misses its start by more than this;
# skip a refinement that moves it farther than REFINE_MAX_SHIFT_PX.
FORWARD_BACKWARD_PX = 0.3
REFINE_MAX_SHIFT_PX = 1.0
# Shorter tracks carry little pose information.
MIN_TRACK_FRAMES = 25


@dataclasses.dataclass(frozen=True)
class SkinTracks:
  """M observations: frame, track int64 [M]; uv float64 [M, 2] in pixels."""
  frame: np.ndarray
  track: np.ndarray
  uv: np.ndarray
  num_tracks: int


def _scaled(px: float, size: int) -> float:
  return px * size / REFERENCE_SIZE


def region_mask(lms: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
  """uint8 [H, W], 255 in the rigid landmarks' hull less eyes and brows."""
  mask = np.zeros(shape, np.uint8)
  points = lms[list(landmarks_lib.RIGID_IDS), :2].astype(np.float32)
  cv2.fillConvexPoly(mask, cv2.convexHull(points).astype(np.int32), 255)
  margin = max(1, int(round(_scaled(2 * EYE_MARGIN_PX, max(shape)))))
  for ids in _EYE_AND_BROW_IDS:
    hull = cv2.convexHull(lms[list(ids), :2].astype(np.float32)).astype(
        np.int32)
    cv2.fillConvexPoly(mask, hull, 0)
    cv2.polylines(mask, [hull], True, 0, margin)
  return mask


class SkinTracker:
  """Feeds on consecutive frames; `tracks()` returns what it followed.

  Lucas-Kanade frame to frame, checked by tracking back, then refined against
  the frame where a feature was found, so drift does not accumulate.
  """

  def __init__(self):
    self._prev = None
    self._mask = None
    self._points = np.zeros((0, 1, 2), np.float32)
    self._ids = np.zeros(0, np.int64)
    self._seed_frame = np.zeros(0, np.int64)
    self._seed_points = np.zeros((0, 1, 2), np.float32)
    self._seed_images = {}  # frame index -> grey frame with alive seeds
    self._next_id = 0
    self._index = 0
    self._obs = []  # (frame [K], ids [K], points [K, 2]) per frame

  def _lk(self, size):
    side = int(round(_scaled(WINDOW_PX, size))) | 1
    return dict(winSize=(side, side), maxLevel=PYRAMID_LEVELS,
                criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT,
                          30, 0.01))

  def _follow(self, grey):
    """Moves the alive points onto `grey`; drops the lost ones."""
    size = max(grey.shape)
    lk = self._lk(size)
    nxt, ok, _ = cv2.calcOpticalFlowPyrLK(self._prev, grey, self._points,
                                          None, **lk)
    back, ok_back, _ = cv2.calcOpticalFlowPyrLK(grey, self._prev, nxt,
                                                None, **lk)
    miss = np.linalg.norm(back - self._points, axis=-1)[:, 0]
    h, w = grey.shape
    x = np.clip(np.round(nxt[:, 0, 0]).astype(int), 0, w - 1)
    y = np.clip(np.round(nxt[:, 0, 1]).astype(int), 0, h - 1)
    keep = ((ok[:, 0] == 1) & (ok_back[:, 0] == 1) &
            (miss < _scaled(FORWARD_BACKWARD_PX, size)) &
            (self._mask[y, x] > 0))
    for seed in np.unique(self._seed_frame[keep]):
      sel = np.flatnonzero(keep & (self._seed_frame == seed))
      refined, ok_ref, _ = cv2.calcOpticalFlowPyrLK(
          self._seed_images[seed], grey, self._seed_points[sel],
          nxt[sel].copy(), flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **lk)
      shift = np.linalg.norm(refined - nxt[sel], axis=-1)[:, 0]
      good = (ok_ref[:, 0] == 1) & (shift < _scaled(REFINE_MAX_SHIFT_PX,
                                                    size))
      nxt[sel[good]] = refined[good]
    self._points = nxt[keep]
    self._ids = self._ids[keep]
    self._seed_frame = self._seed_frame[keep]
    self._seed_points = self._seed_points[keep]

  def _seed(self, grey):
    """Adds features away from the alive ones."""
    size = max(grey.shape)
    mask = self._mask.copy()
    spacing = max(1, int(round(_scaled(MIN_DISTANCE_PX, size))))
    for x, y in self._points[:, 0]:
      cv2.circle(mask, (int(x), int(y)), spacing, 0, -1)
    new = cv2.goodFeaturesToTrack(grey, maxCorners=MAX_FEATURES,
                                  qualityLevel=CORNER_QUALITY,
                                  minDistance=spacing, mask=mask,
                                  blockSize=5)
    if new is None:
      return
    new = new.astype(np.float32).reshape(-1, 1, 2)
    self._points = np.concatenate([self._points, new])
    self._ids = np.concatenate([self._ids, self._next_id + np.arange(
        len(new))])
    self._next_id += len(new)
    self._seed_frame = np.concatenate([self._seed_frame,
                                       np.full(len(new), self._index)])
    self._seed_points = np.concatenate([self._seed_points, new])
    self._seed_images[self._index] = grey

  def update(self, frame: np.ndarray, lms: Optional[np.ndarray]) -> None:
    """Takes an RGB uint8 [H, W, 3] frame and its landmarks [478, 2+] or None
    (None: the last region is kept and no features are added)."""
    grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    if lms is not None:
      self._mask = region_mask(np.asarray(lms), grey.shape)
    if self._mask is not None:
      if self._prev is not None and len(self._points):
        self._follow(grey)
      if lms is not None and len(self._points) < MIN_ALIVE:
        self._seed(grey)
      for seed in set(self._seed_images) - set(self._seed_frame.tolist()):
        del self._seed_images[seed]
      self._obs.append((np.full(len(self._ids), self._index), self._ids,
                        self._points[:, 0].astype(np.float64)))
    self._prev = grey
    self._index += 1

  def tracks(self) -> SkinTracks:
    """The tracks seen in at least MIN_TRACK_FRAMES frames, renumbered."""
    if not self._obs:
      return SkinTracks(np.zeros(0, np.int64), np.zeros(0, np.int64),
                        np.zeros((0, 2)), 0)
    frame = np.concatenate([o[0] for o in self._obs])
    ids = np.concatenate([o[1] for o in self._obs])
    uv = np.concatenate([o[2] for o in self._obs])
    counts = np.bincount(ids)
    keep = counts[ids] >= MIN_TRACK_FRAMES
    kept, track = np.unique(ids[keep], return_inverse=True)
    return SkinTracks(frame[keep].astype(np.int64), track.astype(np.int64),
                      uv[keep], len(kept))
