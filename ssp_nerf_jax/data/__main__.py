"""Builds the configured TFDS dataset (once) and prints a summary line.

  python -m ssp_nerf_jax.data --config=configs/synthetic.py [--data_dir=DIR]"""
from absl import app
from absl import flags
import tensorflow_datasets as tfds

from ssp_nerf_jax import cli
from ssp_nerf_jax.data import builds


def main(argv):
  cli.start(argv)
  cli.require('config', example='--config=configs/synthetic.py')
  tfds.disable_progress_bar()  # its tqdm bars garble logs
  builder = cli.exit_on_user_error(lambda: builds.build_dataset(
      flags.FLAGS.config, flags.FLAGS.data_dir))
  print(builds.summary(builder), flush=True)


if __name__ == '__main__':
  cli.define_dataset_flags()
  app.run(main)
