"""The shape of the package's command-line mains.

A main takes flags only, logs warnings only unless --verbosity is given, and
ends in one line: its result, or for bad input or settings
(`errors.UserError`) `error: ...` with exit status 1 and no traceback.
"""
import json
import sys

from absl import app
from absl import flags
from absl import logging

from ssp_nerf_jax import errors


def start(argv):
  """Refuses positional arguments and quiets absl's INFO lines (progress
  bars and the final line are the output) unless --verbosity was given."""
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
  """The main of a benchmark that measures a config's dataset.

  Takes `data.define_flags()`'s flags: --config (required; `example` shows
  one) and --data_dir.  Builds the dataset if needed (preprocessing a video
  config's video first), then prints `measure(config, builder)`, a dict, as
  one JSON line.
  """
  # JAX and TFDS only for the mains that build a dataset.
  from ssp_nerf_jax import data  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  start(argv)
  require('config', example=example)
  tfds.disable_progress_bar()
  config, data_dir = flags.FLAGS.config, flags.FLAGS.data_dir

  def run():
    builder = data.build_dataset(config, data_dir)
    return measure(data.resolve_video(config, data_dir), builder)
  print_json(exit_on_user_error(run))
