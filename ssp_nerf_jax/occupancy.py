"""Where the portrait is: a coarse density grid over head space, measured
once from a trained model, and the per-ray depth interval it leaves to
render.

Why a dense grid of densities (instant-ngp's, RAD-NeRF's) and not a finer
structure: the head and torso fill one small box, a 48^3 grid of floats is
half a megabyte, measuring it is one batched evaluation of the field at
the cell centres per frame, and a ray's occupied interval is found by
stepping through it with gathers, all with static shapes.

What a cell holds is the largest density the renderer would see there
(`PortraitNeRF.density`: coarse and fine fields, after the torso warp)
over the frames it was measured with, each with its own pose and audio
code: the torso moves through head space with the pose and the mouth
opens with the audio, so one frame's field is not enough (`grid_frames`
picks evenly spaced train frames, for the mouth's states, and the most
extreme poses).  A cell never measured holds UNKNOWN and counts as
occupied.

How renders use it (`frame_renderer`, the `occupancy` config section): a
cell is occupied when its density makes one cell's length at least
`threshold` opaque, dilated by `margin` cells.  A ray's interval is from
a step before its first occupied step of a march from near to far to a
step after its last; rays with no occupied step hit nothing and get the
plate.  Points outside the box count as occupied: whatever the box misses
is rendered, never culled.
"""
import flax
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from ssp_nerf_jax import errors
from ssp_nerf_jax import input_pipeline
from ssp_nerf_jax import parallel

P = jax.sharding.PartitionSpec
# Density of a cell never measured: counts as occupied.
UNKNOWN = -1.0


@flax.struct.dataclass
class Grid:
  """A density grid over an axis-aligned box of head space.

  density: float32 [G, G, G], indexed [x, y, z], UNKNOWN where unmeasured.
  box: float32 [2, 3], the box's (min corner, max corner).
  """
  density: jax.Array
  box: jax.Array


def head_box(scene, near, far, padding) -> np.ndarray:
  """float32 [2, 3]: the box around the reference camera's frustum between
  near and far, grown by `padding` (a fraction of its size) each side."""
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


