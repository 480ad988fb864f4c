"""Pixel-sampling strategies compared at equal steps, rays and seeds.

  python -m ssp_nerf_jax.benchmarks.sampling --config=configs/synthetic.py \
      --strategies=uniform,face_rect,semantic --num_steps=700 --seeds=2 \
      --out=/tmp/sampling

Trains the config once per strategy and seed (config.sampling.strategy and
config.seed changed, nothing else), scores the val split by region and
writes to --out (schema: benchmarks/sweep.py):
  results.json       {strategy: {"psnr": {region: dB}, "miou": x,
                      "step_time_s": t, "sampler_time_s": t, "steps": n}}
                     averaged over seeds
  results.md         the same as a table
  psnr_vs_step.png   mouth and full val PSNR against step
  runs/              the training workdirs
`sampler_time_s` is the time of the jitted pixel sampler alone for one
device's frames, so its share of `step_time_s` is the sampler's overhead.
Defaults finish in under 30 minutes on a 2-core CPU (27.5 min measured).
"""
import functools
import os
import statistics
import time

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

from ssp_nerf_jax import cli
from ssp_nerf_jax import errors
from ssp_nerf_jax import ray_sampling
from ssp_nerf_jax import train_step
from ssp_nerf_jax.benchmarks import fake_data
from ssp_nerf_jax.benchmarks import sweep


def strategy_configs(config, strategies, num_steps, eval_frames):
  """{strategy: config} sharing one step budget."""
  unknown = [s for s in strategies if s not in ray_sampling.STRATEGIES]
  if unknown or not strategies:
    raise errors.UserError(f'--strategies={",".join(strategies)}: each must be '
                           f'one of {ray_sampling.STRATEGIES}')
  base = sweep.with_step_budget(config, num_steps, eval_frames)
  variants = {}
  for strategy in strategies:
    variant = base.copy_and_resolve_references()
    variant.sampling.strategy = strategy
    variants[strategy] = variant
  return variants


def sampler_seconds(config, repeats=20):
  """Median seconds of the jitted pixel sampler on one frame of the config.

  The frame is random at the config's size with all classes present; the
  running class losses are distinct so the semantic sampler does its full
  work (class histogram, shares, inverse CDF over every pixel).
  """
  scene = fake_data.random_scene(config)
  batch = fake_data.random_batch(config, scene, num_frames=1)
  class_loss = jax.numpy.linspace(0.01, 0.1, scene.num_classes)
  draw = jax.jit(functools.partial(train_step.draw_rays, config=config,
                                   scene=scene))
  keys = jax.random.split(jax.random.PRNGKey(0), 1)
  arrays = {'background': scene.background}
  run = lambda: jax.block_until_ready(draw(keys, batch, arrays, class_loss,
                                           True))
  run()  # compile
  times = []
  for _ in range(repeats):
    tick = time.perf_counter()
    run()
    times.append(time.perf_counter() - tick)
  return statistics.median(times)


def run_sampling_benchmark(config, strategies, num_steps, seeds, eval_frames,
                           out_dir):
  """Trains every strategy and seed, writes every output; returns results."""
  variants = strategy_configs(config, strategies, num_steps, eval_frames)
  results, histories = sweep.run_sweep(variants, list(range(seeds)), out_dir)
  for strategy, variant in variants.items():
    results[strategy]['sampler_time_s'] = sampler_seconds(variant)
  sweep.write_results(
      out_dir, results,
      f'Sampling strategies: {num_steps} steps x '
      f'{config.train.rays_per_frame} rays, {seeds} seed(s)',
      notes=['Sampler time / step time: ' + ', '.join(
          f'{name} {100 * r["sampler_time_s"] / r["step_time_s"]:.2f} %'
          for name, r in results.items())])
  sweep.plot_psnr_vs_step(os.path.join(out_dir, 'psnr_vs_step.png'),
                          histories)
  return results


def define_flags():
  config_flags.DEFINE_config_file('config', 'configs/synthetic.py',
                                  'Base config of every strategy.')
  flags.DEFINE_list('strategies', list(ray_sampling.STRATEGIES),
                    'Strategies to compare.')
  flags.DEFINE_integer('num_steps', 700,
                       'Training steps of each run (also the lr decay span).')
  flags.DEFINE_integer('seeds', 2, 'Seeds per strategy (0, 1, ...).')
  flags.DEFINE_integer('eval_frames', 8, 'Val frames scored per evaluation.')
  flags.DEFINE_string('out', 'workdirs/sampling', 'Output folder.')


def main(argv):
  cli.start(argv)
  flag = flags.FLAGS
  sweep.run_cli(lambda: run_sampling_benchmark(
      flag.config, flag.strategies, flag.num_steps, flag.seeds,
      flag.eval_frames, flag.out), flag.out)


if __name__ == '__main__':
  define_flags()  # here, not at import: tests import this module
  app.run(main)
