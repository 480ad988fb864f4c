"""Training: the loop around the train step (`train_step.py`).

`train_and_evaluate(config, workdir)` sets the run up (`experiment.setup`),
restores the latest checkpoint or starts fresh, and steps through the
batches of `input_pipeline`, logging, evaluating (`periodic_eval.Evaluator`)
and checkpointing (`checkpoints.Saver`) on the config's schedule.  A
preemption notice (SIGTERM) saves the step reached and raises
`preemption.Preempted`.

With config.occupancy.train the loop also keeps the state's clip-wide
occupancy grid (train_grid 'clip', `GridKeeper`): measured once warm-up is
over and every config.occupancy.train_update_every steps after, on the
same steps in every process; steps taken with a measured grid use the
occupancy train step (`Experiment.occupancy_train_step`).  With per-step
grids or none ('step', 'none': `StepGrids`) that step is used from the end
of warm-up on.
"""
import os
import time
from typing import Optional

import jax
import numpy as np
import tensorboardX
import tqdm

from ssp_nerf_jax.data import builds
from ssp_nerf_jax.data import input_pipeline
from ssp_nerf_jax.evaluation import periodic_eval
from ssp_nerf_jax.rendering import occupancy
from ssp_nerf_jax.runtime import checkpoints
from ssp_nerf_jax.runtime import errors
from ssp_nerf_jax.runtime import parallel
from ssp_nerf_jax.runtime import preemption
from ssp_nerf_jax.training import experiment
from ssp_nerf_jax.training import train_step


class NonFiniteLossError(errors.UserError):
  """Training diverged: the loss became NaN or infinite."""


class StepTimer:
  """Seconds spent in train steps: over the current log window (for the
  rays/s figure) and over the run without its first, compiling, step."""

  def __init__(self):
    self.window_steps, self.window_time = 0, 0.0
    self.timed_steps, self.timed_time = 0, 0.0
    self._first = True

  def add(self, seconds: float) -> None:
    self.window_steps += 1
    self.window_time += seconds
    if not self._first:
      self.timed_steps += 1
      self.timed_time += seconds
    self._first = False

  def window_rate(self, items_per_step: float) -> float:
    """Items per second over the window, which then starts afresh."""
    rate = items_per_step * self.window_steps / max(self.window_time, 1e-9)
    self.window_steps, self.window_time = 0, 0.0
    return rate

  def mean_step_time(self) -> Optional[float]:
    """Mean seconds per step bar the first; None before the second step."""
    return self.timed_time / self.timed_steps if self.timed_steps else None


def check_finite(step, metrics):
  loss = float(metrics['loss'])
  if not np.isfinite(loss):
    raise NonFiniteLossError(
        f'loss became {loss} at step {step}; training stopped (try a lower '
        'config.train.lr); the last checkpoint is unaffected')
  return loss


def write_summaries(writer, step, metrics, class_names):
  for name, value in metrics.items():
    value = np.asarray(value)
    if value.ndim == 0:
      writer.add_scalar(f'train/{name}', float(value), step)
    else:
      for k, class_name in enumerate(class_names):
        writer.add_scalar(f'train_{name}/{class_name}', float(value[k]), step)


def train_and_evaluate(config, workdir):
  """Trains `config` in `workdir`, resuming from its latest checkpoint.

  With several processes (see parallel.initialize_distributed) every
  process calls this alike; only process 0 writes logs, summaries, images
  and the config, and orbax writes the checkpoints collectively.

  Returns:
    The final train state (replicated on the mesh).
  Raises:
    preemption.Preempted: a SIGTERM arrived; the state at the step reached
      was saved first.
  """
  experiment.validate_config(config)
  # A video is preprocessed (once) here, so that the config saved in the
  # workdir names its processed folder and renders need not redo it.
  config = builds.resolve_video(config)
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise errors.UserError(f'cannot create --workdir {workdir}: {e}') from e
  with preemption.Watcher() as watcher:
    return _train(config, workdir, watcher)


