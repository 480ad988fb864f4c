"""Orbax checkpoints of the train state, and the resolved config beside them.

Saves are atomic (orbax writes a tmp dir and renames it when complete), so a
run killed mid-save resumes from the last complete step.
"""
import os

from etils import epath
import orbax.checkpoint as ocp


def create_manager(workdir, config) -> ocp.CheckpointManager:
  """Checkpoint manager in `<workdir>/checkpoints` saving every N steps."""
  options = ocp.CheckpointManagerOptions(
      save_decision_policy=ocp.checkpoint_managers.FixedIntervalPolicy(
          config.train.checkpoint_every),
      preservation_policy=ocp.checkpoint_managers.LatestN(
          config.train.keep_checkpoints),
      cleanup_tmp_directories=True)
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


def checkpoint_dir(workdir) -> epath.Path:
  """Where a workdir's checkpoints live."""
  return epath.Path(os.path.abspath(workdir)) / 'checkpoints'


def open_read_only(workdir) -> ocp.CheckpointManager:
  """A manager that reads a workdir's checkpoints and never writes there."""
  return ocp.CheckpointManager(
      checkpoint_dir(workdir),
      options=ocp.CheckpointManagerOptions(read_only=True))


def save(manager, step, state, force=False):
  """Saves `state` (a pytree) at `step` if the policy (or `force`) says so."""
  return manager.save(step, args=ocp.args.StandardSave(state), force=force)


def restore_latest(manager, abstract_state):
  """(step, state) from the newest complete checkpoint, or (0, None)."""
  step = manager.latest_step()
  if step is None:
    return 0, None
  state = manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
  return step, state


def write_config(workdir, config):
  """Writes the resolved config as `<workdir>/config.json` (human-readable)."""
  path = os.path.join(workdir, 'config.json')
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  os.replace(tmp, path)
