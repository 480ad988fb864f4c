"""Orbax checkpoints of the train state, verified on restore, and the config.

Each complete step gets a `checkpoint_manifest`; a step without one is
verified by restoring it.  Damaged newer steps move to `corrupt-<step>`."""
import contextlib
import dataclasses
import gc
import logging as python_logging
import os
import sys
import traceback
from typing import Any, Optional

from absl import logging
from etils import epath
import jax
import numpy as np
import orbax.checkpoint as ocp

from ssp_nerf_jax.runtime import checkpoint_manifest
from ssp_nerf_jax.runtime import errors
from ssp_nerf_jax.runtime import files
from ssp_nerf_jax.runtime import parallel

CORRUPT_PREFIX = 'corrupt-'


class CheckpointError(errors.UserError):
  """No usable checkpoint: damaged, or saved from another state structure."""


def create_manager(workdir, config) -> ocp.CheckpointManager:
  """Checkpoint manager in `<workdir>/checkpoints` saving every N steps."""
  options = ocp.CheckpointManagerOptions(
      save_decision_policy=ocp.checkpoint_managers.FixedIntervalPolicy(
          config.train.checkpoint_every),
      preservation_policy=ocp.checkpoint_managers.LatestN(
          config.train.keep_checkpoints),
      cleanup_tmp_directories=True)
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options,
                               item_handlers=ocp.StandardCheckpointHandler())


def checkpoint_dir(workdir) -> epath.Path:
  """Where a workdir's checkpoints live."""
  return epath.Path(os.path.abspath(workdir)) / 'checkpoints'


def open_read_only(workdir) -> ocp.CheckpointManager:
  """A manager that reads a workdir's checkpoints and never writes there."""
  # Values read_only forces anyway, given so that orbax does not warn.
  options = ocp.CheckpointManagerOptions(
      read_only=True, save_interval_steps=0, create=False,
      cleanup_tmp_directories=False)
  with orbax_logs_off():
    return ocp.CheckpointManager(checkpoint_dir(workdir), options=options,
                                 item_handlers=ocp.StandardCheckpointHandler())


def write_config(workdir, config):
  """Writes the resolved config as `<workdir>/config.json`."""
  files.write_text(os.path.join(workdir, 'config.json'),
                   config.to_json_best_effort(indent=2, sort_keys=True))


class Saver:
  """Saves train states and seals each complete step with its manifest.

  A step is sealed when the next save (which waits for it) or `finish` starts,
  so training never waits for a manifest."""

  def __init__(self, manager: ocp.CheckpointManager):
    self.manager = manager
    self._unsealed = []

  def save(self, step: int, state: Any, force: bool = False) -> bool:
    """Saves `state` at `step` if the policy (or `force`) says so."""
    saved = self.manager.save(step, args=ocp.args.StandardSave(state),
                              force=force)
    if saved:
      self._seal(self._unsealed)
      self._unsealed = [step]
    return saved

  def finish(self) -> None:
    """Waits for the save in progress, then seals it."""
    self.manager.wait_until_finished()
    self._seal(self._unsealed)
    self._unsealed = []

  def _seal(self, steps) -> None:
    if not parallel.is_main_process():
      return
    for step in steps:
      try:
        checkpoint_manifest.write_manifest(step_path(self.manager, step))
      except FileNotFoundError:
        pass  # removed meanwhile by the keep policy


def step_path(manager, step) -> epath.Path:
  """The directory of a complete step (orbax names it by the step)."""
  return manager.directory / str(step)


def key_name(key) -> str:
  """One path element of a pytree key path, as orbax's metadata names it."""
  for attribute in ('key', 'name', 'idx'):
    if hasattr(key, attribute):
      return str(getattr(key, attribute))
  return str(key)