def _train(config, workdir, watcher):
  """The body of `train_and_evaluate`, stopping when `watcher` says so."""
  exp = experiment.setup(config)
  # Restored straight into the replicated layout, so that with several
  # processes every one reads the checkpoint into its own devices.  Fresh
  # parameters are computed (compiled) only without a checkpoint.
  manager = checkpoints.create_manager(workdir, config)
  start_step, state = checkpoints.restore_latest(
      manager, exp.abstract_state(), defaults=exp.state_defaults())
  saver = checkpoints.Saver(manager)
  if state is None:
    state = exp.init_state()
  elif parallel.is_main_process():
    tqdm.tqdm.write(f'Resuming from the checkpoint at step {start_step} in '
                    f'{workdir}')
  if parallel.is_main_process():
    checkpoints.write_config(workdir, config)
  if start_step >= config.train.num_steps:
    return state  # trained already: nothing to compile
  evaluator = periodic_eval.Evaluator(config, exp.model, exp.scene, exp.builder,
                                   exp.mesh)
  batches = input_pipeline.create_train_iterator(config, exp.builder, exp.mesh,
                                                 start_step=start_step)
  progress = Progress(config, workdir, exp.scene.class_names, start_step)
  try:
    state, preempted_at = _loop(exp, state, start_step, batches, saver,
                                evaluator, progress, watcher)
  finally:
    progress.close()
    batches.close()
    saver.finish()
  if preempted_at is not None:
    raise preemption.Preempted(preempted_at, workdir)
  return state


def _loop(exp, state, start_step, batches, saver, evaluator, progress,
          watcher):
  """Steps from `start_step` to config.train.num_steps.

  Returns:
    (the state reached, the step a preemption stopped at or None).
  """
  config = exp.config
  num_steps = config.train.num_steps
  key = parallel.replicate(jax.random.PRNGKey(config.seed), exp.mesh)
  scene_arrays = exp.scene_arrays()
  first_batch = next(batches)
  grids = keeper(exp, state) if config.occupancy.train else None
  # Compiled ahead, then every process waits for the others: the first
  # step's collectives then start together (see parallel.wait_for_all_...).
  step_fn = exp.train_step.lower(state, first_batch, scene_arrays,
                                 key).compile()
  if grids:
    grid_step_fn = exp.occupancy_train_step.lower(
        state, first_batch, scene_arrays, key).compile()
  parallel.wait_for_all_processes('train_step_compiled')
  for step in range(start_step + 1, num_steps + 1):
    tick = time.perf_counter()
    batch = first_batch if step == start_step + 1 else next(batches)
    if grids:
      state = grids.refresh(state, step - 1)
    state, metrics = (grid_step_fn if grids and grids.measured else
                      step_fn)(state, batch, scene_arrays, key)
    # Reading the loss every step blocks on it: it catches divergence
    # before a bad state is saved, and keeps simulated-device collectives
    # in step.
    loss = check_finite(step, metrics)
    progress.step(step, time.perf_counter() - tick, loss, metrics)
    if watcher.reached(step):
      # Before eval: the grace period before the kill is short.
      saver.save(step, state, force=True)
      return state, step
    if step % config.train.eval_every == 0 or step == num_steps:
      extra = {'step_time_s': progress.timer.mean_step_time()}
      if grids:
        extra.update(grids.report())
      progress.evaluated(step, evaluator.evaluate(
          state.params, step, progress.workdir, extra=extra))
    saver.save(step, state, force=step == num_steps)
  return state, None


def keeper(exp, state):
  """The loop's occupancy schedule of config.occupancy.train_grid."""
  if exp.config.occupancy.train_grid in ('step', 'none'):
    return StepGrids(exp.config.occupancy)
  return GridKeeper(exp, state)


class StepGrids:
  """The schedule of train_grid 'step' (the step measures its own frames'
  grids) and 'none' (no grid): nothing to keep; steps use the occupancy
  train step once warm-up is over."""

  def __init__(self, settings):
    occupancy.check_settings(settings)
    self.warmup = settings.train_warmup_steps
    self.measured = False

  def refresh(self, state, state_step: int):
    self.measured = state_step >= self.warmup
    return state

  def report(self) -> dict:
    return {}


