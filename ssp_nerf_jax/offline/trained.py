"""A trained workdir read back: its config, checkpoint steps, and the
dataset, model and parameters of one step (`load_trained`)."""
import collections
import importlib.util
import json
import os
from typing import Optional

import jax
import ml_collections
import numpy as np

from ssp_nerf_jax.data import input_pipeline
from ssp_nerf_jax.rendering import pose_correction

from ssp_nerf_jax.runtime import checkpoints
from ssp_nerf_jax.runtime import errors
from ssp_nerf_jax.training import experiment
from ssp_nerf_jax.training import train_step

# poses: the checkpoint's `pose_refinement.PoseCorrections` (host arrays).
Trained = collections.namedtuple(
    'Trained', ['config', 'builder', 'scene', 'model', 'params', 'step',
                'poses'])


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config a workdir was trained with (`config.json`)."""
  if not os.path.isdir(workdir):
    raise errors.UserError(f'--workdir {workdir} does not exist')
  if not os.listdir(workdir):
    raise errors.UserError(f'--workdir {workdir} is empty (nothing trained)')
  path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(path):
    raise errors.UserError(f'{path} not found: {workdir} is not a training '
                           'workdir')
  try:
    with open(path) as f:
      config = ml_collections.ConfigDict(json.load(f))
  except (OSError, ValueError) as e:
    raise errors.UserError(f'cannot read {path}: {e}') from None
  return with_added_settings(config)


# Where configs/default.py's default differs from how a run trained before
# the setting existed: its parameters have no quantile knots, no eye input.
OLDER_RUN_VALUES = {'model': {'mouth_quantile_knots': 0,
                              'eye_condition': False}}

DEFAULT_CONFIG = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))), 'configs', 'default.py')


def default_config() -> ml_collections.ConfigDict:
  """configs/default.py's `get_config()`, read from the repository."""
  if not os.path.isfile(DEFAULT_CONFIG):
    raise errors.UserError(
        f'{DEFAULT_CONFIG} not found: run from a clone of the repository '
        '(pip install -e .)')
  spec = importlib.util.spec_from_file_location('_ssp_default_config',
                                                DEFAULT_CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def with_added_settings(config: ml_collections.ConfigDict):
  """`config` with every setting (or section) of configs/default.py it
  lacks: settings added after the workdir trained take their defaults,
  except `OLDER_RUN_VALUES`."""
  defaults = default_config()
  for section, settings in defaults.items():
    if not isinstance(settings, ml_collections.ConfigDict):
      continue
    if section not in config:
      config[section] = ml_collections.ConfigDict()
    for name, value in settings.items():
      if name not in config[section]:
        config[section][name] = OLDER_RUN_VALUES.get(section, {}).get(
            name, value)
  return config


def checkpoint_steps(workdir: str) -> list[int]:
  """Steps of the complete checkpoints in `<workdir>/checkpoints`."""
  if not checkpoints.checkpoint_dir(workdir).is_dir():
    return []
  return sorted(checkpoints.open_read_only(workdir).all_steps())


def pick_step(workdir: str, checkpoint_step: Optional[int]) -> int:
  """The checkpoint to load: `checkpoint_step` or the latest one."""
  steps = checkpoint_steps(workdir)
  if not steps:
    raise errors.UserError(
        f'no checkpoint in {checkpoints.checkpoint_dir(workdir)}')
  if checkpoint_step is None:
    return steps[-1]
  if checkpoint_step not in steps:
    raise errors.UserError(f'--checkpoint_step={checkpoint_step} not in '
                           f'{workdir}; available steps: {steps}')
  return checkpoint_step


def load_trained(workdir: str,
                 checkpoint_step: Optional[int] = None) -> Trained:
  """(config, builder, scene, model, params, step) of a training run.

  Args:
    workdir: a train_main workdir (config.json + checkpoints/).
    checkpoint_step: step to load; default the latest.
  Returns:
    `Trained`; params are host (unreplicated) arrays.
  Raises:
    errors.UserError: missing/empty workdir, no config.json, no checkpoint;
      checkpoints.CheckpointError: a damaged step (named, with the steps
      that verify) or one saved from another state structure.
  """
  config = load_config(workdir)
  step = pick_step(workdir, checkpoint_step)
  checkpoints.check_step(workdir, step)  # before the (slow) dataset and model
  experiment.validate_config(config)
  exp = experiment.setup(config)
  # Restored onto this process's first device; replicated when rendering.
  state = checkpoints.restore_for_reading(
      workdir, step, exp.abstract_state(
          jax.sharding.SingleDeviceSharding(jax.local_devices()[0])),
      defaults=exp.state_defaults())
  return Trained(config, exp.builder, exp.scene, exp.model, state.params,
                 int(step), state.poses)


def uses_audio_smoothing(trained: Trained) -> bool:
  """Whether the checkpoint was trained past the audio-smoothing start."""
  return bool(train_step.is_smoothing_on(trained.step, trained.config.train))


def split_poses(trained: Trained, split: str,
                corrected: bool = True) -> np.ndarray:
  """float32 [N, 4, 4] poses of a split ('train' or 'val') in frame order;
  with config.pose_refinement and `corrected`, corrected as trained."""
  c2w = input_pipeline.load_poses(trained.builder, split)
  if not (corrected and trained.config.pose_refinement.enabled):
    return c2w
  deltas = np.asarray(getattr(trained.poses, split))
  return np.asarray(pose_correction.apply_correction(c2w, deltas))