def frames_density(model, params, grid, audio, c2w, smooth, points_per_call):
  """[G, G, G] the largest density over F frames at the cell centres.

  Args:
    model, params: a model with a `density(points [F, N, 3], audio,
      smooth, c2w) -> [F, N]` method, and its parameters.
    grid: the `Grid` whose cells are measured.
    audio: [F, A, 16, C]; c2w: [F, 4, 4]; smooth: bool scalar.
    points_per_call: cells measured at once (bounds memory).
  """
  resolution = grid.density.shape[0]
  points = cell_centres(grid.box, resolution)
  calls = -(-points.shape[0] // points_per_call)
  points = jnp.pad(points, ((0, calls * points_per_call - points.shape[0]),
                            (0, 0)), mode='edge')

  def one_call(chunk):
    frames = jnp.broadcast_to(chunk, (c2w.shape[0],) + chunk.shape)
    sigma = model.apply(params, frames, audio, smooth, c2w,
                        method=model.density)
    return jnp.max(sigma, axis=0)

  sigma = lax.map(one_call, points.reshape(calls, points_per_call, 3))
  return sigma.reshape(-1)[:resolution**3].reshape((resolution,) * 3)


def make_measure_step(model, mesh, points_per_call):
  """Jitted `step(grid, params, audio, c2w, smooth) -> grid` over the mesh:
  the grid raised to the frames' density where that is larger.

  Each device measures its own frames (audio [D, ...] and c2w [D, 4, 4]
  sharded along 'data', one per device); the maximum over devices makes
  the result the same on any number of devices.  `grid`, `params` and
  `smooth` replicated.
  """
  def per_device(grid, params, audio, c2w, smooth):
    fresh = frames_density(model, params, grid, audio, c2w, smooth,
                           points_per_call)
    fresh = lax.pmax(fresh, parallel.DATA_AXIS)
    return grid.replace(density=jnp.maximum(grid.density, fresh))

  data = P(parallel.DATA_AXIS)
  return jax.jit(jax.shard_map(per_device, mesh=mesh,
                               in_specs=(P(), P(), data, data, P()),
                               out_specs=P()))


def measure(model, params, grid, frames, smooth, mesh,
            points_per_call) -> Grid:
  """`grid` with each cell's largest density over `frames` ({'audio' [F,
  ...], 'c2w' [F, 4, 4]} host arrays, the same on every process): one
  frame per device at a time, the last group padded by repeating the final
  frame (a maximum is unaffected).  Returns a host grid."""
  step = make_measure_step(model, mesh, points_per_call)
  grid = parallel.replicate(grid, mesh)
  params = parallel.replicate(params, mesh)
  smooth = parallel.replicate(np.asarray(smooth), mesh)
  sharding = parallel.data_sharded(mesh)
  devices = mesh.devices.size
  count = len(frames['c2w'])
  for start in range(0, count, devices):
    index = np.minimum(np.arange(start, start + devices), count - 1)
    group = [np.asarray(frames[k], np.float32)[index] for k in ('audio', 'c2w')]
    grid = step(grid, params, *[_global(x, sharding) for x in group], smooth)
  return jax.device_get(grid)


def _global(host, sharding):
  """A global array from every process's identical host copy (placing
  host values on other hosts' devices is not possible)."""
  return jax.make_array_from_callback(host.shape, sharding,
                                      lambda index: host[index])


def occupied(grid, threshold, margin):
  """bool [G, G, G]: cells with density making one cell `threshold`
  opaque (or never measured), dilated by `margin` cells."""
  cell = jnp.max((grid.box[1] - grid.box[0]) / grid.density.shape[0])
  min_sigma = -jnp.log1p(-threshold) / cell
  occ = (grid.density == UNKNOWN) | (grid.density > min_sigma)
  if margin:
    size = 2 * margin + 1
    occ = lax.reduce_window(occ, False, lax.bitwise_or, (size,) * 3,
                            (1,) * 3, 'SAME')
  return occ


def lookup(occ, box, points):
  """occ [G, G, G] at points [..., 3] -> bool [...]; outside the box True."""
  resolution = occ.shape[0]
  cell = jnp.floor((points - box[0]) / (box[1] - box[0]) * resolution)
  inside = jnp.all((cell >= 0) & (cell < resolution), axis=-1)
  idx = jnp.clip(cell, 0, resolution - 1).astype(jnp.int32)
  return ~inside | occ[idx[..., 0], idx[..., 1], idx[..., 2]]


def ray_bounds(occ, box, rays, near, far, num_steps):
  """The occupied depth interval of each ray.

  Args:
    occ: bool [G, G, G] (`occupied`); box: [2, 3].
    rays: `Rays` with leading shape [...].
    near, far: scalars, the full interval.
    num_steps: march steps from near to far (about two per cell crossed).

  Returns:
    (near [...], far [...], hit bool [...]): the interval from a step
    before the first occupied step to a step after the last, within
    [near, far]; where nothing is hit, near and far unchanged.
  """
  t = jnp.linspace(near, far, num_steps, dtype=jnp.float32)
  points = (rays.origins[..., None, :] +
            rays.directions[..., None, :] * t[:, None])
  hits = lookup(occ, box, points)  # [..., num_steps]
  hit = jnp.any(hits, axis=-1)
  step = (far - near) / (num_steps - 1)
  first = jnp.argmax(hits, axis=-1)
  last = num_steps - 1 - jnp.argmax(hits[..., ::-1], axis=-1)
  tight_near = jnp.maximum(t[first] - step, near)
  tight_far = jnp.minimum(t[last] + step, far)
  return (jnp.where(hit, tight_near, near), jnp.where(hit, tight_far, far),
          hit)


def check_settings(settings) -> None:
  """UserError naming the first config.occupancy value out of range."""
  checks = [
      ('resolution', settings.resolution >= 2, 'at least 2'),
      ('box_padding', settings.box_padding >= 0, '>= 0'),
      ('threshold', 0 < settings.threshold < 1, 'in (0, 1)'),
      ('margin', settings.margin >= 0, '>= 0'),
      ('march_steps', settings.march_steps >= 2, 'at least 2'),
      ('sample_fraction', settings.sample_fraction > 0, '> 0'),
      ('build_frames', settings.build_frames >= 1, 'at least 1'),
      ('points_per_call', settings.points_per_call >= 1, 'at least 1'),
  ]
  for name, ok, wanted in checks:
    if not ok:
      raise errors.UserError(f'config.occupancy.{name} must be {wanted}, '
                             f'got {settings[name]}')


def grid_frames(config, builder) -> dict[str, np.ndarray]:
  """Train frames to measure a grid with ({'audio', 'c2w'}): evenly spaced
  ones (the mouth's states) and the two poses furthest from the mean (the
  torso's extremes)."""
  poses = input_pipeline.load_poses(builder, 'train')
  audio = input_pipeline.load_feature(builder, 'train', 'audio')
  picks = set(np.linspace(0, len(poses) - 1, config.occupancy.build_frames)
              .round().astype(int).tolist())
  distance = np.linalg.norm((poses - poses.mean(0)).reshape(len(poses), -1),
                            axis=1)
  picks |= set(np.argsort(distance)[-2:].tolist())
  picks = sorted(picks)
  return {'audio': audio[picks], 'c2w': poses[picks]}


def from_params(config, model, params, scene, frames, smooth, mesh) -> Grid:
  """A host grid over the scene's head box measured from trained
  parameters: the frames' (`grid_frames`) largest density per cell."""
  settings = config.occupancy
  check_settings(settings)
  box = head_box(scene, model.near, model.far, settings.box_padding)
  return measure(model, params, create(settings.resolution, box), frames,
                 smooth, mesh, settings.points_per_call)
