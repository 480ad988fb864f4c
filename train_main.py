"""Trains SSP-NeRF.

  python train_main.py                                  # embedded synthetic demo
  python train_main.py --config=configs/tiny.py --workdir=/tmp/tiny
  python train_main.py --config=configs/synthetic.py --config.train.num_steps=100

Resumes from the latest checkpoint in --workdir.  The dataset is built on
first use (see `python -m ssp_nerf_jax.data`).
"""
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

HERE = os.path.dirname(os.path.abspath(__file__))

config_flags.DEFINE_config_file(
    'config', os.path.join(HERE, 'configs', 'synthetic.py'),
    'Training config file (ml_collections); fields can be overridden.')
flags.DEFINE_string('workdir', os.path.join(HERE, 'workdirs', 'synthetic'),
                    'Where checkpoints, summaries and eval images go.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not flags.FLAGS['verbosity'].present:
    # The progress bar and eval lines are the report; library INFO logs
    # (orbax, TFDS) would bury them.  --verbosity=0 brings them back.
    logging.set_verbosity(logging.WARNING)
  from ssp_nerf_jax import errors  # after flag parsing: jax reads XLA_FLAGS
  from ssp_nerf_jax import train
  try:
    train.train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)
  except errors.UserError as e:
    sys.exit(f'error: {e}')


if __name__ == '__main__':
  app.run(main)
