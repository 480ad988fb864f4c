"""The shape of the package's mains: flags only, one result or `error:` line.

Light to import (no JAX, no TFDS) for the mains that need neither."""
import json
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from ssp_nerf_jax.runtime import errors


def start(argv):
  """Refuses positional arguments; logs warnings only unless --verbosity."""
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)


def require(*names, example=''):
  """Exits with one `error:` line unless every flag in `names` is set."""
  if all(flags.FLAGS[name].value not in (None, '') for name in names):
    return
  listed = ' and '.join(f'--{name}' for name in names)
  verb = 'is' if len(names) == 1 else 'are'
  sys.exit(f'error: {listed} {verb} required' +
           (f', e.g. {example}' if example else ''))


def exit_on_user_error(task):
  """`task()`; a UserError exits with its one `error:` line instead."""
  try:
    return task()
  except errors.UserError as e:
    raise SystemExit(f'error: {e}') from None


def print_json(result):
  print(json.dumps(result), flush=True)


def dataset_main(argv, measure, example):
  """Builds --config's dataset if needed; prints `measure`'s dict as JSON."""
  # JAX and TFDS only for the mains that build a dataset.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from ssp_nerf_jax.data import builds  # pylint: disable=g-import-not-at-top
  start(argv)
  require('config', example=example)
  tfds.disable_progress_bar()
  config, data_dir = flags.FLAGS.config, flags.FLAGS.data_dir

  def run():
    builder = builds.build_dataset(config, data_dir)
    return measure(builds.resolve_video(config, data_dir), builder)
  print_json(exit_on_user_error(run))


def define_dataset_flags():
  """--config and --data_dir; at import time they would collide with others'."""
  from ssp_nerf_jax.data import builds  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file(
      'config', None, 'Path to a config file (configs/*.py).',
      lock_config=True)
  flags.DEFINE_string(
      'data_dir', None,
      'Root of all builds (default: config.data.data_dir, '
      f'${builds.DATA_DIR_ENV}, {builds.DEFAULT_DATA_DIR}).')


def define_process_flags():
  """The multi-process flags shared by train_main.py and render_main.py."""
  from ssp_nerf_jax.runtime import parallel  # pylint: disable=g-import-not-at-top
  flags.DEFINE_bool(
      'distributed', False,
      'Join the multi-process job of the cluster this runs in, which JAX '
      f'detects ({parallel.DETECTED_CLUSTERS}); run the same command on '
      'every host. '
      'Elsewhere give --coordinator_address, --num_processes and '
      '--process_id instead.')
  flags.DEFINE_string(
      'coordinator_address', None,
      'HOST:PORT of process 0, where the coordination service listens '
      '(a multi-process job described by hand; give it with --num_processes '
      'and --process_id).')
  flags.DEFINE_integer('num_processes', None,
                       'Number of processes in the job.')
  flags.DEFINE_integer('process_id', None,
                       'This process, in [0, --num_processes).')
  flags.DEFINE_integer(
      'heartbeat_timeout_s', parallel.DEFAULT_HEARTBEAT_TIMEOUT_S,
      'A process silent this long is declared dead and the others stop with '
      'an error instead of waiting for it.')


def join_processes_from_flags(flag_values=flags.FLAGS) -> bool:
  """`parallel.initialize_distributed` with `define_process_flags`' values."""
  from ssp_nerf_jax.runtime import parallel  # pylint: disable=g-import-not-at-top
  return parallel.initialize_distributed(flag_values.coordinator_address,
                                         flag_values.num_processes,
                                         flag_values.process_id,
                                         flag_values.heartbeat_timeout_s,
                                         detect_cluster=flag_values.distributed)
