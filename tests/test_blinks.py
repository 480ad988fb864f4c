"""The natural blink schedule: rate, durations, spacing, openness range."""
import numpy as np

from ssp_nerf_jax.offline import blinks


def test_schedule_rate_durations_and_spacing():
  minutes = 10
  rates = []
  for seed in range(20):
    schedule = blinks.blink_schedule(60.0 * minutes, seed)
    rates.append(len(schedule) / minutes)
    assert np.all((schedule[:, 1] >= 0.1) & (schedule[:, 1] <= 0.3))
    assert np.all(np.diff(schedule[:, 0]) >= blinks.MIN_INTERVAL_S)
    assert 0 <= schedule[0, 0] and schedule[-1, 0] < 60.0 * minutes
  assert 14 <= min(rates) and max(rates) <= 21
  assert 15 <= np.mean(rates) <= 20


def test_schedule_is_seeded():
  np.testing.assert_array_equal(blinks.blink_schedule(30.0, 3),
                                blinks.blink_schedule(30.0, 3))
  assert not np.array_equal(blinks.blink_schedule(30.0, 3),
                            blinks.blink_schedule(30.0, 4))


def test_openness_shuts_once_per_blink_and_stays_in_range():
  fps, seconds = 25.0, 60.0
  num_frames = int(fps * seconds)
  openness = blinks.natural_openness(num_frames, fps, 0.3, 0.05, seed=1)
  assert openness.shape == (num_frames,) and openness.dtype == np.float32
  assert openness.min() >= 0.05 - 1e-6 and openness.max() <= 0.3 + 1e-6
  schedule = blinks.blink_schedule(seconds, 1)
  shut = np.flatnonzero(np.isclose(openness, 0.05))
  # Each blink has its shut frame(s), next to each other.
  runs = np.split(shut, np.flatnonzero(np.diff(shut) > 1) + 1)
  assert len(runs) == len(schedule)
  assert all(len(run) * 1000 / fps <= 300 for run in runs)
  # Most of the time the eyes are open.
  assert np.mean(openness == np.float32(0.3)) > 0.85


def test_closure_profile():
  schedule = np.array([[1.0, 0.2]])
  times = np.array([0.5, 0.9, 0.925, 0.95, 1.0, 1.05, 1.1, 1.2])
  shut = blinks.closure(times, schedule)
  np.testing.assert_allclose(shut, [0, 0, 0.5, 1, 1, 1, 0, 0], atol=1e-6)
