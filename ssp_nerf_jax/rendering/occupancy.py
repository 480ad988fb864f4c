"""Where the portrait is in one frame: a coarse density grid over head
space measured from a trained model, and the per-ray depth interval it
leaves to render.

Why a dense grid of densities (instant-ngp's, RAD-NeRF's) and not a finer
structure: the head and torso fill one small box, a 48^3 grid of floats is
half a megabyte, measuring it is one batched evaluation of the field at
the cell centres, and a ray's interval is found by stepping through it
with gathers, all with static shapes.

Why one grid per rendered frame (`FrameGrids`) and not one for the whole
clip: the field changes from frame to frame (the mouth opens with the
audio, the torso moves through head space with the pose), so a grid that
serves every frame must hold the union of their matter, which covers a
thick slab where the torso has ever been and keeps the closed lips in
front of an open mouth.  A frame's own grid (its pose and audio code;
`PortraitNeRF.density`: the larger of the coarse and fine fields, after
the torso warp) culls the rays that miss this frame's portrait and knows
where this frame's surface turns opaque, so samples behind it can go.
Measuring it costs resolution^3 field queries, a fixed cost that a
450 px frame's ~200 k rays x ~100 samples dwarf.

How renders use it (`frame_renderer`, the `occupancy` config section): a
cell is occupied when its density makes one cell's length at least
`threshold` opaque, dilated by `margin` cells.  A ray's interval starts a
step before its first occupied step of a march from near to far and ends
a step after its last, or `margin` cells behind the depth where the
grid's density has let less than `stop_transmittance` of the light
through (`opaque_depth`), whichever is nearer; rays with no occupied step
hit nothing and get the plate.  Points outside the box count as occupied:
whatever the box misses is rendered, never culled.

Training (config.occupancy.train) has three ways to place a ray's
samples (config.occupancy.train_grid), each with
train_sample_fraction of the samples after a warm-up of full sampling:

- 'clip' (train.py's `GridKeeper`): one grid for the whole clip in the
  train state, the largest density over a few train frames
  (`grid_frames`: poses spread to the track's extremes, the most open and
  most closed mouths; the torso warp is inside `PortraitNeRF.density`),
  measured by `FrameGrids.largest` every few hundred steps.  Rays are
  sampled between their first and last occupied cells (`train_bounds`),
  never stopped at the union's opaque depth, which lies in front of many
  frames' torso; rays that hit nothing keep all of [near, far] (still
  rendered: their loss keeps empty space empty).
- 'step': each step measures its own frames' grids inside the jitted step
  (`step_grids`: the coarse field alone, `PortraitNeRF.density` with
  coarse_only, since the fine samples follow the coarse weights; a few
  thousand forward queries per frame at 16^3 cells) and bounds its rays as renders do (`tight_bounds`,
  with the opaque stop).
- 'none': [near, far] with the fewer samples, the control.

On the demo (README, "Measured") neither grid beats the control, and
the control matches the clip grid: the dataset's near bound already sits
just before the face, so only the far side can go.  The clip grid keeps
0.84-0.95 of [near, far].  Per-step grids are tight (82-91 % of rays hit;
their intervals shrink from 0.71 of [near, far] after warm-up to 0.37 at
the end, so the samples are up to 2.7x denser), yet end level with the
control (-0.02 dB: face, hair and mouth gain 0.2-0.6 dB, the background
loses 1.1 dB), trail it by 0.8 dB half-way, and cost 15 % more CPU time.
Likely why: a ray stopped where the still-rough coarse field is opaque
never sees, so never clears, what lies behind that stop, and renders of
other poses see it.  Training's gain is the smaller sample count, grid or
none.
"""
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


