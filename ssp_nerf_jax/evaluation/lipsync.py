"""Landmark lip-sync metrics of rendered frames against the real ones.

Real videos have no ground-truth parsing, so val scoring compares face-mesh
landmarks found the same way on rendered and real frames:

* `lmd`: the landmark distance RAD-NeRF / ER-NeRF report.  The 20 mouth
  landmarks (dlib's 68-point ids 48-67; mediapipe's equivalents
  `landmarks.MOUTH68_IDS`), each frame's set centred on its own mean, mean
  L2 distance between rendered and real points in pixels of the rendered
  frame, averaged over frames.  Centring removes where the head is, so the
  figure measures the mouth's shape.
* `mouth_sync`: Pearson correlation over frames of the mouth opening
  (`landmarks.mouth_opening`: inner-lip gap over the interocular distance)
  of rendered vs real frames.

The maths (`centred`, `lmd`, `correlate`) is plain numpy; `find_landmarks`
and `score` run mediapipe's face mesh in static mode, so that every frame
is scored on its own (no tracking carries one frame's face into the next).
"""
from absl import logging
import numpy as np

from ssp_nerf_jax.preprocess import landmarks
from ssp_nerf_jax.runtime import errors


# ------------------------------------------------------------------ maths --


def centred(points: np.ndarray) -> np.ndarray:
  """Each set of points minus its own mean.

  Args:
    points: float [..., P, D] point sets (P points of D coordinates).
  Returns:
    float64 [..., P, D], every set's mean at the origin.
  """
  points = np.asarray(points, np.float64)
  return points - points.mean(axis=-2, keepdims=True)


def lmd(rendered: np.ndarray, real: np.ndarray) -> float:
  """Landmark distance: mean L2 distance of centred corresponding points.

  Args:
    rendered, real: float [N, P, D] landmarks of N frames (same units,
      e.g. pixels of the rendered frame); N >= 1.
  Returns:
    The mean over frames and points of |centred(rendered) - centred(real)|.
  """
  rendered, real = np.asarray(rendered), np.asarray(real)
  if rendered.shape != real.shape or rendered.ndim != 3 or not len(rendered):
    raise ValueError(f'expected two equal [N >= 1, P, D] shapes, got '
                     f'{rendered.shape} and {real.shape}')
  return float(np.linalg.norm(centred(rendered) - centred(real),
                              axis=-1).mean())


def correlate(a: np.ndarray, b: np.ndarray) -> float:
  """Pearson correlation of two [N] series; NaN if either is constant or
  N < 2 (no correlation is defined)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if len(a) != len(b):
    raise ValueError(f'series of {len(a)} and {len(b)} values')
  if len(a) < 2 or a.std() == 0 or b.std() == 0:
    return float('nan')
  return float(np.corrcoef(a, b)[0, 1])


def mouth_points(lms: np.ndarray) -> np.ndarray:
  """[..., 20, 2] the LMD's mouth points (x, y) of [..., 478, 2 or 3]
  face-mesh landmarks, in dlib's order 48-67."""
  return np.asarray(lms)[..., landmarks.MOUTH68_IDS, :2]


# -------------------------------------------------------------- landmarks --


def find_landmarks(mesh: landmarks.FaceMesh,
                   images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Face-mesh landmarks of every image, in pixels of that image.

  Images are not enlarged first, not even 32-96 px renders.  Measured on
  three real clips (512-700 px) resized to 96 px: x2-x8 bicubic upscaling
  (and x4 Lanczos or bilinear) moved the mouth LMD to the full-size
  landmarks by at most 0.02 px (0.20-0.24 px without), found no face more
  (all found, down to 32 px) and moved the mouth opening's correlation with
  the full-size one by -0.01 to +0.04; on 96 px synthetic frames it lowered
  the mouth opening's correlation with the true opening (0.54 ->
  0.27-0.40).

  Args:
    mesh: a static-mode `landmarks.FaceMesh(tracking=False)`.
    images: uint8 [N, H, W, 3].
  Returns:
    (float32 [N, 478, 3] landmarks, NaN where no face; bool [N] found).
  """
  points = np.full((len(images), landmarks.NUM_LANDMARKS, 3), np.nan,
                   np.float32)
  found = np.zeros(len(images), bool)
  for i, image in enumerate(images):
    lms = mesh(np.asarray(image, np.uint8))
    if lms is not None:
      points[i], found[i] = lms, True
  return points, found


def to_size(lms: np.ndarray, from_hw: tuple[int, int],
            to_hw: tuple[int, int]) -> np.ndarray:
  """[..., 478, 3] landmarks in pixels of a from_hw (H, W) image -> pixels
  of the same image resized to to_hw (z follows x, as in `FaceMesh`)."""
  sx, sy = to_hw[1] / from_hw[1], to_hw[0] / from_hw[0]
  return lms * np.array([sx, sy, sx], np.float32)


def no_scores() -> dict:
  """The metrics when nothing can be compared: nulls in metrics.json."""
  return {'lmd': None, 'mouth_sync': None, 'landmark_frames': 0}


def score(rendered: np.ndarray, real: np.ndarray) -> dict:
  """LMD and mouth sync of rendered vs real frames (module docstring).

  Frames without a face on either side are left out; with none left, or
  without mediapipe installed, the metrics are None and a warning is
  logged.

  Args:
    rendered: uint8 [N, H, W, 3] rendered frames.
    real: uint8 [N, H', W', 3] the real frames they reproduce (any size:
      their landmarks are scaled to the rendered size).
  Returns:
    {'lmd': pixels or None, 'mouth_sync': in [-1, 1] or None (also when
     either mouth opening is constant or only one frame is left),
     'landmark_frames': frames with a face on both sides}.
  """
  if len(rendered) != len(real):
    raise ValueError(f'{len(rendered)} rendered but {len(real)} real frames')
  try:
    mesh = landmarks.FaceMesh(tracking=False)
  except errors.UserError as e:  # mediapipe is an optional install
    logging.warning('no landmark metrics: %s', e)
    return no_scores()
  with mesh:
    rendered_lms, rendered_found = find_landmarks(mesh, rendered)
    real_lms, real_found = find_landmarks(mesh, real)
  both = rendered_found & real_found
  if not both.any():
    logging.warning(
        'no landmark metrics: a face was found in %d of %d rendered and %d '
        'of %d real frames, never in the same frame', rendered_found.sum(),
        len(rendered), real_found.sum(), len(real))
    return no_scores()
  rendered_lms = rendered_lms[both]
  real_lms = to_size(real_lms[both], np.shape(real)[1:3],
                     np.shape(rendered)[1:3])
  sync = correlate(landmarks.mouth_opening(rendered_lms),
                 landmarks.mouth_opening(real_lms))
  return {
      'lmd': lmd(mouth_points(rendered_lms), mouth_points(real_lms)),
      'mouth_sync': None if np.isnan(sync) else sync,
      'landmark_frames': int(both.sum()),
  }
