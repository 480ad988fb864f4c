"""Seconds per rendered frame at a config's scale, and peak host memory.

  python -m ssp_nerf_jax.benchmarks.render_speed --config=configs/default.py

Renders chunks of a full frame (config.data.size square, random parameters
and audio: the cost does not depend on them) with the same `FrameRenderer`
as eval and render_main, excluding the compiling first chunk, and prints
one JSON object:
  chunk_time_s          median seconds per chunk of `rays_per_chunk` rays
  chunks_per_frame      chunks of one frame
  seconds_per_frame     chunk_time_s x chunks_per_frame
  measured_chunks       how many chunks were timed (--chunks; 0 = a frame)
  peak_host_memory_gib  peak resident memory of this process
"""
import json
import resource
import statistics
import time

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

from ssp_nerf_jax import experiment
from ssp_nerf_jax import frame_renderer
from ssp_nerf_jax.benchmarks import fake_data

def measure(config, num_chunks):
  exp = experiment.setup(config, scene=fake_data.random_scene(config))
  scene = exp.scene
  params = exp.init_state().params
  renderer = frame_renderer.FrameRenderer(config, exp.model, scene, exp.mesh)
  frame = fake_data.random_batch(config, scene, num_frames=1)
  chunks = renderer.frame_chunks(frame['c2w'][0])
  render = lambda chunk: jax.block_until_ready(renderer.render_chunk(
      params, chunk, frame['c2w'][0], frame['audio'][0], True))
  render(chunks[0])  # compiles
  rest = chunks[1:] or chunks  # a one-chunk frame: time it again
  timed = rest[:num_chunks] if num_chunks else rest
  times = []
  for chunk in timed:
    tick = time.perf_counter()
    render(chunk)
    times.append(time.perf_counter() - tick)
  chunk_time = statistics.median(times)
  return {
      'chunk_time_s': chunk_time,
      'rays_per_chunk': renderer.chunk,
      'chunks_per_frame': renderer.num_chunks,
      'seconds_per_frame': chunk_time * renderer.num_chunks,
      'measured_chunks': len(times),
      'frame_size': scene.height,
      'devices': jax.device_count(),
      'peak_host_memory_gib':
          resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
  }


def define_flags():
  config_flags.DEFINE_config_file('config', 'configs/default.py',
                                  'Config whose frame rendering is measured.')
  flags.DEFINE_integer('chunks', 8, 'Chunks timed after the compiling one '
                       '(0: every chunk of a frame).')


def main(argv):
  del argv
  print(json.dumps(measure(flags.FLAGS.config, flags.FLAGS.chunks), indent=1))


if __name__ == '__main__':
  define_flags()  # here, not at import: tests import this module
  app.run(main)
