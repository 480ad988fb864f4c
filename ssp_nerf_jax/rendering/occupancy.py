"""Occupancy: a coarse density grid over head space and each ray's interval.

Points outside the box count as occupied: nothing the box misses is culled."""
import flax
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from ssp_nerf_jax.runtime import errors
from ssp_nerf_jax.runtime import parallel

P = jax.sharding.PartitionSpec
# Density of a cell never measured: counts as occupied.
UNKNOWN = -1.0


@flax.struct.dataclass
class Grid:
  """density float32 [G, G, G] indexed [x, y, z] (UNKNOWN: unmeasured) over
  box float32 [2, 3] (min corner, max corner) of head space."""
  density: jax.Array
  box: jax.Array


@flax.struct.dataclass
class SurfaceGrid:
  """A render's grids: `grid` holds either field's matter (which rays hit
  anything, and where), `surface` the fine field's alone (where the
  composited opacity saturates, ending each ray's interval)."""
  grid: Grid
  surface: Grid


def head_box(scene, near, far, padding) -> np.ndarray:
  """float32 [2, 3] box around the reference camera's frustum in [near, far],
  grown by `padding` (a fraction of its size) each side."""
  c2w = (np.eye(4) if scene.reference_c2w is None else
         np.reshape(scene.reference_c2w, (4, 4)))
  rows, cols = np.meshgrid([0, scene.height], [0, scene.width])
  dirs = np.stack([(cols.ravel() - scene.cx) / scene.focal,
                   -(rows.ravel() - scene.cy) / scene.focal,
                   -np.ones(4)], -1) @ c2w[:3, :3].T
  points = np.concatenate([c2w[:3, 3] + dirs * z for z in (near, far)])
  low, high = points.min(0), points.max(0)
  grow = padding * (high - low)
  return np.stack([low - grow, high + grow]).astype(np.float32)


def create(resolution: int, box) -> Grid:
  """A grid that knows nothing yet (every cell occupied)."""
  return Grid(density=jnp.full((resolution,) * 3, UNKNOWN, jnp.float32),
              box=jnp.asarray(box, jnp.float32))


def cell_centres(box, resolution: int):
  """[G^3, 3] the cells' centres, in [x, y, z] index order."""
  idx = jnp.stack(jnp.meshgrid(*[jnp.arange(resolution)] * 3, indexing='ij'),
                  -1).reshape(-1, 3).astype(jnp.float32)
  return box[0] + (idx + 0.5) * (box[1] - box[0]) / resolution


