"""The training loop: `train_and_evaluate(config, workdir)`.

Sets the run up (`experiment.setup`), resumes from the latest checkpoint,
and steps through the batches of `input_pipeline`, logging (`progress`),
evaluating (`periodic_eval`), checkpointing and following the occupancy
schedule (`occupancy_schedule`).  SIGTERM saves the step reached and raises
`preemption.Preempted`.
"""
import os
import time

import jax
import numpy as np
import tqdm

from ssp_nerf_jax.data import builds
from ssp_nerf_jax.data import input_pipeline
from ssp_nerf_jax.evaluation import periodic_eval
from ssp_nerf_jax.runtime import checkpoints
from ssp_nerf_jax.runtime import errors
from ssp_nerf_jax.runtime import parallel
from ssp_nerf_jax.runtime import preemption
from ssp_nerf_jax.training import experiment
from ssp_nerf_jax.training import occupancy_schedule
from ssp_nerf_jax.training import pose_refinement
from ssp_nerf_jax.training import progress as progress_lib


class NonFiniteLossError(errors.UserError):
  """Training diverged: the loss became NaN or infinite."""


def check_finite(step, metrics):
  loss = float(metrics['loss'])
  if not np.isfinite(loss):
    raise NonFiniteLossError(
        f'loss became {loss} at step {step}; training stopped (try a lower '
        'config.train.lr); the last checkpoint is unaffected')
  return loss


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
  progress = progress_lib.Progress(config, workdir, exp.scene.class_names,
                                   start_step)
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


def refine_val_poses(exp, state, key):
  """`state` with the val split's pose corrections fitted, field frozen."""
  step_fn, val_config = exp.val_pose_step
  frames = input_pipeline.load_split(exp.config, exp.builder, 'val')
  tick = time.perf_counter()
  state = pose_refinement.refine_val_poses(exp, state, step_fn, val_config,
                                           frames, key)
  parallel.progress(f'refined the poses of {len(frames["frame_id"])} val '
                    f'frames in {time.perf_counter() - tick:.0f} s')
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
  grids = (occupancy_schedule.create_schedule(exp, state)
           if config.occupancy.train else None)
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
    state, metrics = (grid_step_fn if grids and grids.active else
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
    if step == num_steps and config.pose_refinement.enabled:
      state = refine_val_poses(exp, state, key)
    if step % config.train.eval_every == 0 or step == num_steps:
      extra = {'step_time_s': progress.timer.mean_step_time()}
      if grids:
        extra.update(grids.report())
      progress.evaluated(step, evaluator.evaluate(
          state.params, step, progress.workdir, extra=extra,
          val_poses=(np.asarray(state.poses.val) if step == num_steps and
                     config.pose_refinement.enabled else None)))
    saver.save(step, state, force=step == num_steps)
  return state, None