class FrameGrids:
  """Occupancy grids measured from a model's parameters: one frame's
  (renders), or the largest density over a set of frames (training's
  clip-wide grid, `TrainGrids`).

  One compiled function serves every call of a job; the cells are split
  over the mesh's devices (each measures its share of the cell centres in
  calls of `points_per_call` points, the same shapes on any number of
  devices), so a grid costs frames x resolution^3 / devices field queries
  per device, whatever the frames' size.
  """

  def __init__(self, model, settings, box, mesh, resolution=None):
    """model: has `density(points [F, N, 3], audio, smooth, c2w, mouth)
    -> [F, N]`; settings: config.occupancy; box: float [2, 3] (`head_box`);
    resolution: cells per side, default settings.resolution."""
    check_settings(settings)
    self.box = np.asarray(box, np.float32)
    resolution = resolution or settings.resolution
    per_call = settings.points_per_call
    cells = resolution**3
    calls = -(-cells // (mesh.devices.size * per_call))
    points = np.asarray(cell_centres(self.box, resolution))
    points = np.pad(points, ((0, mesh.devices.size * calls * per_call - cells),
                             (0, 0)), mode='edge')
    self._points = _global(points, parallel.data_sharded(mesh))

    def per_device(params, points, audio, c2w, mouth, smooth):
      chunks = points.reshape(calls, per_call, 3)

      def one_frame(largest, frame):
        frame_audio, frame_c2w, frame_mouth = frame

        def one_call(chunk):
          return model.apply(params, chunk[None], frame_audio[None], smooth,
                             frame_c2w[None], frame_mouth[None],
                             method=model.density)[0]
        density = lax.map(one_call, chunks).reshape(-1)
        # Densities are >= 0: one frame's grid is its own density.
        return jnp.maximum(largest, density), None

      # zeros_like: varying over the devices, as the densities are.
      largest, _ = lax.scan(one_frame, jnp.zeros_like(points[:, 0]),
                            (audio, c2w, mouth))
      return largest

    measured = jax.shard_map(per_device, mesh=mesh,
                             in_specs=(P(), P(parallel.DATA_AXIS), P(), P(),
                                       P(), P()),
                             out_specs=P(parallel.DATA_AXIS))

    def grid(params, points, audio, c2w, mouth, smooth):
      density = measured(params, points, audio, c2w, mouth, smooth)[:cells]
      return Grid(density=density.reshape((resolution,) * 3),
                  box=jnp.asarray(self.box))

    replicated = parallel.replicated(mesh)
    self._measure = jax.jit(
        grid, in_shardings=(replicated, parallel.data_sharded(mesh),
                            replicated, replicated, replicated, replicated),
        out_shardings=replicated)

  def __call__(self, params, c2w, audio, smooth, mouth=None) -> Grid:
    """The replicated grid of one frame: params replicated, c2w [4, 4],
    audio [A, 16, C], smooth (bool) and its mouth opening (None: predicted
    from the audio) host values, the same on every process."""
    return self.largest(params, np.asarray(c2w)[None],
                        np.asarray(audio)[None], smooth,
                        None if mouth is None else np.asarray(mouth)[None])

  def largest(self, params, c2w, audio, smooth, mouth=None) -> Grid:
    """The replicated grid of the largest density over K frames: c2w
    [K, 4, 4], audio [K, A, 16, C], mouth [K] or None host values (as
    `__call__`)."""
    if mouth is None:
      mouth = np.full(len(c2w), np.nan, np.float32)
    return self._measure(params, self._points,
                         np.asarray(audio, np.float32),
                         np.asarray(c2w, np.float32),
                         np.asarray(mouth, np.float32), np.asarray(smooth))


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


def cell_values(values, box, points):
  """values [G, G, G] at the cells holding points [..., 3] -> (values
  [...], inside bool [...]); outside the box, the nearest cell's value."""
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
  """(t [S], points [..., S, 3]): S evenly spaced depths from near to far
  and the rays' points there."""
  t = jnp.linspace(near, far, num_steps, dtype=jnp.float32)
  return t, (rays.origins[..., None, :] +
             rays.directions[..., None, :] * t[:, None])


def find_occupied_interval(occ, box, rays, near, far, num_steps):
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
  """Depth along each ray at which the grid's density has made it opaque.

  The grid holds the largest density over many frames, so this is where
  light cannot pass in any of them: samples behind it only ever render
  occluded matter.  Cells never measured and points outside the box are
  treated as empty here (they are never culled by `find_occupied_interval`).

  Args:
    grid: `Grid`.
    rays: `Rays` with leading shape [...].
    near, far: scalars, the full interval.
    num_steps: march steps from near to far.
    transmittance: the light left at the returned depth, in (0, 1).

  Returns:
    float32 [...]: the first march step whose transmittance is below
    `transmittance`, or `far` where the ray never gets there.
  """
  t, points = march(rays, near, far, num_steps)
  sigma, inside = cell_values(grid.density, grid.box, points)
  sigma = jnp.where(inside, sigma, 0.0)
  step = (far - near) / (num_steps - 1)
  optical_depth = jnp.cumsum(jnp.maximum(sigma, 0.0) * step, axis=-1)
  opaque = optical_depth > -jnp.log(transmittance)
  return jnp.where(jnp.any(opaque, axis=-1), t[jnp.argmax(opaque, axis=-1)],
                   far)


def grid_frames(poses, mouth_open, pose_frames) -> list[int]:
  """Train frames whose largest density makes training's clip-wide grid.

  The pose closest to the mean, then `pose_frames - 1` poses each furthest
  from those already picked (the extremes of the track: where the torso
  reaches in head space), and the most open and most closed mouths.

  Args:
    poses: [N, 4, 4] the train frames' camera-to-head poses.
    mouth_open: [N] their mouth opening.
    pose_frames: poses to pick (at least 1).
  Returns:
    sorted distinct frame indices.
  """
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
  """(near, far, hit), each [...], of training's rays [...] through its
  clip-wide grid: from a march step before the first occupied cell to a
  step after the last (`find_occupied_interval`), no opaque stop (the union's front
  surface lies in front of many frames' torso); rays that hit nothing
  keep [near, far]."""
  occ = occupied(grid, settings.threshold, settings.margin)
  return find_occupied_interval(occ, grid.box, rays, near, far, settings.march_steps)


def step_grids(model, params, audio, c2w, mouth, smooth, box, resolution):
  """Training's per-step grids: each of a device's F frames measured by
  its own coarse field (`PortraitNeRF.density`, coarse_only) at the cell
  centres, inside the jitted step, one frame at a time (`lax.map`: a
  frame's grid does not depend on how many frames share its device).

  Args:
    model: the `PortraitNeRF`; params: its parameters (no gradient flows).
    audio: [F, A, T, C]; c2w: [F, 4, 4]; mouth: [F]; smooth: bool scalar.
    box: [2, 3]; resolution: cells per side.
  Returns:
    `Grid` with density [F, G, G, G] and box [F, 2, 3].
  """
  points = cell_centres(jnp.asarray(box, jnp.float32), resolution)
  params = lax.stop_gradient(params)

  def one_frame(frame):
    frame_audio, frame_c2w, frame_mouth = frame
    density = model.apply(params, points[None], frame_audio[None], smooth,
                          frame_c2w[None], frame_mouth[None],
                          coarse_only=True, method=model.density)[0]
    return density.reshape((resolution,) * 3)

  density = lax.map(one_frame, (audio, c2w, mouth))
  return Grid(density=density,
              box=jnp.broadcast_to(jnp.asarray(box, jnp.float32),
                                   (density.shape[0], 2, 3)))


def tight_bounds(grid, rays, settings, near, far):
  """(near, far, hit) [...] of rays [...] through one frame's own grid:
  `find_occupied_interval` of its occupied cells (config.occupancy threshold, margin,
  march_steps), with far brought to `margin` cells behind the depth where
  the grid lets less than stop_transmittance through (`opaque_depth`;
  stop_transmittance 0: no stop).  Renders' and training's per-step
  bounds."""
  occ = occupied(grid, settings.threshold, settings.margin)
  num_steps = settings.march_steps
  near_t, far_t, hit = find_occupied_interval(occ, grid.box, rays, near, far, num_steps)
  if settings.stop_transmittance > 0:
    cell = jnp.max((grid.box[1] - grid.box[0]) / grid.density.shape[0])
    opaque = opaque_depth(grid, rays, near, far, num_steps,
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
