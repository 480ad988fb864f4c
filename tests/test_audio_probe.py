"""The audio -> mouth probe: ridge maths against least squares, the lag
search on a known shift, and a run on the tiny synthetic dataset."""
import numpy as np
import pytest

from ssp_nerf_jax import errors
from ssp_nerf_jax.benchmarks import audio_probe


def test_ridge_without_penalty_is_least_squares():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(80, 6)) * [1, 2, 3, 4, 5, 6] + 7
  y = x @ rng.normal(size=6) + 0.1 * rng.normal(size=80)
  design = np.concatenate([x, np.ones((80, 1))], axis=1)
  expected = design @ np.linalg.lstsq(design, y, rcond=None)[0]
  np.testing.assert_allclose(audio_probe.ridge_fit(x, y, 0.0)(x), expected,
                             atol=1e-8)
  # A huge penalty leaves the intercept: the mean of y.
  np.testing.assert_allclose(audio_probe.ridge_fit(x, y, 1e12)(x), y.mean(),
                             atol=1e-6)


def test_strength_chosen_by_blocks_recovers_a_linear_signal():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(300, 40))
  y = x[:, :3].sum(axis=1) + 0.5 * rng.normal(size=300)
  strength, r = audio_probe.choose_strength(x[:250], y[:250])
  predict = audio_probe.ridge_fit(x[:250], y[:250], strength)
  # Noise std 0.5 against signal std sqrt(3): the best r is ~0.96.
  assert r > 0.85 and audio_probe.pearson(predict(x[250:]), y[250:]) > 0.85


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


def test_frames_without_a_measurement_are_one_clear_error():
  frames = {'mouth_open': np.full(10, np.nan, np.float32)}
  with pytest.raises(errors.UserError, match='python -m ssp_nerf_jax.'
                     'preprocess'):
    audio_probe.measured_mouth(frames, 'train')
