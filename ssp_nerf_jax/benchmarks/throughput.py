"""Training throughput of the real train step, against this machine's ceiling.

  python -m ssp_nerf_jax.benchmarks.throughput --config=configs/default.py

Random frames, no dataset build; GFLOPs count full samples, not culled ones."""
import json
import resource
import statistics
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags

from ssp_nerf_jax.benchmarks import fake_data
from ssp_nerf_jax.rendering import occupancy
from ssp_nerf_jax.runtime import parallel
from ssp_nerf_jax.training import experiment

# The probe's (m, k, n) shapes: square, and a batch of points through a
# width-256 layer as the MLP multiplies them.
MATMUL_SHAPES = ((2048, 2048, 2048), (32768, 256, 256))


def mlp_macs_per_point(model_config, num_classes):
  """Multiply-accumulates of one NeRF MLP query, per-frame/per-ray terms out."""
  m = model_config
  pe_x = 3 + 6 * m.xyz_freqs
  macs = pe_x * m.width + (m.depth - 1) * m.width * m.width
  if 0 <= m.skip_layer < m.depth - 1:
    macs += pe_x * m.width
  macs += m.width * (1 + num_classes)  # density and parsing heads
  macs += m.width * m.view_width + (m.depth // 4) * m.view_width**2
  macs += m.view_width * 3
  return macs


def warp_macs_per_point(model_config):
  """Multiply-accumulates of one TorsoWarp query (0 without the warp)."""
  m = model_config
  if not m.torso_warp:
    return 0
  pe = 3 + 6 * m.warp_freqs
  return 2 * pe * m.warp_width + m.warp_width**2 + m.warp_width * 4


def model_gflop_per_step(config, num_classes, num_frames):
  """Dense-layer GFLOPs of a train step: 2 FLOPs per MAC, backward = 2x fwd."""
  points_per_ray = {
      'coarse': config.render.num_coarse,
      'fine': config.render.num_coarse + config.render.num_fine,
  }
  macs_per_ray = sum(points_per_ray.values()) * (
      mlp_macs_per_point(config.model, num_classes) +
      warp_macs_per_point(config.model))
  rays = config.train.rays_per_frame * num_frames
  return 3 * 2 * macs_per_ray * rays / 1e9


def matmul_peak_gflops(reps=5, dtype=jnp.float32, shapes=MATMUL_SHAPES):
  """Best median `dtype` matmul rate over `shapes` (m, k, n): the ceiling a
  chip without a known peak is judged against."""
  rates = []
  for m, k, n in shapes:
    a = jnp.ones((m, k), dtype)
    b = jnp.ones((k, n), dtype)
    matmul = jax.jit(jnp.dot)
    matmul(a, b).block_until_ready()
    times = []
    for _ in range(reps):
      start = time.perf_counter()
      matmul(a, b).block_until_ready()
      times.append(time.perf_counter() - start)
    rates.append(2 * m * k * n / statistics.median(times) / 1e9)
  return max(rates)


def measure(config, steps, warmup):
  exp = experiment.setup(config, scene=fake_data.random_scene(config))
  scene, mesh = exp.scene, exp.mesh
  num_frames = config.data.frames_per_device * jax.device_count()
  state = exp.init_state()
  batch = jax.device_put(fake_data.random_batch(config, scene, num_frames),
                         parallel.data_sharded(mesh))
  arrays = exp.scene_arrays()
  key = parallel.replicate(jax.random.PRNGKey(0), mesh)
  step_fn = exp.train_step
  extra = {}
  if config.occupancy.train:
    step_fn = exp.occupancy_train_step
  if config.occupancy.train and config.occupancy.train_grid == 'clip':
    grids = occupancy.FrameGrids(
        exp.model, config.occupancy, exp.state_defaults()['occupancy'].box,
        mesh, resolution=config.occupancy.train_resolution)
    frames = jax.device_get({k: batch[k] for k in ('c2w', 'audio')})
    for _ in range(2):  # the second without compilation
      start = time.perf_counter()
      grid = jax.block_until_ready(grids.largest(
          state.params, frames['c2w'], frames['audio'], False))
      extra['grid_s'] = time.perf_counter() - start
    state = state.replace(occupancy=grid)

  start = time.perf_counter()
  state, metrics = step_fn(state, batch, arrays, key)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  for _ in range(warmup):
    state, metrics = step_fn(state, batch, arrays, key)
    jax.block_until_ready(metrics)
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    state, metrics = step_fn(state, batch, arrays, key)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  step_time = statistics.median(times)
  for name in ('occupancy_hit', 'occupancy_interval'):
    if name in metrics:
      extra[name] = float(metrics[name])
  gflop = model_gflop_per_step(config, scene.num_classes, num_frames)
  return {
      'rays_per_s': config.train.rays_per_frame * num_frames / step_time,
      'step_time_s': step_time,
      'first_step_incl_compile_s': compile_s,
      'model_gflop_per_step': gflop,
      'achieved_gflops': gflop / step_time,
      'devices': jax.device_count(),
      'rays_per_step': config.train.rays_per_frame * num_frames,
      'dtype': config.model.dtype,
      'occupancy_train': bool(config.occupancy.train),
      **extra,
  }


def main(argv):
  del argv
  config = flags.FLAGS.config
  result = measure(config, flags.FLAGS.steps, flags.FLAGS.warmup)
  # Before the matmul probe, whose buffers are not part of training.
  result['peak_host_memory_gib'] = (
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
  result['matmul_peak_gflops'] = matmul_peak_gflops()
  result['fraction_of_peak'] = (result['achieved_gflops'] /
                                result['matmul_peak_gflops'])
  print(json.dumps(result, indent=1))


def define_flags():
  config_flags.DEFINE_config_file('config', 'configs/default.py',
                                  'Config whose train step is measured.')
  flags.DEFINE_integer('steps', 5, 'Timed steps (the median is reported).')
  flags.DEFINE_integer('warmup', 2, 'Untimed steps after compilation.')


if __name__ == '__main__':
  define_flags()  # here, not at import: accelerator_check imports this module
  app.run(main)
