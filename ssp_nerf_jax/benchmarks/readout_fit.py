"""Seconds of the audio -> mouth read-out's fit at feature widths users bring.

  python -m ssp_nerf_jax.benchmarks.readout_fit [--frames=N] [--dims=464,6144]

Widths: 16-step windows of MFCC 29 (464), Whisper tiny (6144), HuBERT (16384).
"""
import time

from absl import app
from absl import flags
import numpy as np

from ssp_nerf_jax import cli
from ssp_nerf_jax.models import mouth_readout

flags.DEFINE_integer('frames', 1617, 'Train frames (a 71 s clip has 1617).')
flags.DEFINE_list('dims', ['464', '6144', '16384'], 'Feature widths.')
FLAGS = flags.FLAGS


def timed_fit(frames: int, dim: int, seed: int = 0) -> dict:
  """The fit's wall seconds on a random [frames, 1, 1, dim] problem."""
  rng = np.random.default_rng(seed)
  audio = rng.normal(size=(frames, 1, 1, dim)).astype(np.float32)
  opening = (audio[:, 0, 0, :8].sum(1) +
             3 * rng.normal(size=frames)).astype(np.float32)
  tick = time.perf_counter()
  fitted = mouth_readout.fit_readout(audio, opening)
  return {'seconds': round(time.perf_counter() - tick, 2),
          'strength': float(fitted['strength']),
          'r_cv': round(float(fitted['r_cv']), 4)}


def main(argv):
  cli.start(argv)
  cli.print_json({'benchmark': 'readout_fit', 'frames': FLAGS.frames,
                  **{dim: timed_fit(FLAGS.frames, int(dim))
                     for dim in FLAGS.dims}})


if __name__ == '__main__':
  app.run(main)
