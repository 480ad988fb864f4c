"""Where the mouth (or the eyes) is in head space, so that its opening acts
only there.

Centre: the point nearest the rays through each training frame's mouth-pixel
centroid; radius: a multiple of the mouth's width, so it scales with the face.
The eyes' region is fitted alike from the eye classes (both eyes: centre
between them, width across both).
"""
import numpy as np

from ssp_nerf_jax.rendering import rays as rays_lib
from ssp_nerf_jax.runtime import errors

MOUTH_CLASSES = ('lips', 'mouth')
EYE_CLASSES = ('eyes',)
# Frames with fewer mouth pixels are left out (mouth hidden, parsing noise).
MIN_PIXELS = 4
# Per-ray pull towards the origin: decides the depth if the head never turns.
DEPTH_PRIOR_WEIGHT = 1e-5


def mouth_pixels(parsing: np.ndarray, class_ids) -> tuple[np.ndarray,
                                                          np.ndarray]:
  """uint8 [N, H, W] -> (row, col) centroids [N, 2], widths [N]; NaN: hidden."""
  centres = np.full((len(parsing), 2), np.nan)
  widths = np.full(len(parsing), np.nan)
  for i, labels in enumerate(np.asarray(parsing)):
    rows, cols = np.nonzero(np.isin(labels, class_ids))
    if len(rows) >= MIN_PIXELS:
      centres[i] = rows.mean(), cols.mean()
      widths[i] = cols.max() - cols.min() + 1
  return centres, widths


def nearest_point(origins: np.ndarray, directions: np.ndarray,
                  prior: np.ndarray, prior_weight: float) -> np.ndarray:
  """[3] argmin_p sum_i |(I - d_i d_i^T)(p - o_i)|^2 + w |p - prior|^2."""
  d = np.asarray(directions, np.float64)
  d = d / np.linalg.norm(d, axis=-1, keepdims=True)
  projections = np.eye(3) - d[:, :, None] * d[:, None, :]
  lhs = projections.sum(0) + prior_weight * np.eye(3)
  rhs = (np.einsum('nij,nj->i', projections, np.asarray(origins, np.float64))
         + prior_weight * np.asarray(prior, np.float64))
  return np.linalg.solve(lhs, rhs)


def fit_mouth_region(parsing: np.ndarray, c2w: np.ndarray, scene,
                     radius_in_widths: float, classes=MOUTH_CLASSES,
                     setting: str = 'mouth_region_radius') -> dict:
  """{'centre' [3], 'radius', 'frames', 'width'} (head units) from parsing
  [N, H, W] and c2w [N, 4, 4] of the parsing `classes`; UserError (naming
  config.model.<setting>) if too few frames show them."""
  class_ids = [scene.class_names.index(n) for n in classes
               if n in scene.class_names]
  if not class_ids:
    raise errors.UserError(
        f'config.model.{setting} needs parsing with the classes {classes}; '
        f'this dataset has {scene.class_names}: set it off')
  centres, widths = mouth_pixels(parsing, class_ids)
  seen = np.isfinite(widths)
  if seen.sum() < 2:
    raise errors.UserError(
        f'config.model.{setting}: parsing of {classes} shows in '
        f'{int(seen.sum())} of '
        f'{len(parsing)} training parsing maps; set it off')
  c2w = np.asarray(c2w, np.float64)[seen]
  rays = rays_lib.pixel_rays(c2w, centres[seen], scene.focal, scene.cx,
                             scene.cy)
  origins = np.asarray(rays.origins, np.float64)
  directions = np.asarray(rays.directions, np.float64)
  centre = nearest_point(origins, directions, np.zeros(3),
                         DEPTH_PRIOR_WEIGHT * len(origins))
  # Camera depth of the centre in each frame: along the camera's -z axis.
  depth = np.einsum('ni,ni->n', centre - c2w[:, :3, 3], -c2w[:, :3, 2])
  width = float(np.median(widths[seen] * depth / scene.focal))
  return {'centre': centre.astype(np.float32),
          'radius': np.float32(radius_in_widths * width),
          'frames': int(seen.sum()), 'width': width}


# Eye openness levels of a clip: shut frames are rare (blinks), so the
# closed level is a low percentile, the open level the median.
CLOSED_PERCENTILE = 0.5


def openness_levels(openness: np.ndarray) -> dict | None:
  """{'closed', 'open'} float32 levels of measured eye openness [N] (NaN:
  unmeasured); None if fewer than two frames are measured or all alike."""
  known = np.asarray(openness, np.float64)
  known = known[np.isfinite(known)]
  if len(known) < 2:
    return None
  closed = np.percentile(known, CLOSED_PERCENTILE)
  opened = np.median(known)
  if opened - closed <= 1e-6:
    return None
  return {'closed': np.float32(closed), 'open': np.float32(opened)}