class GridKeeper:
  """Keeps the train state's clip-wide occupancy grid (config.occupancy.
  train_*) up to date: the largest density over a fixed set of train
  frames (`occupancy.grid_frames`), measured at the cell centres over the
  mesh (`occupancy.FrameGrids`).  Its schedule depends only on the step, so
  a resumed run refreshes as an uninterrupted one."""

  def __init__(self, exp, state):
    settings = exp.config.occupancy
    occupancy.check_settings(settings)
    self.settings = settings
    self.train_config = exp.config.train
    picks = occupancy.grid_frames(
        input_pipeline.load_poses(exp.builder, 'train'),
        input_pipeline.load_feature(exp.builder, 'train', 'mouth_open'),
        settings.train_pose_frames)
    frames = input_pipeline.load_split(exp.config, exp.builder, 'train',
                                       picks)
    self.c2w, self.audio = frames['c2w'], frames['audio']
    self.grids = occupancy.FrameGrids(
        exp.model, settings, exp.state_defaults()['occupancy'].box, exp.mesh,
        resolution=settings.train_resolution)
    self.measured = occupancy.measured(state.occupancy)
    self.seconds, self.count, self.first_seconds = 0.0, 0, None

  def due(self, state_step: int) -> bool:
    """Whether the grid is measured before the step from `state_step`:
    at the end of warm-up, every train_update_every steps after, and
    whenever warm-up is over and the grid was never measured (a resumed
    run of a state without one)."""
    warmup = self.settings.train_warmup_steps
    if state_step < warmup:
      return False
    return (not self.measured or
            (state_step - warmup) % self.settings.train_update_every == 0)

  def refresh(self, state, state_step: int):
    """`state` with its grid measured if `due`."""
    if not self.due(state_step):
      return state
    start = time.perf_counter()
    smooth = train_step.is_smoothing_on(state_step, self.train_config)
    grid = self.grids.largest(state.params, self.c2w, self.audio, smooth)
    jax.block_until_ready(grid)
    seconds = time.perf_counter() - start
    if self.first_seconds is None:
      self.first_seconds = seconds  # with its compilation
    else:
      self.seconds += seconds
    self.count += 1
    self.measured = True
    return state.replace(occupancy=grid)

  def report(self) -> dict:
    """The grid's figures for the eval record."""
    return {'grid_refreshes': self.count,
            # The first (compiling) refresh apart from the others' total.
            'grid_first_refresh_s': self.first_seconds,
            'grid_refresh_s': self.seconds,
            'grid_frames': len(self.c2w)}


class Progress:
  """The run's report: a progress bar, and on process 0 TensorBoard
  summaries and a line per evaluation."""

  def __init__(self, config, workdir, class_names, start_step):
    self.config, self.workdir, self.class_names = config, workdir, class_names
    self.timer = StepTimer()
    self.rays_per_step = (config.train.rays_per_frame *
                          global_batch_size(config))
    is_main = parallel.is_main_process()
    self.writer = (tensorboardX.SummaryWriter(os.path.join(workdir, 'tb'))
                   if is_main else None)
    self.bar = tqdm.tqdm(total=config.train.num_steps, initial=start_step,
                         disable=not is_main, dynamic_ncols=True, desc='train')

  def step(self, step, seconds, loss, metrics):
    """Counts a step; on the log schedule, shows and records its metrics."""
    self.timer.add(seconds)
    self.bar.update(1)
    train_config = self.config.train
    if step % train_config.log_every and step != train_config.num_steps:
      return
    rays_per_s = self.timer.window_rate(self.rays_per_step)
    metrics = jax.device_get(metrics)
    self.bar.set_postfix(loss=f'{loss:.4f}',
                         psnr=f'{float(metrics["psnr"]):.2f}',
                         rays_s=f'{rays_per_s:.0f}')
    if self.writer:
      write_summaries(self.writer, step, metrics, self.class_names)
      self.writer.add_scalar('train/rays_per_s', rays_per_s, step)

  def evaluated(self, step, eval_metrics):
    if not self.writer:
      return
    self.bar.write(f'step {step}: val psnr={eval_metrics["psnr"]:.2f} '
                   f'ssim={eval_metrics["ssim"]:.4f} '
                   f'miou={eval_metrics["miou"]:.4f}')
    for name in ('psnr', 'ssim', 'miou'):
      self.writer.add_scalar(f'eval/{name}', eval_metrics[name], step)

  def close(self):
    self.bar.close()
    if self.writer:
      self.writer.close()


def global_batch_size(config):
  """Frames per global step."""
  return config.data.frames_per_device * jax.device_count()
