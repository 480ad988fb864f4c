"""Landmark lip-sync metrics of rendered vs real frames (no parsing needed).

`lmd`: distance of the centred mouth landmarks; `mouth_sync`: r of mouth
openings; `eye_sync`: r of eye openings (do the blinks come through)."""
from absl import logging
import numpy as np

from ssp_nerf_jax.preprocess import landmarks
from ssp_nerf_jax.runtime import errors


def centred(points: np.ndarray) -> np.ndarray:
  """float64 [..., P, D]: each point set minus its own mean."""
  points = np.asarray(points, np.float64)
  return points - points.mean(axis=-2, keepdims=True)


def lmd(rendered: np.ndarray, real: np.ndarray) -> float:
  """Mean L2 distance of centred rendered, real [N, P, D] (same units)."""
  rendered, real = np.asarray(rendered), np.asarray(real)
  if rendered.shape != real.shape or rendered.ndim != 3 or not len(rendered):
    raise ValueError(f'expected two equal [N >= 1, P, D] shapes, got '
                     f'{rendered.shape} and {real.shape}')
  return float(np.linalg.norm(centred(rendered) - centred(real),
                              axis=-1).mean())


def correlate(a: np.ndarray, b: np.ndarray) -> float:
  """Pearson r of two [N] series; NaN if either is constant or N < 2."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if len(a) != len(b):
    raise ValueError(f'series of {len(a)} and {len(b)} values')
  if len(a) < 2 or a.std() == 0 or b.std() == 0:
    return float('nan')
  return float(np.corrcoef(a, b)[0, 1])


def mouth_points(lms: np.ndarray) -> np.ndarray:
  """[..., 20, 2] (x, y) of [..., 478, 2 or 3] landmarks, dlib's order 48-67."""
  return np.asarray(lms)[..., landmarks.MOUTH68_IDS, :2]


def find_landmarks(mesh: landmarks.FaceMesh,
                   images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(float32 [N, 478, 3] landmarks in pixels, NaN where no face; bool [N]
  found) of uint8 [N, H, W, 3]; small images are not upscaled (no gain)."""
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
  """[..., 478, 3] landmark pixels of a from_hw image -> of it at to_hw."""
  sx, sy = to_hw[1] / from_hw[1], to_hw[0] / from_hw[0]
  return lms * np.array([sx, sy, sx], np.float32)


def no_scores() -> dict:
  """The metrics when nothing can be compared: nulls in metrics.json."""
  return {'lmd': None, 'mouth_sync': None, 'eye_sync': None,
          'landmark_frames': 0}


def score(rendered: np.ndarray, real: np.ndarray) -> dict:
  """{'lmd' (pixels), 'mouth_sync', 'eye_sync', 'landmark_frames'} of uint8
  frames with a face on both sides; None (and a warning) if none, or without
  mediapipe.  Real frames may have any size: their landmarks are scaled to
  the render."""
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
  sync = {name: correlate(measure(rendered_lms), measure(real_lms))
          for name, measure in (('mouth_sync', landmarks.mouth_opening),
                                ('eye_sync', landmarks.eye_openness))}
  return {
      'lmd': lmd(mouth_points(rendered_lms), mouth_points(real_lms)),
      **{name: None if np.isnan(r) else r for name, r in sync.items()},
      'landmark_frames': int(both.sum()),
  }
