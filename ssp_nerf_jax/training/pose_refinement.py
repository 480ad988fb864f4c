"""Per-frame pose corrections learned with the field (config.pose_refinement).

Each train frame has a correction delta [6] (`rendering.pose_correction`)
trained by its own Adam with an L2 penalty; after training, the val frames'
corrections are fitted against their frames with the field frozen
(`refine_val_poses`), so that val scores judge the field, not the pose fit.
Frames find their row through `pose_rows`: a table from frame_id to the
frame's place in its split.
"""
import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssp_nerf_jax.data import input_pipeline
from ssp_nerf_jax.rendering import pose_correction
from ssp_nerf_jax.runtime import parallel


_BETA1, _BETA2, _EPS = 0.9, 0.999, 1e-8


@flax.struct.dataclass
class RowAdam:
  """Adam's moments mu, nu [T, 6] and step counts [T], per row (lazy Adam).

  A frame is in a step's batch rarely; dense Adam would move every row on
  its stale moments at every step between visits, so that each visit, one
  noisy gradient, became a kick of many steps.  Here a row, its moments
  and its count change only in steps that give it a gradient."""
  mu: jax.Array
  nu: jax.Array
  count: jax.Array

  @classmethod
  def create(cls, table):
    return cls(mu=jnp.zeros_like(table), nu=jnp.zeros_like(table),
               count=jnp.zeros(table.shape[0], jnp.int32))

  def step(self, table, grads, lr):
    """(table [T, 6] after one step on grads [T, 6], new state)."""
    visited = jnp.any(grads != 0, axis=-1)[:, None]
    count = self.count + visited[:, 0]
    mu = jnp.where(visited, _BETA1 * self.mu + (1 - _BETA1) * grads, self.mu)
    nu = jnp.where(visited, _BETA2 * self.nu + (1 - _BETA2) * grads**2,
                   self.nu)
    done = jnp.maximum(count, 1)[:, None].astype(table.dtype)
    move = lr * (mu / (1 - _BETA1**done)) / (
        jnp.sqrt(nu / (1 - _BETA2**done)) + _EPS)
    return table - jnp.where(visited, move, 0.0), RowAdam(mu, nu, count)


@flax.struct.dataclass
class PoseCorrections:
  """float32 corrections train [T, 6] and val [V, 6] (one unused row each
  when refinement is off: orbax saves no empty arrays), and the row-wise
  Adam state of `train`."""
  train: jax.Array
  val: jax.Array
  opt_state: RowAdam


def create(settings, num_train: int, num_val: int) -> PoseCorrections:
  """Zero corrections (no change to the fitted poses)."""
  if not settings.enabled:
    num_train = num_val = 1
  train = jnp.zeros((num_train, 6), jnp.float32)
  return PoseCorrections(train=train, val=jnp.zeros((num_val, 6), jnp.float32),
                         opt_state=RowAdam.create(train))


def pose_rows(frame_ids) -> np.ndarray:
  """int32 [max id + 1]: row i of a split's table for frame_id ids[i]."""
  frame_ids = np.asarray(frame_ids, np.int64)
  rows = np.zeros(int(frame_ids.max(initial=0)) + 1, np.int32)
  rows[frame_ids] = np.arange(len(frame_ids), dtype=np.int32)
  return rows


def penalty(deltas, settings):
  """The L2 penalty of corrections [F, 6], averaged over frames."""
  return (settings.rotation_penalty * jnp.mean(jnp.sum(deltas[:, :3]**2, -1))
          + settings.translation_penalty * jnp.mean(
              jnp.sum(deltas[:, 3:]**2, -1)))


def corrected_c2w(table, rows, fitted_c2w):
  """Fitted poses [F, 4, 4] corrected by their rows of `table` [T, 6]."""
  return pose_correction.apply_correction(fitted_c2w, table[rows])


def update(corrections: PoseCorrections, grads, settings,
           step) -> PoseCorrections:
  """`corrections` after one row-wise Adam step on the train table's
  gradients; unchanged before settings.start_step."""
  grads = jnp.where(step >= settings.start_step, grads, 0.0)
  train, opt_state = corrections.opt_state.step(corrections.train, grads,
                                                settings.lr)
  if settings.fix_gauge:
    train = train - jnp.mean(train, axis=0)
  return corrections.replace(train=train, opt_state=opt_state)


def rotation_rms_deg(table):
  """Root-mean-square rotation of the corrections [T, 6], in degrees."""
  return jnp.degrees(jnp.sqrt(jnp.mean(jnp.sum(table[:, :3]**2, -1))))


def val_step_config(config):
  """The run's config for refining val poses: each step a few rays on many
  frames (the semantic sampler in place of the error map, which has rows
  for train frames only)."""
  settings = config.pose_refinement
  val_config = config.copy_and_resolve_references()
  val_config.data.frames_per_device = settings.val_frames_per_device
  val_config.train.rays_per_frame = settings.val_rays_per_frame
  val_config.train.ray_chunk = min(config.train.ray_chunk,
                                   settings.val_rays_per_frame)
  val_config.pose_refinement.start_step = 0
  val_config.pose_refinement.fix_gauge = False  # the field is frozen
  if val_config.sampling.strategy == 'error_map':
    val_config.sampling.strategy = 'semantic'
  return val_config


def val_batches(config, frames, mesh, num_steps):
  """Yields `num_steps` global batches of random val frames (as training's,
  frames_per_device per device; the same draws on every process)."""
  per_device = config.data.frames_per_device
  positions = input_pipeline.local_positions(mesh)
  sharding = parallel.data_sharded(mesh)
  num_frames = len(frames['frame_id'])
  rng = np.random.default_rng([config.seed, num_frames])
  for _ in range(num_steps):
    picks = rng.integers(0, num_frames, (mesh.devices.size, per_device))
    local = np.concatenate([picks[m] for m in positions])
    yield input_pipeline.to_global({k: v[local] for k, v in frames.items()},
                                   sharding)


FROZEN_FIELD = optax.set_to_zero()


def refine_val_poses(exp, state, step_fn, val_config, frames, key):
  """`state` with poses.val fitted against the val `frames` (all of the
  split, from `input_pipeline.load_split`) by `step_fn`: a train step of
  `val_config` (`val_step_config`) with the optimizer FROZEN_FIELD."""
  settings = exp.config.pose_refinement
  fresh = parallel.replicate(create(settings, len(frames['frame_id']), 1),
                             exp.mesh)
  # A copy: the step donates its state's buffers, `state` keeps its own.
  val_state = jax.tree.map(jnp.copy, state.replace(
      opt_state=FROZEN_FIELD.init(state.params), poses=fresh))
  scene_arrays = exp.scene_arrays(pose_rows(frames['frame_id']))
  for batch in val_batches(val_config, frames, exp.mesh, settings.val_steps):
    val_state, _ = step_fn(val_state, batch, scene_arrays, key)
  return state.replace(poses=state.poses.replace(val=val_state.poses.train))
