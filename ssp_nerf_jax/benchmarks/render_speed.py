"""Seconds per rendered frame at a config's scale, and peak host memory.

  python -m ssp_nerf_jax.benchmarks.render_speed --config=configs/default.py
  python -m ssp_nerf_jax.benchmarks.render_speed --workdir=DIR --size=450

With --workdir: val frames rendered with and without each frame's occupancy
grid, their times and the PSNR between them (and against the truth).
"""
import json
import resource
import statistics
import sys
import time

from absl import app
from absl import flags
import jax
from ml_collections import config_flags
import numpy as np

from ssp_nerf_jax.benchmarks import fake_data
from ssp_nerf_jax.data import input_pipeline
from ssp_nerf_jax.evaluation import metrics
from ssp_nerf_jax.offline import trained as trained_lib
from ssp_nerf_jax.rendering import frame_renderer
from ssp_nerf_jax.runtime import errors
from ssp_nerf_jax.runtime import parallel
from ssp_nerf_jax.training import experiment

# --workdir settings that override config.occupancy.
OVERRIDES = ('sample_fraction', 'threshold', 'margin', 'resolution',
             'stop_transmittance')

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


def scaled_scene(scene, size):
  """The scene for a `size` x `size` camera: intrinsics and plate scaled."""
  scale = size / scene.height
  background = np.asarray(jax.image.resize(
      scene.background, (size, size, 3), 'linear'))
  return scene.replace(background=background, height=size, width=size,
                       focal=scene.focal * scale, cx=scene.cx * scale,
                       cy=scene.cy * scale)


def val_picks(builder, count):
  """`count` val frames: most open mouth, two outlying poses, evenly spaced."""
  poses = input_pipeline.load_poses(builder, 'val')
  mouth = input_pipeline.load_feature(builder, 'val', 'mouth_open')
  distance = np.linalg.norm((poses - poses.mean(0)).reshape(len(poses), -1),
                            axis=1)
  picks = [int(np.argmax(mouth))] + np.argsort(distance)[::-1][:2].tolist()
  picks += np.linspace(0, len(poses) - 1, count).round().astype(int).tolist()
  return list(dict.fromkeys(picks))[:count]


def measure_workdir(workdir, size, count, overrides):
  """Full vs occupancy renders of a workdir's val frames, alternating."""
  if size < 1 or count < 1:
    raise errors.UserError(f'--size and --frames must be positive, got '
                           f'{size} and {count}')
  trained = trained_lib.load_trained(workdir)
  if trained.scene.height != trained.scene.width:
    raise errors.UserError('--size needs a square dataset, got '
                           f'{trained.scene.width}x{trained.scene.height}')
  trained.config.occupancy.update(overrides)
  mesh = parallel.make_data_mesh()
  frames = input_pipeline.load_split(trained.config, trained.builder, 'val',
                                     val_picks(trained.builder, count))
  scene = scaled_scene(trained.scene, size)
  renderer = frame_renderer.FrameRenderer(trained.config, trained.model,
                                          scene, mesh)
  params = parallel.replicate(trained.params, mesh)
  smooth = trained_lib.uses_audio_smoothing(trained)
  renderer.warm_up(params, frames['c2w'][0], frames['audio'][0], smooth)
  renders = {'full': [], 'occupancy': []}
  times = {'full': [], 'occupancy': [], 'grid': []}
  for c2w, audio in zip(frames['c2w'], frames['audio']):
    tick = time.perf_counter()
    renders['full'].append(renderer.render(params, c2w, audio, smooth))
    times['full'].append(time.perf_counter() - tick)
    # The occupancy time includes measuring the frame's grid.
    tick = time.perf_counter()
    grid = jax.block_until_ready(renderer.frame_grid(params, c2w, audio,
                                                     smooth))
    times['grid'].append(time.perf_counter() - tick)
    renders['occupancy'].append(renderer.render(params, c2w, audio, smooth,
                                                grid))
    times['occupancy'].append(time.perf_counter() - tick)
  record = summarise(renders, times, frames, scene,
                     size == trained.scene.height)
  record.update(grid_build_s=statistics.mean(times['grid']),
                frame_size=size, step=trained.step,
                devices=jax.device_count(),
                occupancy=trained.config.occupancy.to_dict())
  return record


def summarise(renders, times, frames, scene, with_truth):
  """Times, PSNRs and the hit fraction of `measure_workdir`'s renders."""
  rgb = {k: np.stack([np.clip(o['rgb'], 0, 1) for o in v])
         for k, v in renders.items()}
  full_parsing = np.stack([o['class_id'] for o in renders['full']])
  record = {
      'seconds_per_frame_full': statistics.mean(times['full']),
      'seconds_per_frame_occupancy': statistics.mean(times['occupancy']),
      'psnr_between': float(np.mean(metrics.psnr(rgb['occupancy'],
                                                 rgb['full']))),
      'region_psnr_between': metrics.region_psnr(
          rgb['occupancy'], rgb['full'], full_parsing, scene.class_names),
      'hit_fraction': float(np.mean([o['hit'] for o in
                                     renders['occupancy']])),
      'frames': len(times['full']),
      'frame_ids': frames['frame_id'].tolist(),
  }
  record['speedup'] = (record['seconds_per_frame_full'] /
                       record['seconds_per_frame_occupancy'])
  if with_truth:
    truth = frames['image'].astype(np.float32) / 255
    for k in rgb:
      record[f'psnr_{k}_vs_truth'] = float(np.mean(metrics.psnr(rgb[k],
                                                                truth)))
      record[f'region_psnr_{k}_vs_truth'] = metrics.region_psnr(
          rgb[k], truth, frames['parsing'], scene.class_names)
  return record


def define_flags():
  config_flags.DEFINE_config_file('config', 'configs/default.py',
                                  'Config whose frame rendering is measured.')
  flags.DEFINE_integer('chunks', 8, 'Chunks timed after the compiling one '
                       '(0: every chunk of a frame).')
  flags.DEFINE_string('workdir', None, 'A trained workdir: render its val '
                      'frames with and without an occupancy grid instead.')
  flags.DEFINE_integer('size', 450, 'With --workdir: frame size rendered.')
  flags.DEFINE_integer('frames', 3, 'With --workdir: val frames rendered.')
  flags.DEFINE_float('sample_fraction', None, 'With --workdir: override '
                     'config.occupancy.sample_fraction.')
  flags.DEFINE_float('threshold', None, 'With --workdir: override '
                     'config.occupancy.threshold.')
  flags.DEFINE_integer('margin', None, 'With --workdir: override '
                       'config.occupancy.margin.')
  flags.DEFINE_integer('resolution', None, 'With --workdir: override '
                       'config.occupancy.resolution.')
  flags.DEFINE_float('stop_transmittance', None, 'With --workdir: override '
                     'config.occupancy.stop_transmittance.')


def main(argv):
  del argv
  f = flags.FLAGS
  if not f.workdir:
    print(json.dumps(measure(f.config, f.chunks), indent=1))
    return
  overrides = {k: f[k].value for k in OVERRIDES if f[k].value is not None}
  try:
    print(json.dumps(measure_workdir(f.workdir, f.size, f.frames, overrides)))
  except errors.UserError as e:
    sys.exit(f'error: {e}')


if __name__ == '__main__':
  define_flags()  # here, not at import: tests import this module
  app.run(main)
