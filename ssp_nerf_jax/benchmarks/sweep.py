"""Shared machinery of the comparison benchmarks (sampling, ablation).

Trains variants of one config over seeds into <out>/runs and writes
results.json / results.md (means, std, per seed) once every run finished."""
import os
import shutil

import numpy as np
import tqdm

from ssp_nerf_jax import cli
from ssp_nerf_jax.evaluation import metrics
from ssp_nerf_jax.evaluation import periodic_eval
from ssp_nerf_jax.runtime import errors
from ssp_nerf_jax.runtime import files
from ssp_nerf_jax.training import train


def with_step_budget(config, num_steps, eval_frames):
  """A copy of `config` trained for `num_steps`, its schedule scaled to it."""
  config = config.copy_and_resolve_references()
  config.train.num_steps = num_steps
  config.train.lr_decay_steps = num_steps
  config.train.audio_smoothing_start = num_steps // 2
  config.train.eval_every = max(1, -(-num_steps // 3))  # last one at the end
  config.train.eval_frames = eval_frames
  config.train.checkpoint_every = num_steps
  config.train.log_every = max(1, min(config.train.log_every, num_steps))
  return config


def run_dir(out_dir, variant, seed):
  return os.path.join(out_dir, 'runs', f'{variant}_seed{seed}')


def train_run(config, workdir):
  """Trains `config` from scratch in `workdir`; returns its eval records."""
  if os.path.exists(workdir):
    shutil.rmtree(workdir)  # a benchmark run never resumes an old one
  train.train_and_evaluate(config, workdir)
  return periodic_eval.read_history(workdir)


def summarize(history):
  """{'psnr': {region: value}, 'miou', 'step_time_s', 'steps'}, last eval."""
  final = history[-1]
  return {'psnr': final['region_psnr'], 'miou': final['miou'],
          'step_time_s': final['step_time_s'], 'steps': final['step']}


def mean_or_none(values):
  values = list(values)
  return None if any(v is None for v in values) else float(np.mean(values))


def std_or_none(values):
  values = list(values)
  return None if any(v is None for v in values) else float(np.std(values))


def over_seeds(summaries, reduce):
  """`reduce` (a list -> value) of every figure over seeds."""
  regions = summaries[0]['psnr']
  return {
      'psnr': {r: reduce(s['psnr'][r] for s in summaries) for r in regions},
      'miou': reduce(s['miou'] for s in summaries),
      'step_time_s': reduce(s['step_time_s'] for s in summaries),
  }


def average(summaries, seeds=None):
  """Means over seeds of `summarize` dicts, with 'std' and 'per_seed'."""
  seeds = list(range(len(summaries))) if seeds is None else seeds
  return {
      **over_seeds(summaries, mean_or_none),
      'steps': summaries[0]['steps'],
      'std': over_seeds(summaries, std_or_none),
      'per_seed': [{'seed': seed, **{k: s[k] for k in
                                     ('psnr', 'miou', 'step_time_s')}}
                   for seed, s in zip(seeds, summaries)],
  }


def run_sweep(variants, seeds, out_dir):
  """Trains every (variant, seed): (results {name: average}, histories)."""
  errors.ensure_writable_dir(out_dir, '--out')
  runs = [(name, seed) for name in variants for seed in seeds]
  results, histories = {}, {name: [] for name in variants}
  with tqdm.tqdm(total=len(runs), desc='sweep', unit='run', position=1,
                 dynamic_ncols=True) as bar:
    for name, seed in runs:
      bar.set_postfix_str(f'{name} seed {seed}')
      config = variants[name].copy_and_resolve_references()
      config.seed = seed
      histories[name].append(train_run(config, run_dir(out_dir, name, seed)))
      bar.update(1)
  for name in variants:
    results[name] = average([summarize(h) for h in histories[name]], seeds)
  return results, histories


def format_db(value, std=None, digits=2):
  if value is None:
    return '-'
  return f'{value:.{digits}f}' + ('' if std is None else f' ± {std:.{digits}f}')


def markdown_table(results, title):
  """results.md text: a row per variant, a column per region."""
  regions = list(metrics.REGIONS)
  lines = [f'# {title}', '',
           '| variant | ' + ' | '.join(f'{r} PSNR' for r in regions) +
           ' | parsing mIoU | step time (s) |',
           '|---' * (len(regions) + 3) + '|']
  for name, res in results.items():
    std = res.get('std', {'psnr': {}})
    cells = [format_db(res['psnr'][r], std['psnr'].get(r)) for r in regions]
    miou = format_db(res['miou'], std.get('miou'), 3)
    step = format_db(res['step_time_s'], std.get('step_time_s'), 3)
    lines.append(f'| {name} | ' + ' | '.join(cells) + f' | {miou} | {step} |')
  return '\n'.join(lines) + '\n'


def write_results(out_dir, results, title, notes=()):
  """Writes results.json and results.md atomically."""
  files.write_json(os.path.join(out_dir, 'results.json'), results)
  text = markdown_table(results, title)
  if notes:
    text += '\n' + '\n'.join(notes) + '\n'
  files.write_text(os.path.join(out_dir, 'results.md'), text)


def plot_psnr_vs_step(path, histories, regions=('mouth', 'full')):
  """PNG of region PSNR (mean over seeds) against step, a line per variant."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot  # pylint: disable=g-import-not-at-top
  fig, axes = pyplot.subplots(1, len(regions), figsize=(5 * len(regions), 4))
  for ax, region in zip(np.atleast_1d(axes), regions):
    for name, runs in histories.items():
      steps = [record['step'] for record in runs[0]]
      values = [mean_or_none(run[i]['region_psnr'][region] for run in runs)
                for i in range(len(steps))]
      ax.plot(steps, [np.nan if v is None else v for v in values], 'o-',
              label=name)
    ax.set_title(f'{region} PSNR (val)')
    ax.set_xlabel('step')
    ax.set_ylabel('dB')
    ax.grid(alpha=0.3)
    ax.legend()
  fig.tight_layout()
  with files.atomic_path(path) as tmp:
    fig.savefig(tmp, dpi=100)
  pyplot.close(fig)


def run_cli(run, out_dir):
  """Runs a benchmark (UserError: one `error:` line) and prints results.md."""
  cli.exit_on_user_error(run)
  with open(os.path.join(out_dir, 'results.md')) as f:
    print(f.read())
