"""The audio -> mouth probe: the lag search on a known shift, and a run on
the tiny synthetic dataset (its ridge is tested in test_mouth_readout)."""
import numpy as np
import pytest

from ssp_nerf_jax.benchmarks import audio_probe
from ssp_nerf_jax.runtime import errors


def test_lag_finds_a_known_shift_of_the_sound():
  rng = np.random.default_rng(2)
  loudness = np.convolve(rng.normal(size=200), np.ones(3) / 3, 'same')
  mouth = np.roll(loudness, -2)  # mouth[i] = loudness[i + 2]
  lag, r = audio_probe.best_lag(mouth[:-2], loudness[:-2])
  assert lag == 2 and r > 0.99


def test_loudness_is_the_level_around_each_frame():
  tone = np.zeros(16000)
  tone[6400:9600] = 0.1  # 0.4 s - 0.6 s: frames 10 - 15 at 25 fps
  level = audio_probe.frame_loudness(tone, 25)
  assert level[12] == pytest.approx(-20.0)  # RMS 0.1
  assert level[0] == level[24] == -80.0  # silence, floored


def test_runs_on_the_synthetic_data(tiny_data):
  config, builder = tiny_data
  result = audio_probe.probe(config, builder)
  assert result['frames_train'] + result['frames_val'] == 50
  assert result['window'] == [16, config.data.audio_dim]
  # The generator's mouth follows its audio: even 45 frames show it.
  assert result['r_train_cv'] > 0.6
  assert result['loudness_lag_frames'] == 0
  # The face mesh finds few 32 px faces: a correlation, or none.
  ceiling = result['mouth_sync_ceiling']
  assert ceiling is None or -1 <= ceiling <= 1



def test_frames_without_a_measurement_are_one_clear_error():
  frames = {'mouth_open': np.full(10, np.nan, np.float32)}
  with pytest.raises(errors.UserError, match='python -m ssp_nerf_jax.'
                     'preprocess'):
    audio_probe.measured_mouth(frames, 'train')
