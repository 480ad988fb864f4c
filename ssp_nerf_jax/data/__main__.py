"""Builds the configured TFDS dataset (once) and says where it is.

  python -m ssp_nerf_jax.data --config=configs/synthetic.py [--data_dir=DIR]
  python -m ssp_nerf_jax.data --config=configs/adnerf.py:cpu --config.data.path=FOLDER
  python -m ssp_nerf_jax.data --config=configs/video.py:cpu --config.data.video=clip.mp4

Prints one line (frames per split, frame size, folder) or one `error:` line.
"""
from absl import app
from absl import flags
import tensorflow_datasets as tfds

from ssp_nerf_jax import cli
from ssp_nerf_jax.data import builds


def main(argv):
  cli.start(argv)  # the output is the summary (or one error) line
  cli.require('config', example='--config=configs/synthetic.py')
  tfds.disable_progress_bar()  # its tqdm bars garble logs
  builder = cli.exit_on_user_error(lambda: builds.build_dataset(
      flags.FLAGS.config, flags.FLAGS.data_dir))
  print(builds.summary(builder), flush=True)


if __name__ == '__main__':
  cli.define_dataset_flags()
  app.run(main)
