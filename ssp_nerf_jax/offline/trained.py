"""A trained workdir read back: its config, checkpoint steps, and the
dataset, model and parameters of one step (`load_trained`)."""
import collections
import json
import os
from typing import Optional

import jax
import ml_collections

from ssp_nerf_jax.runtime import checkpoints
from ssp_nerf_jax.runtime import errors
from ssp_nerf_jax.training import experiment
from ssp_nerf_jax.training import train_step

Trained = collections.namedtuple(
    'Trained', ['config', 'builder', 'scene', 'model', 'params', 'step'])


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


# Settings added to the configs after a workdir's config.json may have been
# written, with configs/default.py's defaults.  Those of training keep such
# a run's behaviour (occupancy.train off, as such a run trained); the rest
# of `occupancy` is render-time, so an older workdir renders like a new one.
ADDED_SETTINGS = {
    'data': {
        'speech_model': '',
    },
    'model': {
        'mouth_condition': False,
        'mouth_freqs': 4,
        'mouth_quantile_knots': 0,
        'mouth_region_radius': 0.0,
        'audio_in_mouth_region': False,
    },
    'sampling': {
        'semantic_background_area': False,
        'unbiased': False,
        'unbiased_max_weight': 0.0,
        'error_map_resolution': 32,
        'error_map_decay': 0.1,
        'error_map_uniform_mix': 0.0,
        'mouth_share': 0.0,
        'mouth_box_scale': 2.0,
    },
    'occupancy': {
        'enabled': True,
        'resolution': 48,
        'box_padding': 0.05,
        'threshold': 0.01,
        'margin': 1,
        'march_steps': 128,
        'stop_transmittance': 0.01,
        'sample_fraction': 0.35,
        'points_per_call': 16384,
        'train': False,
        'train_resolution': 32,
        'train_pose_frames': 4,
        'train_warmup_steps': 200,
        'train_update_every': 200,
        'train_sample_fraction': 0.5,
        # Workdirs from before per-step grids trained with the clip grid.
        'train_grid': 'clip',
        'train_step_resolution': 16,
    },
}


def with_added_settings(config: ml_collections.ConfigDict):
  """`config` with every `ADDED_SETTINGS` value (or section) it lacks."""
  for section, settings in ADDED_SETTINGS.items():
    if section not in config:
      config[section] = ml_collections.ConfigDict()
    for name, value in settings.items():
      if name not in config[section]:
        config[section][name] = value
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
                 int(step))


def uses_audio_smoothing(trained: Trained) -> bool:
  """Whether the checkpoint was trained past the audio-smoothing start."""
  return bool(train_step.is_smoothing_on(trained.step, trained.config.train))
