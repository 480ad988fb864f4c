"""python -m ssp_nerf_jax.preprocess --video=clip.mp4 --out=DIR [--size=512]

Bad input prints one `error: ...` line, exits 1 and leaves no folder.
"""
from absl import app
from absl import flags

from ssp_nerf_jax import cli
from ssp_nerf_jax.preprocess import pipeline

_VIDEO = flags.DEFINE_string('video', None, 'Talking-head video (with audio).')
_OUT = flags.DEFINE_string('out', None, 'Folder to create (absent or empty).')
_SIZE = flags.DEFINE_integer('size', pipeline.DEFAULT_SIZE,
                             'Side of the square output frames, px.')
_SMOOTHING = flags.DEFINE_float(
    'smoothing', 2.0, 'Temporal smoothing of head poses (Gaussian sigma in '
    'frames, centred: no lag; 0 = none).')


def main(argv):
  cli.start(argv)
  cli.require('video', 'out')
  summary = cli.exit_on_user_error(lambda: pipeline.preprocess_video(
      _VIDEO.value, _OUT.value, _SIZE.value, _SMOOTHING.value))
  print(summary.line(), flush=True)


if __name__ == '__main__':
  app.run(main)
