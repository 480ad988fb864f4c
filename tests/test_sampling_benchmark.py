"""The sampling benchmark end to end on the tiny config."""
import json
import os

import numpy as np
import pytest

from ssp_nerf_jax.benchmarks import sampling
from ssp_nerf_jax.runtime import errors

REGIONS = {'full', 'mouth', 'eyes', 'face', 'hair', 'neck_torso', 'background'}


def test_sampling_benchmark_on_the_tiny_config(tiny_data, tmp_path):
  config, _ = tiny_data
  out = str(tmp_path / 'sampling')
  # A strategy and a variant given by config overrides (the --variant flag).
  sampling.run_sampling_benchmark(
      config, ['uniform'], num_steps=4, seeds=2, eval_frames=1, out_dir=out,
      variants=['semantic_bg:sampling.strategy=semantic,'
                'sampling.semantic_background_area=True,'
                'sampling.semantic_warmup_steps=2'])
  results = json.load(open(os.path.join(out, 'results.json')))
  assert set(results) == {'uniform', 'semantic_bg'}
  for result in results.values():
    assert set(result['psnr']) == REGIONS
    assert np.isfinite(result['psnr']['full'])
    assert 0 <= result['miou'] <= 1
    assert result['step_time_s'] > 0 and result['steps'] == 4
    assert 0 < result['sampler_time_s'] < result['step_time_s']
    # The mean, its spread and every seed's own figure.
    seeds = result['per_seed']
    assert [s['seed'] for s in seeds] == [0, 1]
    full = [s['psnr']['full'] for s in seeds]
    assert result['psnr']['full'] == pytest.approx(np.mean(full))
    assert result['std']['psnr']['full'] == pytest.approx(np.std(full))
    assert set(result['std']) == {'psnr', 'miou', 'step_time_s'}
  # Two seeds per variant, each its own run.
  assert sorted(os.listdir(os.path.join(out, 'runs'))) == [
      'semantic_bg_seed0', 'semantic_bg_seed1', 'uniform_seed0',
      'uniform_seed1']
  assert os.path.getsize(os.path.join(out, 'psnr_vs_step.png')) > 1000
  table = open(os.path.join(out, 'results.md')).read()
  assert '| semantic_bg |' in table and 'mouth PSNR' in table
  assert ' ± ' in table


def test_unknown_strategy_is_one_clear_error(tiny_data, tmp_path):
  config, _ = tiny_data
  with pytest.raises(errors.UserError, match="--strategies=uniform,best"):
    sampling.run_sampling_benchmark(config, ['uniform', 'best'], 4, 1, 1,
                                    str(tmp_path))


def test_variant_flag_parses_overrides():
  name, overrides = sampling.parse_variant(
      'semantic_unbiased:sampling.strategy=semantic,sampling.unbiased=True,'
      'sampling.unbiased_max_weight=10.0')
  assert name == 'semantic_unbiased'
  assert overrides == [('sampling.strategy', 'semantic'),
                       ('sampling.unbiased', True),
                       ('sampling.unbiased_max_weight', 10.0)]


@pytest.mark.parametrize('text, message', [
    ('no_overrides', 'expected NAME:KEY=VALUE'),
    ('bad:sampling.no_such_field=1', 'cannot set config.sampling.no_such'),
    ('bad:sampling.strategy=best', "strategy='best' is not one of"),
])
def test_bad_variant_is_one_clear_error(tiny_data, text, message):
  config, _ = tiny_data
  with pytest.raises(errors.UserError, match=message):
    sampling.strategy_configs(config, [], 4, 1, [text])
