"""The sampling benchmark end to end on the tiny config."""
import json
import os

import numpy as np
import pytest

from ssp_nerf_jax import errors
from ssp_nerf_jax.benchmarks import sampling

REGIONS = {'full', 'mouth', 'eyes', 'face', 'hair', 'neck_torso', 'background'}


def test_sampling_benchmark_on_the_tiny_config(tiny_data, tmp_path):
  config, _ = tiny_data
  out = str(tmp_path / 'sampling')
  sampling.run_sampling_benchmark(config, ['uniform', 'semantic'],
                                  num_steps=4, seeds=2, eval_frames=1,
                                  out_dir=out)
  results = json.load(open(os.path.join(out, 'results.json')))
  assert set(results) == {'uniform', 'semantic'}
  for result in results.values():
    assert set(result['psnr']) == REGIONS
    assert np.isfinite(result['psnr']['full'])
    assert 0 <= result['miou'] <= 1
    assert result['step_time_s'] > 0 and result['steps'] == 4
    assert 0 < result['sampler_time_s'] < result['step_time_s']
  # Two seeds per strategy, each its own run.
  assert sorted(os.listdir(os.path.join(out, 'runs'))) == [
      'semantic_seed0', 'semantic_seed1', 'uniform_seed0', 'uniform_seed1']
  assert os.path.getsize(os.path.join(out, 'psnr_vs_step.png')) > 1000
  table = open(os.path.join(out, 'results.md')).read()
  assert '| semantic |' in table and 'mouth PSNR' in table


def test_unknown_strategy_is_one_clear_error(tiny_data, tmp_path):
  config, _ = tiny_data
  with pytest.raises(errors.UserError, match="--strategies=uniform,best"):
    sampling.run_sampling_benchmark(config, ['uniform', 'best'], 4, 1, 1,
                                    str(tmp_path))
