"""Where dataset builds live, and building one (once) from a config."""
import os
from typing import Optional

from absl import logging
import jax

from ssp_nerf_jax.data import portrait_dataset
from ssp_nerf_jax.runtime import errors
from ssp_nerf_jax.runtime import parallel

DATA_DIR_ENV = 'SSP_NERF_DATA_DIR'
DEFAULT_DATA_DIR = os.path.join('~', '.cache', 'ssp_nerf_jax',
                                'tensorflow_datasets')


def resolve_data_dir(config) -> str:
  """Absolute root of builds: data.data_dir, $SSP_NERF_DATA_DIR or ~/.cache."""
  data_dir = (config.data.data_dir or os.environ.get(DATA_DIR_ENV) or
              DEFAULT_DATA_DIR)
  return os.path.abspath(os.path.expanduser(data_dir))


def resolve_video(config, data_dir: Optional[str] = None):
  """'video' config -> 'adnerf' config on its (cached) preprocessed folder.

  Other builder_configs return `config` itself."""
  if config.data.builder_config != 'video':
    return config
  video = config.data.video
  if not video:
    raise portrait_dataset.DatasetError(
        'config.data.video must name the video (--config.data.video=clip.mp4)')
  from ssp_nerf_jax.preprocess import pipeline  # pylint: disable=g-import-not-at-top
  root = os.path.join(data_dir or resolve_data_dir(config), 'videos')
  size = config.data.video_size
  folder = _main_process_first(
      lambda: pipeline.cached_folder(video, root, size),
      'ssp_nerf_jax.data.builds.resolve_video')
  config = config.copy_and_resolve_references()
  config.data.builder_config = 'adnerf'
  config.data.path = folder
  return config


def build_dataset(config, data_dir: Optional[str] = None):
  """The prepared `portrait_dataset.SspPortrait`, built if needed.

  A build of an older version serves a run that reads none of the newer
  features (`needs_newest`) instead of building the data again.
  Raises portrait_dataset.DatasetError for invalid settings or data_dir."""
  older = not needs_newest(config)
  config = resolve_video(config, data_dir)
  builder_config = portrait_dataset.config_from_data_config(config.data)
  data_dir = data_dir or resolve_data_dir(config)
  return _main_process_first(lambda: _prepare(builder_config, data_dir, older),
                             'ssp_nerf_jax.data.builds.build_dataset')


def needs_newest(config) -> bool:
  """Whether the run reads a feature older builds lack: eye_openness, with
  config.model.eye_condition."""
  return bool(config.get('model', {}).get('eye_condition', False))


# Paper-scale builds and long clips take tens of minutes on process 0.
_MAKE_TIMEOUT_S = 6 * 3600


def _main_process_first(make, barrier: str):
  """`make()` on every process, process 0's first (shared folders would race).

  Every process passes the barrier, even when cached, so it always pairs up."""
  if jax.process_count() == 1:
    return make()
  if parallel.is_main_process():
    result = make()
  # Not a collective: the others may wait longer than gloo's 30 s.
  parallel.wait_for_all_processes(barrier, timeout_s=_MAKE_TIMEOUT_S)
  if not parallel.is_main_process():
    result = make()
  return result


def _prepare(builder_config, data_dir, older=False):
  """Builds unless present (with `older`, in an older version too);
  returns a builder that reads the result."""
  builder = portrait_dataset.make_builder(builder_config, data_dir, older)
  if portrait_dataset.is_prepared(builder):
    return builder
  errors.ensure_writable_dir(data_dir, 'data_dir',
                             portrait_dataset.DatasetError)
  for path in portrait_dataset.remove_stale_incomplete_dirs(builder):
    logging.info('Removed the leftover of an interrupted build: %s', path)
  logging.info('Building %s into %s', builder_config.key(), builder.data_dir)
  portrait_dataset.prepare(builder)
  # A fresh builder reads back what was written (metadata included).
  return portrait_dataset.make_builder(builder_config, data_dir)


def summary(builder) -> str:
  """One line: frames per split, frame size, folder."""
  meta = builder.info.metadata
  splits = ', '.join(f'{name} {builder.info.splits[name].num_examples}'
                     for name in ('train', 'val'))
  return (f'{portrait_dataset.NAME}/{builder.builder_config.name}: frames '
          f'{splits}; {meta["width"]}x{meta["height"]} px; '
          f'{builder.data_dir}')