class FrameGrids:
  """One frame's grid, or the largest density over K frames, from params.

  Per frame since the field moves with pose and audio: a clip-wide grid holds
  the union of every frame's matter.  Cells are split over the devices."""

  def __init__(self, model, settings, box, mesh, resolution=None,
               surface=False):
    """model.density: (points [F, N, 3], audio, smooth, c2w, mouth, eyes=)
    -> [F, N]; with `surface`, grids are `SurfaceGrid`s measured by
    model.density_and_surface (-> [F, N, 2]);
    settings: config.occupancy; box [2, 3] (`head_box`)."""
    check_settings(settings)
    channels = 2 if surface else 1
    method = model.density_and_surface if surface else model.density
    self.box = np.asarray(box, np.float32)
    resolution = resolution or settings.resolution
    per_call = settings.points_per_call
    cells = resolution**3
    calls = -(-cells // (mesh.devices.size * per_call))
    points = np.asarray(cell_centres(self.box, resolution))
    points = np.pad(points, ((0, mesh.devices.size * calls * per_call - cells),
                             (0, 0)), mode='edge')
    self._points = _global(points, parallel.data_sharded(mesh))

    def per_device(params, points, audio, c2w, mouth, eyes, smooth):
      chunks = points.reshape(calls, per_call, 3)

      def one_frame(largest, frame):
        frame_audio, frame_c2w, frame_mouth, frame_eyes = frame

        def one_call(chunk):
          return model.apply(params, chunk[None], frame_audio[None], smooth,
                             frame_c2w[None], frame_mouth[None],
                             eyes=frame_eyes[None], method=method)[0]
        density = lax.map(one_call, chunks).reshape(-1, channels)
        # Densities are >= 0: one frame's grid is its own density.
        return jnp.maximum(largest, density), None

      # zeros_like: varying over the devices, as the densities are.
      zeros = jnp.zeros_like(points[:, :channels])
      largest, _ = lax.scan(one_frame, zeros, (audio, c2w, mouth, eyes))
      return largest

    measured = jax.shard_map(per_device, mesh=mesh,
                             in_specs=(P(), P(parallel.DATA_AXIS), P(), P(),
                                       P(), P(), P()),
                             out_specs=P(parallel.DATA_AXIS))

    def grid(params, points, audio, c2w, mouth, eyes, smooth):
      density = measured(params, points, audio, c2w, mouth, eyes,
                         smooth)[:cells].reshape((resolution,) * 3 + (-1,))
      grids = [Grid(density=density[..., k], box=jnp.asarray(self.box))
               for k in range(channels)]
      return SurfaceGrid(*grids) if surface else grids[0]

    replicated = parallel.replicated(mesh)
    self._measure = jax.jit(
        grid, in_shardings=(replicated, parallel.data_sharded(mesh),
                            replicated, replicated, replicated, replicated,
                            replicated),
        out_shardings=replicated)

  def __call__(self, params, c2w, audio, smooth, mouth=None,
               eyes=None) -> Grid:
    """Replicated grid of one frame: c2w [4, 4], audio [A, 16, C], mouth
    (None: predicted from audio), eyes (None: no eye input); host values,
    equal on every process."""
    one = lambda x: None if x is None else np.asarray(x)[None]
    return self.largest(params, np.asarray(c2w)[None],
                        np.asarray(audio)[None], smooth, one(mouth), one(eyes))

  def largest(self, params, c2w, audio, smooth, mouth=None,
              eyes=None) -> Grid:
    """As `__call__`, K frames: c2w [K, 4, 4], audio [K, A, 16, C], mouth
    and eyes [K]."""
    unknown = np.full(len(c2w), np.nan, np.float32)
    return self._measure(
        params, self._points, np.asarray(audio, np.float32),
        np.asarray(c2w, np.float32),
        np.asarray(unknown if mouth is None else mouth, np.float32),
        np.asarray(unknown if eyes is None else eyes, np.float32),
        np.asarray(smooth))


def _global(host, sharding):
  """Global array from identical host copies (no access to others' devices)."""
  return jax.make_array_from_callback(host.shape, sharding,
                                      lambda index: host[index])


def occupied(grid, threshold, margin):
  """bool [G, G, G]: cells whose density makes one cell `threshold` opaque
  (or unmeasured), dilated by `margin` cells."""
  cell = jnp.max((grid.box[1] - grid.box[0]) / grid.density.shape[0])
  min_sigma = -jnp.log1p(-threshold) / cell
  occ = (grid.density == UNKNOWN) | (grid.density > min_sigma)
  if margin:
    size = 2 * margin + 1
    occ = lax.reduce_window(occ, False, lax.bitwise_or, (size,) * 3,
                            (1,) * 3, 'SAME')
  return occ


def cell_values(values, box, points):
  """values [G, G, G] at points [..., 3] -> (values [...], inside bool [...]);
  outside the box, the nearest cell's value."""
  resolution = values.shape[0]
  cell = jnp.floor((points - box[0]) / (box[1] - box[0]) * resolution)
  inside = jnp.all((cell >= 0) & (cell < resolution), axis=-1)
  idx = jnp.clip(cell, 0, resolution - 1).astype(jnp.int32)
  return values[idx[..., 0], idx[..., 1], idx[..., 2]], inside


def lookup(occ, box, points):
  """occ [G, G, G] at points [..., 3] -> bool [...]; outside the box True."""
  occupied_cell, inside = cell_values(occ, box, points)
  return ~inside | occupied_cell


def march(rays, near, far, num_steps):
  """(t [S], points [..., S, 3]): S evenly spaced depths in [near, far]."""
  t = jnp.linspace(near, far, num_steps, dtype=jnp.float32)
  return t, (rays.origins[..., None, :] +
             rays.directions[..., None, :] * t[:, None])


def find_occupied_interval(occ, box, rays, near, far, num_steps):
  """(near, far, hit) [...]: a march step before the first occupied step to one
  after the last, within [near, far]; unchanged where nothing is hit."""
  t, points = march(rays, near, far, num_steps)
  hits = lookup(occ, box, points)  # [..., num_steps]
  hit = jnp.any(hits, axis=-1)
  step = (far - near) / (num_steps - 1)
  first = jnp.argmax(hits, axis=-1)
  last = num_steps - 1 - jnp.argmax(hits[..., ::-1], axis=-1)
  tight_near = jnp.maximum(t[first] - step, near)
  tight_far = jnp.minimum(t[last] + step, far)
  return (jnp.where(hit, tight_near, near), jnp.where(hit, tight_far, far),
          hit)


def opaque_depth(grid, rays, near, far, num_steps, transmittance):
  """[...] first march depth where transmittance < `transmittance`, else `far`;
  unmeasured cells and points outside the box count as empty here."""
  t, points = march(rays, near, far, num_steps)
  sigma, inside = cell_values(grid.density, grid.box, points)
  sigma = jnp.where(inside, sigma, 0.0)
  step = (far - near) / (num_steps - 1)
  optical_depth = jnp.cumsum(jnp.maximum(sigma, 0.0) * step, axis=-1)
  opaque = optical_depth > -jnp.log(transmittance)
  return jnp.where(jnp.any(opaque, axis=-1), t[jnp.argmax(opaque, axis=-1)],
                   far)


def grid_frames(poses, mouth_open, pose_frames) -> list[int]:
  """Sorted train frames for the clip-wide grid: the pose nearest the mean, then
  `pose_frames - 1` farthest-point poses, the most open and closed mouths."""
  flat = np.asarray(poses, np.float64).reshape(len(poses), -1)[:, :12]
  picks = [int(np.argmin(np.linalg.norm(flat - flat.mean(0), axis=1)))]
  distance = np.linalg.norm(flat - flat[picks[0]], axis=1)
  for _ in range(min(pose_frames, len(poses)) - 1):
    picks.append(int(np.argmax(distance)))
    distance = np.minimum(distance,
                          np.linalg.norm(flat - flat[picks[-1]], axis=1))
  picks += [int(np.argmax(mouth_open)), int(np.argmin(mouth_open))]
  return sorted(set(picks))


def measured(grid) -> bool:
  """Whether any cell of a (replicated) grid has been measured."""
  density = grid.density
  if isinstance(density, jax.Array):
    density = density.addressable_data(0)
  return bool(np.any(np.asarray(density) != UNKNOWN))


def train_bounds(grid, rays, settings, near, far):
  """(near, far, hit) [...] through the clip-wide grid, without the opaque stop:
  the union's front surface lies in front of many frames' torso."""
  occ = occupied(grid, settings.threshold, settings.margin)
  return find_occupied_interval(occ, grid.box, rays, near, far,
                                settings.march_steps)


def step_grids(model, params, audio, c2w, mouth, smooth, box, resolution,
               eyes=None):
  """Grid of density [F, G, G, G], box [F, 2, 3]: each frame's coarse field
  (no gradient), one frame at a time inside the jitted step; eyes [F] eye
  openness (None: none)."""
  points = cell_centres(jnp.asarray(box, jnp.float32), resolution)
  params = lax.stop_gradient(params)
  if eyes is None:
    eyes = jnp.full(mouth.shape, jnp.nan, jnp.float32)

  def one_frame(frame):
    frame_audio, frame_c2w, frame_mouth, frame_eyes = frame
    density = model.apply(params, points[None], frame_audio[None], smooth,
                          frame_c2w[None], frame_mouth[None],
                          coarse_only=True, eyes=frame_eyes[None],
                          method=model.density)[0]
    return density.reshape((resolution,) * 3)

  density = lax.map(one_frame, (audio, c2w, mouth, eyes))
  return Grid(density=density,
              box=jnp.broadcast_to(jnp.asarray(box, jnp.float32),
                                   (density.shape[0], 2, 3)))


def tight_bounds(grid, rays, settings, near, far):
  """(near, far, hit) [...] through one frame's `Grid` or `SurfaceGrid`: the
  occupied interval, far cut `margin` cells behind `opaque_depth` (of the
  surface, if given) if stop_transmittance > 0."""
  surface = grid
  if isinstance(grid, SurfaceGrid):
    grid, surface = grid.grid, grid.surface
  occ = occupied(grid, settings.threshold, settings.margin)
  num_steps = settings.march_steps
  near_t, far_t, hit = find_occupied_interval(occ, grid.box, rays, near, far,
                                              num_steps)
  if settings.stop_transmittance > 0:
    cell = jnp.max((grid.box[1] - grid.box[0]) / grid.density.shape[0])
    opaque = opaque_depth(surface, rays, near, far, num_steps,
                          settings.stop_transmittance)
    far_t = jnp.maximum(jnp.minimum(far_t, opaque + settings.margin * cell),
                        near_t)
  return near_t, far_t, hit


TRAIN_GRIDS = ('step', 'clip', 'none')


def check_settings(settings) -> None:
  """UserError naming the first config.occupancy value out of range."""
  checks = [
      ('resolution', settings.resolution >= 2, 'at least 2'),
      ('box_padding', settings.box_padding >= 0, '>= 0'),
      ('threshold', 0 < settings.threshold < 1, 'in (0, 1)'),
      ('margin', settings.margin >= 0, '>= 0'),
      ('march_steps', settings.march_steps >= 2, 'at least 2'),
      ('sample_fraction', settings.sample_fraction > 0, '> 0'),
      ('stop_transmittance', 0 <= settings.stop_transmittance < 1,
       'in [0, 1)'),
      ('points_per_call', settings.points_per_call >= 1, 'at least 1'),
      ('train_resolution', settings.train_resolution >= 2, 'at least 2'),
      ('train_step_resolution', settings.train_step_resolution >= 2,
       'at least 2'),
      ('train_pose_frames', settings.train_pose_frames >= 1, 'at least 1'),
      ('train_warmup_steps', settings.train_warmup_steps >= 0, '>= 0'),
      ('train_update_every', settings.train_update_every >= 1, 'at least 1'),
      ('train_sample_fraction', settings.train_sample_fraction > 0, '> 0'),
      ('train_grid', settings.train_grid in TRAIN_GRIDS,
       f'one of {TRAIN_GRIDS}'),
  ]
  for name, ok, wanted in checks:
    if not ok:
      raise errors.UserError(f'config.occupancy.{name} must be {wanted}, '
                             f'got {settings[name]}')