def state_layout(tree) -> dict[str, tuple[int, ...]]:
  """{'params/.../kernel': shape} of a pytree of arrays or array metadata."""
  return {'/'.join(key_name(k) for k in path): tuple(leaf.shape)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def layout_mismatch(saved: dict, wanted: dict) -> Optional[str]:
  """The first difference between a saved and the wanted layout, or None."""
  missing = sorted(set(wanted) - set(saved))
  extra = sorted(set(saved) - set(wanted))
  if missing:
    return f'it lacks {missing[0]} ({len(missing)} arrays missing)'
  if extra:
    return f'it has {extra[0]}, which this code does not ({len(extra)} arrays)'
  for name in sorted(wanted):
    if saved[name] != wanted[name]:
      return (f'{name} has shape {saved[name]} there, {wanted[name]} in this '
              'config')
  return None


def root_cause(error: BaseException) -> str:
  """First line of a chain's innermost error: TensorStore's names the file."""
  while error.__cause__ is not None:
    error = error.__cause__
  lines = str(error).strip().splitlines()
  line = lines[0] if lines else type(error).__name__
  return line if len(line) <= 300 else line[:297] + '...'


def _in_orbax(file_names) -> bool:
  return any(f'{os.sep}orbax{os.sep}' in name for name in file_names)


def _raised_in_orbax(exc_traceback) -> bool:
  return _in_orbax(frame.filename for frame in
                   traceback.extract_tb(exc_traceback))


def _from_orbax(unraisable) -> bool:
  code = getattr(unraisable.object, 'cr_code', None)
  return (_raised_in_orbax(unraisable.exc_traceback) or
          (code is not None and _in_orbax([code.co_filename])))


def _is_restore_noise(unraisable) -> bool:
  closed_loop = (isinstance(unraisable.exc_value, RuntimeError) and
                 str(unraisable.exc_value) == 'Event loop is closed')
  return closed_loop or _from_orbax(unraisable)


def _drop_restore_noise(default_hook):
  def hook(unraisable):
    if _is_restore_noise(unraisable):
      logging.debug('ignored after a failed restore: %s',
                    str(unraisable.exc_value).split('\n', 1)[0])
    else:
      default_hook(unraisable)
  hook.drops_restore_noise = True
  return hook


class _AbandonedOrbaxTasks(python_logging.Filter):
  """Drops asyncio's "never retrieved" records of tasks failed in orbax."""

  def filter(self, record):
    if record.name != 'asyncio' or not record.exc_info:
      return True
    return not _raised_in_orbax(record.exc_info[2])


class _OrbaxFilter(python_logging.Filter):
  """Drops the records of orbax and asyncio."""

  def filter(self, record):
    return not (record.name == 'asyncio' or
                _in_orbax([record.pathname or '']))


@contextlib.contextmanager
def orbax_logs_off():
  """Keeps orbax's and asyncio's log records off stderr meanwhile."""
  quiet = _OrbaxFilter()
  loggers = [python_logging.getLogger('asyncio'), python_logging.getLogger(),
             logging.get_absl_logger()]
  targets = loggers + [h for lg in loggers for h in lg.handlers]
  for target in targets:
    target.addFilter(quiet)
  try:
    yield
  finally:
    for target in targets:
      target.removeFilter(quiet)


@contextlib.contextmanager
def quiet_restore():
  """Keeps a failed restore's noise off stderr.

  Its leftover reads raise unraisable errors and asyncio records, possibly
  after the restore returned, so the hook and filter stay installed."""
  if not getattr(sys.unraisablehook, 'drops_restore_noise', False):
    sys.unraisablehook = _drop_restore_noise(sys.unraisablehook)
  asyncio_logger = python_logging.getLogger('asyncio')
  if not any(isinstance(f, _AbandonedOrbaxTasks)
             for f in asyncio_logger.filters):
    asyncio_logger.addFilter(_AbandonedOrbaxTasks())
  with orbax_logs_off():
    try:
      yield
    finally:
      gc.collect()


def restore_step(manager, step, abstract_state, defaults=None):
  """`abstract_state` (shapes, dtypes, shardings) filled from `step`.

  Top-level fields absent from the step take `defaults` ({field: host value}).
  CheckpointError for another state structure; orbax's errors on damage."""
  with quiet_restore():
    saved = state_layout(manager.item_metadata(step))
    absent = {name: value for name, value in (defaults or {}).items()
              if not any(path.split('/')[0] == name for path in saved)}
    target = abstract_state
    if absent:
      target = {field.name: getattr(abstract_state, field.name)
                for field in dataclasses.fields(abstract_state)
                if field.name not in absent}
    mismatch = layout_mismatch(saved, state_layout(target))
    if mismatch:
      raise CheckpointError(
          f'checkpoint step {step} in {manager.directory} was saved by '
          f'another config or code version: {mismatch}')
    restored = manager.restore(step, args=ocp.args.StandardRestore(target))
    if not absent:
      return restored
    placed = {name: jax.tree.map(_placed_like, value,
                                 getattr(abstract_state, name))
              for name, value in absent.items()}
    return abstract_state.replace(**restored, **placed)


def _placed_like(value, abstract):
  """A host value (same on every process) as a global array like `abstract`."""
  value = np.asarray(value, abstract.dtype)
  if value.shape != tuple(abstract.shape):
    raise ValueError(f'default of shape {value.shape}, wanted '
                     f'{abstract.shape}')
  return jax.make_array_from_callback(value.shape, abstract.sharding,
                                      lambda index: value[index])


def restore_or_cause(manager, step, abstract_state, defaults=None):
  """(state, None) if orbax restores `step`, else (None, the cause)."""
  try:
    return restore_step(manager, step, abstract_state, defaults), None
  except CheckpointError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    logging.info('restoring checkpoint step %s failed', step, exc_info=True)
    return None, f'restore failed: {root_cause(e)}'


def move_aside(manager, step) -> epath.Path:
  """Renames `step` to `corrupt-<step>[.<n>]`, which orbax does not see."""
  source = step_path(manager, step)
  for n in range(1, 1000):
    name = f'{CORRUPT_PREFIX}{step}' + (f'.{n}' if n > 1 else '')
    target = manager.directory / name
    if not target.exists():
      os.rename(source, target)
      return target
  raise CheckpointError(f'cannot move {source} aside: too many {name}')


def restore_latest(manager, abstract_state, defaults=None):
  """(step, state) of the newest step that verifies and restores; (0, None).

  Newer failing steps are moved aside once a good one is found; process 0
  checks the files, and a restore counts only if every process succeeded.
  CheckpointError if no step restores (nothing moved) or structures differ.
  """
  is_main = parallel.is_main_process()
  # Lined up first: the broadcasts below are collectives.
  parallel.wait_for_all_processes('checkpoints_restore_latest')
  # Only process 0's list and file checks count.
  candidates = sorted(manager.all_steps(), reverse=True)
  failed = []  # (step, cause)
  while True:
    step = candidates[len(failed)] if len(failed) < len(candidates) else -1
    problem = (checkpoint_manifest.integrity_problem(step_path(manager, step))
               if step >= 0 and is_main else None)
    step, verified = parallel.from_main_process(
        np.array([step, problem is None], np.int64)).tolist()
    if step < 0:
      break
    state, cause = None, problem or 'its files failed the check on process 0'
    if verified:
      state, cause = restore_or_cause(manager, step, abstract_state,
                                      defaults)
    if parallel.all_processes_agree(state is not None):
      _set_aside(manager, failed, step)
      return step, state
    failed.append((step, cause or 'restore failed on another process'))
  if failed:
    tried = '; '.join(f'step {s}: {c}' for s, c in failed)
    raise CheckpointError(
        f'no checkpoint in {manager.directory} verifies and restores '
        f'({tried}); nothing was moved: move the damaged steps away to '
        'start afresh')
  return 0, None


def _set_aside(manager, failed, good_step):
  """Moves failed steps aside on process 0; every manager forgets them."""
  if parallel.is_main_process():
    for step, cause in failed:
      target = move_aside(manager, step)
      print(f'warning: checkpoint step {step} is damaged ({cause}); moved to '
            f'{target}, resuming from step {good_step}', file=sys.stderr,
            flush=True)
  if failed:
    parallel.wait_for_all_processes('checkpoints_set_aside')
    manager.reload()


def verified_steps(workdir) -> list[int]:
  """Steps whose files match their manifest (or that have none)."""
  manager = open_read_only(workdir)
  intact = lambda step: checkpoint_manifest.integrity_problem(
      step_path(manager, step)) is None
  return sorted(filter(intact, manager.all_steps()))


def check_step(workdir, step) -> None:
  """CheckpointError unless `step`'s files match its manifest (no restore)."""
  manager = open_read_only(workdir)
  problem = checkpoint_manifest.integrity_problem(step_path(manager, step))
  if problem:
    raise damaged_step_error(workdir, step, problem)


def damaged_step_error(workdir, step, cause) -> CheckpointError:
  """The one-line error of a reader: the step, why, and what to use."""
  others = [s for s in verified_steps(workdir) if s != step]
  hint = (f'steps that verify: {others} (--checkpoint_step={others[-1]})'
          if others else 'no other step verifies')
  return CheckpointError(f'checkpoint step {step} in {checkpoint_dir(workdir)} '
                         f'is damaged ({cause}); {hint}')


def restore_for_reading(workdir, step, abstract_state, defaults=None):
  """The state of `step` for renders and benchmarks; CheckpointError if not."""
  state, cause = restore_or_cause(open_read_only(workdir), step,
                                  abstract_state, defaults)
  if cause:
    raise damaged_step_error(workdir, step, cause)
  return state
