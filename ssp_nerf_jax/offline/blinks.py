"""Eye openness of renders of new speech (`render_openness`), and a
natural blink schedule for them (`--blinks=natural`).

People blink about 15-20 times a minute, each blink 100-300 ms, at
irregular intervals that are rarely under a second.  The schedule is drawn
from a seeded generator, so a render is reproducible, and turned into a
per-frame eye openness in the units of `preprocess/landmarks.eye_openness`
(lid gap over eye width), between the clip's open and closed levels.
"""
import numpy as np

from ssp_nerf_jax.rendering import rigid
from ssp_nerf_jax.runtime import errors

# render_main --blinks: the pose track's own openness, the natural
# schedule, or held open.
MODES = ('track', 'natural', 'open')

# Blinks per minute, drawn once per schedule.
RATE_PER_MINUTE = (15.0, 20.0)
DURATION_S = (0.1, 0.3)
# Shortest interval between blinks, and the gamma shape of the intervals
# above it (larger: more regular).
MIN_INTERVAL_S = 0.8
INTERVAL_SHAPE = 2.0


def blink_schedule(seconds: float, seed: int = 0) -> np.ndarray:
  """float64 [B, 2] (centre, duration) in seconds of the blinks of a clip.

  Intervals are MIN_INTERVAL_S plus a gamma draw whose mean makes the
  rate a uniform draw from RATE_PER_MINUTE; durations uniform in
  DURATION_S.
  """
  rng = np.random.default_rng(seed)
  rate = rng.uniform(*RATE_PER_MINUTE) / 60.0
  extra = max(1.0 / rate - MIN_INTERVAL_S, 1e-3)
  blinks, time = [], rng.uniform(0.0, 1.0 / rate)
  while time < seconds:
    blinks.append((time, rng.uniform(*DURATION_S)))
    time += MIN_INTERVAL_S + rng.gamma(INTERVAL_SHAPE,
                                       extra / INTERVAL_SHAPE)
  return np.asarray(blinks, np.float64).reshape(-1, 2)


def closure(times: np.ndarray, schedule: np.ndarray) -> np.ndarray:
  """float32 [N] in [0, 1] lid closure at times [N] (seconds): 1 over the
  middle half of each blink, cosine ramps over its first and last quarter,
  0 between blinks."""
  times = np.asarray(times, np.float64)[:, None]
  centre, duration = schedule[None, :, 0], schedule[None, :, 1]
  # 0 at the blink's middle, 1 at its ends.
  distance = np.abs(times - centre) / (duration / 2)
  ramp = np.clip((1.0 - distance) * 2.0, 0.0, 1.0)
  shut = 0.5 - 0.5 * np.cos(np.pi * ramp)
  return shut.max(axis=1, initial=0.0).astype(np.float32)


def natural_openness(num_frames: int, fps: float, open_level: float,
                     closed_level: float, seed: int = 0) -> np.ndarray:
  """float32 [num_frames] eye openness of a natural blink schedule:
  open_level between blinks, closed_level at their middle.  Blink centres
  sit on frame times, so every blink shows a shut frame."""
  schedule = blink_schedule(num_frames / fps, seed)
  schedule[:, 0] = np.round(schedule[:, 0] * fps) / fps
  shut = closure(np.arange(num_frames) / fps, schedule)
  return (open_level + (closed_level - open_level) * shut).astype(np.float32)


def openness_levels(params) -> tuple[float, float]:
  """(open, closed) eye openness of the train split, as fitted into an
  eye-conditioned model's params (`EyeRegion`)."""
  region = params['params']['eye_region']
  return float(region['open']), float(region['closed'])


def render_openness(mode: str, trained, num_frames: int,
                    track: np.ndarray, seed: int = 0):
  """float32 [num_frames] eye openness of a render, or None (the model has
  no eye input).

  mode: one of MODES; track: [M] the pose track's openness, played as its
  poses are (`rigid.ping_pong_indices`), NaN frames held open.
  """
  if mode not in MODES:
    raise errors.UserError(f'--blinks must be one of {list(MODES)}, got '
                           f'{mode!r}')
  if not trained.model.eye_condition:
    return None
  open_level, closed_level = openness_levels(trained.params)
  if mode == 'natural':
    return natural_openness(num_frames, trained.scene.fps, open_level,
                            closed_level, seed)
  if mode == 'open' or not len(track):
    return np.full(num_frames, open_level, np.float32)
  played = np.asarray(track, np.float32)[
      rigid.ping_pong_indices(num_frames, len(track))]
  return np.where(np.isfinite(played), played, open_level).astype(np.float32)
