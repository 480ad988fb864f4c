"""Pixel-sampling strategies compared at equal steps, rays and seeds.

  python -m ssp_nerf_jax.benchmarks.sampling --config=configs/synthetic.py \
      --strategies=uniform,semantic --variant='NAME:KEY=VALUE,...' --out=DIR

Writes sweep's results plus `sampler_time_s`, the jitted sampler alone.
"""
import ast
import functools
import os
import statistics
import time

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

from ssp_nerf_jax.benchmarks import fake_data
from ssp_nerf_jax.benchmarks import sweep
from ssp_nerf_jax import cli
from ssp_nerf_jax.runtime import errors
from ssp_nerf_jax.training import experiment
from ssp_nerf_jax.training import ray_sampling
from ssp_nerf_jax.training import train_step


def parse_variant(text):
  """'NAME:KEY=VALUE,...' -> (name, [(dotted key, literal or string)])."""
  name, sep, body = text.partition(':')
  pairs = [item.partition('=') for item in body.split(',') if item]
  if not sep or not name or not pairs or any(not eq or not key
                                             for key, eq, _ in pairs):
    raise errors.UserError(f'--variant={text!r}: expected '
                           'NAME:KEY=VALUE[,KEY=VALUE...]')
  def value(raw):
    try:
      return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      return raw
  return name, [(key.strip(), value(raw.strip())) for key, _, raw in pairs]


def with_overrides(config, overrides, flag_text):
  """A copy of `config` with [(dotted key, value)] set; UserError if invalid."""
  config = config.copy_and_resolve_references()
  for key, value in overrides:
    *path, field = key.split('.')
    section = config
    try:
      for part in path:
        section = section[part]
      if field not in section:
        raise KeyError(key)
      section[field] = value
    except (KeyError, TypeError, AttributeError) as e:
      raise errors.UserError(f'{flag_text}: cannot set config.{key}={value!r}'
                             f' ({e})') from e
  return config


def strategy_configs(config, strategies, num_steps, eval_frames,
                     variants=()):
  """{variant name: config} with one step budget: strategies, then variants."""
  unknown = [s for s in strategies if s not in ray_sampling.STRATEGIES]
  if unknown or not (strategies or variants):
    raise errors.UserError(f'--strategies={",".join(strategies)}: each must be '
                           f'one of {ray_sampling.STRATEGIES}')
  base = sweep.with_step_budget(config, num_steps, eval_frames)
  configs = {strategy: with_overrides(base, [('sampling.strategy', strategy)],
                                      '--strategies')
             for strategy in strategies}
  for text in variants:
    name, overrides = parse_variant(text)
    if name in configs:
      raise errors.UserError(f'--variant={text!r}: the name {name!r} is taken')
    configs[name] = with_overrides(base, overrides, f'--variant={text!r}')
    experiment.validate_config(configs[name])
  return configs


def sampler_seconds(config, repeats=20):
  """Median seconds of the jitted pixel sampler on one random frame.

  Distinct class losses make the semantic sampler do its full work."""
  scene = fake_data.random_scene(config)
  batch = fake_data.random_batch(config, scene, num_frames=1)
  class_loss = jax.numpy.linspace(0.01, 0.1, scene.num_classes)
  draw = jax.jit(functools.partial(train_step.draw_rays, config=config,
                                   scene=scene))
  keys = jax.random.split(jax.random.PRNGKey(0), 1)
  arrays = {'background': scene.background}
  resolution = config.sampling.error_map_resolution
  frame_errors = (jax.random.uniform(keys[0], (1, resolution, resolution))
                  if train_step.uses_error_map(config) else None)
  run = lambda: jax.block_until_ready(draw(keys, batch, arrays, class_loss,
                                           True, frame_errors))
  run()  # compile
  times = []
  for _ in range(repeats):
    tick = time.perf_counter()
    run()
    times.append(time.perf_counter() - tick)
  return statistics.median(times)


def run_sampling_benchmark(config, strategies, num_steps, seeds, eval_frames,
                           out_dir, variants=()):
  """Trains every variant and seed, writes every output; returns results."""
  variants = strategy_configs(config, strategies, num_steps, eval_frames,
                              variants)
  results, histories = sweep.run_sweep(variants, list(range(seeds)), out_dir)
  for strategy, variant in variants.items():
    results[strategy]['sampler_time_s'] = sampler_seconds(variant)
  sweep.write_results(
      out_dir, results,
      f'Sampling strategies: {num_steps} steps x '
      f'{config.train.rays_per_frame} rays, {seeds} seed(s), mean ± std',
      notes=['Sampler time / step time: ' + ', '.join(
          f'{name} {sampler_share(r)}' for name, r in results.items())])
  sweep.plot_psnr_vs_step(os.path.join(out_dir, 'psnr_vs_step.png'),
                          histories)
  return results


def sampler_share(result) -> str:
  """The sampler's share of a step's time, or n/a without a timed step."""
  if not result['step_time_s']:
    return 'n/a'
  return f'{100 * result["sampler_time_s"] / result["step_time_s"]:.2f} %'


def define_flags():
  config_flags.DEFINE_config_file('config', 'configs/synthetic.py',
                                  'Base config of every strategy.')
  flags.DEFINE_list('strategies', ['uniform', 'semantic', 'error_map'],
                    'Strategies to compare (each with the base config).')
  flags.DEFINE_multi_string(
      'variant', [], 'More variants, NAME:KEY=VALUE[,KEY=VALUE...] with dotted '
      'config keys, e.g. semantic_bg:sampling.strategy=semantic,'
      'sampling.semantic_background_area=True (repeatable).')
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
      flag.eval_frames, flag.out, flag.variant), flag.out)


if __name__ == '__main__':
  define_flags()  # here, not at import: tests import this module
  app.run(main)
