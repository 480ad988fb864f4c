"""Orbax checkpoints of the train state, and the resolved config beside them.

Saves are atomic (orbax writes a tmp dir and renames it when complete), so a
run killed mid-save resumes from the last complete step.
"""
import json
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
  directory = epath.Path(os.path.abspath(workdir)) / 'checkpoints'
  return ocp.CheckpointManager(directory, options=options)


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


def read_config_json(workdir):
  """The config dict a workdir was trained with."""
  with open(os.path.join(workdir, 'config.json')) as f:
    return json.load(f)
