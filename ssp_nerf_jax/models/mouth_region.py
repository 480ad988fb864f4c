"""Where the mouth is in head space, so that its opening acts only there.

With `config.model.mouth_condition` the field gets each frame's mouth
opening (`mouth_readout`).  Given to every point, the opening changes the
whole face a little (on a 20 s real clip, opening 0 vs 1 moved pixels all
over the face and barely at the lips), because the MLP first has to learn
to ignore it everywhere but the mouth.  With
`config.model.mouth_region_radius` > 0 each point gets the opening's
encoding times a Gaussian weight of its distance to the mouth
(`models.mouth.MouthRegion`): far from the mouth the field cannot depend on
the opening at all.

The mouth's centre is triangulated from the training frames: the centroid
of the parsing's mouth pixels (lips and mouth interior) in each frame,
cast as a ray with the frame's pose, and the point nearest to all those
rays in the least-squares sense.  A head that turns by ten degrees already
fixes the depth well: on the synthetic portrait (a head 0.12 head units
tall) the point lands 0.005 behind the true centre of the lips, well
inside the Gaussian's radius of 0.024.  A weak pull towards the head-space
origin (the tracked head centre) keeps the depth finite when the head never
turns.  The Gaussian's radius is a multiple of the mouth's width (corner
to corner, the median over frames, turned into head units at the centre's
depth), so it scales with the portrait.
"""
import numpy as np

from ssp_nerf_jax.rendering import rays as rays_lib
from ssp_nerf_jax.runtime import errors

# Parsing classes that make the mouth (SSP-NeRF's 11-class names).
MOUTH_CLASSES = ('lips', 'mouth')
# Frames with fewer mouth pixels than this are left out (mouth hidden,
# parsing noise).
MIN_PIXELS = 4
# Weight of the pull of the centre towards the head-space origin, per ray:
# it only decides the depth where the rays' directions differ by less than
# a fraction of a degree (a head that never turns); a ray that turns by an
# angle a constrains the depth with weight sin(a)^2, 3e-3 at 3 degrees.
DEPTH_PRIOR_WEIGHT = 1e-5


def mouth_pixels(parsing: np.ndarray, class_ids) -> tuple[np.ndarray,
                                                            np.ndarray]:
  """Centroid and width of the mouth pixels of each parsing map.

  Args:
    parsing: uint8 [N, H, W] class ids.
    class_ids: the classes that make the mouth.
  Returns:
    (float64 [N, 2] (row, col) centroids, NaN where fewer than
     MIN_PIXELS pixels; float64 [N] widths in pixels: the columns from
     the leftmost to the rightmost mouth pixel, NaN likewise).
  """
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
  """The point nearest to N lines in the least-squares sense, pulled
  towards `prior` with `prior_weight`.

  Minimises sum_i |(I - d_i d_i^T)(p - o_i)|^2 + w |p - prior|^2 over p.

  Args:
    origins: [N, 3] points on the lines.
    directions: [N, 3] their directions (any length).
    prior: [3] the point the solution is pulled towards.
    prior_weight: w >= 0.
  Returns:
    float64 [3].
  """
  d = np.asarray(directions, np.float64)
  d = d / np.linalg.norm(d, axis=-1, keepdims=True)
  projections = np.eye(3) - d[:, :, None] * d[:, None, :]  # [N, 3, 3]
  lhs = projections.sum(0) + prior_weight * np.eye(3)
  rhs = (np.einsum('nij,nj->i', projections, np.asarray(origins, np.float64))
         + prior_weight * np.asarray(prior, np.float64))
  return np.linalg.solve(lhs, rhs)


def fit_mouth_region(parsing: np.ndarray, c2w: np.ndarray, scene,
        radius_in_widths: float) -> dict:
  """The mouth's head-space centre and the weight's radius.

  Args:
    parsing: uint8 [N, H, W] training parsing maps (class ids of
      `scene.class_names`).
    c2w: float [N, 4, 4] their camera-to-head poses.
    scene: `scene.SceneInfo` (intrinsics, near/far, class names).
    radius_in_widths: the Gaussian's radius in mouth widths.
  Returns:
    {'centre': float32 [3], 'radius': float32 [] head units,
     'frames': frames used, 'width': the mouth's width in head units}.
  Raises:
    UserError if the classes have no mouth or too few frames show one.
  """
  class_ids = [scene.class_names.index(n) for n in MOUTH_CLASSES
               if n in scene.class_names]
  if not class_ids:
    raise errors.UserError(
        f'config.model.mouth_region_radius needs parsing with mouth classes '
        f'{MOUTH_CLASSES}; this dataset has {scene.class_names}: set it to 0')
  centres, widths = mouth_pixels(parsing, class_ids)
  seen = np.isfinite(widths)
  if seen.sum() < 2:
    raise errors.UserError(
        f'config.model.mouth_region_radius: the mouth shows in '
        f'{int(seen.sum())} of {len(parsing)} training parsing maps; set it '
        f'to 0')
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
