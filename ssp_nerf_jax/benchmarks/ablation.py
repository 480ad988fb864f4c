"""Torso-warp ablation: the same training with the warp off and on.

  python -m ssp_nerf_jax.benchmarks.ablation --config=configs/synthetic.py \
      --out=/tmp/ablation

Writes sweep's results and strip.png (ground truth | warp off | warp on) of
the val frame with the most turned head.
"""
import os

from absl import app
from absl import flags
import imageio.v3 as iio
from ml_collections import config_flags
import numpy as np

from ssp_nerf_jax.benchmarks import sweep
from ssp_nerf_jax import cli
from ssp_nerf_jax.data import input_pipeline
from ssp_nerf_jax.offline import jobs
from ssp_nerf_jax.offline import trained as trained_lib
from ssp_nerf_jax.runtime import files

VARIANTS = ('warp_off', 'warp_on')


def variant_configs(config, num_steps, eval_frames):
  """{'warp_off': config, 'warp_on': config} with a shared step budget."""
  base = sweep.with_step_budget(config, num_steps, eval_frames)
  variants = {}
  for name in VARIANTS:
    variant = base.copy_and_resolve_references()
    variant.model.torso_warp = name == 'warp_on'
    variants[name] = variant
  return variants


def most_turned_frame(frames, reference_c2w):
  """Index of the frame whose head rotation is farthest from the reference."""
  reference = np.reshape(reference_c2w, (4, 4))[:3, :3]
  relative = np.einsum('ij,nkj->nik', reference, frames['c2w'][:, :3, :3])
  cos = (np.trace(relative, axis1=1, axis2=2) - 1) / 2
  return int(np.argmin(cos))


def write_strip(out_dir, workdirs):
  """strip.png: ground truth | each run, on the most turned val frame."""
  runs = [trained_lib.load_trained(workdir) for workdir in workdirs]
  frames = input_pipeline.load_split(runs[0].config, runs[0].builder, 'val')
  i = most_turned_frame(frames, runs[0].scene.reference_c2w)
  images = [frames['image'][i]]
  for trained in runs:
    rendered = jobs.render_to_memory(trained, frames['c2w'][i:i + 1],
                                     frames['audio'][i:i + 1], desc='strip')
    images.append(rendered['rgb'][0])
  path = os.path.join(out_dir, 'strip.png')
  with files.atomic_path(path) as tmp:
    iio.imwrite(tmp, np.concatenate(images, axis=1))
  return path


def run_ablation(config, num_steps, seeds, eval_frames, out_dir):
  """Trains both variants, writes every output; returns the results dict."""
  variants = variant_configs(config, num_steps, eval_frames)
  results, _ = sweep.run_sweep(variants, list(range(seeds)), out_dir)
  write_strip(out_dir, [sweep.run_dir(out_dir, name, 0) for name in VARIANTS])
  off, on = results['warp_off']['psnr'], results['warp_on']['psnr']
  gains = {r: (None if off[r] is None or on[r] is None else on[r] - off[r])
           for r in off}
  sweep.write_results(
      out_dir, results,
      f'Torso warp ablation: {num_steps} steps, {seeds} seed(s)',
      notes=['Gain with the warp (dB): ' + ', '.join(
          f'{r} {sweep.format_db(g)}' for r, g in gains.items())])
  return results


def define_flags():
  config_flags.DEFINE_config_file('config', 'configs/synthetic.py',
                                  'Base config of both variants.')
  flags.DEFINE_string('out', 'workdirs/ablation', 'Output folder.')
  flags.DEFINE_integer('num_steps', 1600,
                       'Training steps of each run (also the lr decay span).')
  flags.DEFINE_integer('seeds', 1, 'Seeds per variant (0, 1, ...).')
  flags.DEFINE_integer('eval_frames', 8, 'Val frames scored per evaluation.')


def main(argv):
  cli.start(argv)
  flag = flags.FLAGS
  sweep.run_cli(lambda: run_ablation(flag.config, flag.num_steps, flag.seeds,
                                     flag.eval_frames, flag.out), flag.out)


if __name__ == '__main__':
  define_flags()  # here, not at import: tests import this module
  app.run(main)
