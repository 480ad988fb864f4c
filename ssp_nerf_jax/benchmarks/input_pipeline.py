"""Frames/s delivered by the training input pipeline, as one JSON line.

  python -m ssp_nerf_jax.benchmarks.input_pipeline --config=configs/synthetic.py

The input side's ceiling on training speed: the loop does nothing else."""
import time

from absl import app
from absl import flags
import jax

from ssp_nerf_jax import cli
from ssp_nerf_jax.data import input_pipeline
from ssp_nerf_jax.runtime import parallel


def measure(config, builder, mesh, *, steps: int, warmup: int) -> dict:
  """Times `steps` batches after `warmup`; returns the figures."""
  iterator = input_pipeline.create_train_iterator(config, builder, mesh)
  for _ in range(warmup):
    jax.block_until_ready(next(iterator))
  start = time.perf_counter()
  for _ in range(steps):
    jax.block_until_ready(next(iterator))
  seconds = time.perf_counter() - start
  iterator.close()
  global_batch = config.data.frames_per_device * mesh.devices.size
  return {
      'benchmark': 'input_pipeline',
      'frames_per_s': round(steps * global_batch / seconds, 1),
      'steps_per_s': round(steps / seconds, 1),
      'global_batch': global_batch,
      'devices': int(mesh.devices.size),
      'processes': jax.process_count(),
      'size': config.data.size,
      'steps': steps,
      'seconds': round(seconds, 3),
  }


def main(argv):
  cli.dataset_main(
      argv, lambda config, builder: measure(
          config, builder, parallel.make_data_mesh(),
          steps=flags.FLAGS.steps, warmup=flags.FLAGS.warmup),
      example='--config=configs/synthetic.py')


if __name__ == '__main__':
  cli.define_dataset_flags()
  flags.DEFINE_integer('steps', 300, 'Timed steps.')
  flags.DEFINE_integer('warmup', 20, 'Untimed steps first.')
  app.run(main)
