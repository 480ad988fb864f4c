"""Trains SSP-NeRF.

  python train_main.py          # the embedded synthetic demo
  python train_main.py --config=configs/tiny.py --workdir=/tmp/tiny
  python train_main.py --config=configs/synthetic.py \
      --config.train.num_steps=100

Resumes from the latest checkpoint in --workdir.  The dataset is built on
first use (see `python -m ssp_nerf_jax.data`).

Several hosts: run the same command on each, with --distributed on a
cluster JAX detects (Cloud TPU pod slice, SLURM, Open MPI, Kubernetes), or
elsewhere with --coordinator_address, --num_processes and --process_id;
see the README.  Without them it is a single-process run.

SIGTERM (a preemption notice) saves a checkpoint at the current step and
exits with status 75 after a line "preempted at step N: ..."; the same
command resumes.  Bad input ends with one `error: ...` line and status 1.
"""
import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from ssp_nerf_jax import cli
from ssp_nerf_jax.runtime import errors
from ssp_nerf_jax.runtime import preemption
from ssp_nerf_jax.training import train

HERE = os.path.dirname(os.path.abspath(__file__))

config_flags.DEFINE_config_file(
    'config', os.path.join(HERE, 'configs', 'synthetic.py'),
    'Training config file (ml_collections); fields can be overridden.')
flags.DEFINE_string('workdir', os.path.join(HERE, 'workdirs', 'synthetic'),
                    'Where checkpoints, summaries and eval images go.')
cli.define_process_flags()


def main(argv):
  # The progress bar and eval lines are the report; library INFO logs
  # (orbax, TFDS) would bury them.  --verbosity=0 brings them back.
  cli.start(argv)
  try:
    cli.join_processes_from_flags()
    train.train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)
  except preemption.Preempted as e:
    print(e, file=sys.stderr, flush=True)
    sys.exit(preemption.EXIT_CODE)
  except errors.UserError as e:
    sys.exit(f'error: {e}')


if __name__ == '__main__':
  app.run(main)
