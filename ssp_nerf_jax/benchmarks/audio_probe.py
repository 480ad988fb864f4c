"""How much of the mouth's motion a dataset's audio features carry (JSON line).

  python -m ssp_nerf_jax.benchmarks.audio_probe --config=configs/adnerf.py:cpu \
      --config.data.path=DIR

A ridge read-out from audio windows to `mouth_open`, scored on val, bounds what
an audio encoder knows.  `mouth_sync_ceiling` is its r with val's face-mesh
openings; `loudness_lag_frames` is the mouth-to-loudness shift (audio sync).
"""
from absl import app
import numpy as np

from ssp_nerf_jax import cli
from ssp_nerf_jax.data import audio_features
from ssp_nerf_jax.data import input_pipeline
from ssp_nerf_jax.evaluation import lipsync
from ssp_nerf_jax.models import mouth_readout
from ssp_nerf_jax.models.mouth_readout import correlate_or_zero
from ssp_nerf_jax.preprocess import landmarks
from ssp_nerf_jax.runtime import errors

MAX_LAG_FRAMES = 6


def frame_loudness(waveform: np.ndarray, num_frames: int,
                   fps: float = audio_features.FPS) -> np.ndarray:
  """[num_frames] log level (decibels) of 16 kHz audio over two frame periods.

  Logarithmic because the mouth follows syllables, not how loud vowels are."""
  half = int(round(audio_features.SAMPLE_RATE / fps))
  padded = np.pad(np.asarray(waveform, np.float64), half)
  centres = np.round(np.arange(num_frames) * audio_features.SAMPLE_RATE /
                     fps).astype(int) + half
  rms = np.array([np.sqrt(np.mean(padded[c - half:c + half]**2))
                  for c in centres])
  return 20 * np.log10(np.maximum(rms, 1e-4))


def best_lag(mouth: np.ndarray, loudness: np.ndarray,
             max_lag: int = MAX_LAG_FRAMES):
  """(L, r): the shift L best correlating mouth[i] with loudness[i + L]."""
  scores = {}
  for lag in range(-max_lag, max_lag + 1):
    if lag >= 0:
      scores[lag] = correlate_or_zero(mouth[:len(mouth) - lag], loudness[lag:])
    else:
      scores[lag] = correlate_or_zero(mouth[-lag:], loudness[:lag])
  lag = max(scores, key=scores.get)
  return lag, scores[lag]


def measured_mouth(frames: dict, split: str) -> np.ndarray:
  """The split's `mouth_open`; UserError if it was not measured."""
  mouth = np.asarray(frames['mouth_open'], np.float64)
  if len(mouth) < mouth_readout.CV_FOLDS or not np.all(np.isfinite(mouth)):
    raise errors.UserError(
        f'the {split} split has no measured mouth opening (mouth_open) for '
        'every frame: use a folder made by python -m ssp_nerf_jax.preprocess '
        '(or a video config), or the synthetic data')
  return mouth


def landmark_opening(images: np.ndarray):
  """[N] face-mesh mouth opening of [N, H, W, 3] images (NaN: no face)|None."""
  try:
    mesh = landmarks.FaceMesh(tracking=False)
  except errors.UserError:  # mediapipe is optional
    return None
  with mesh:
    points, _ = lipsync.find_landmarks(mesh, images)
  return landmarks.mouth_opening(points)


def mouth_sync_ceiling(predicted: np.ndarray, images: np.ndarray):
  """Pearson r of `predicted` with `landmark_opening(images)`, or None."""
  found = landmark_opening(images)
  if found is None or np.sum(np.isfinite(found)) < 2:
    return None
  kept = np.isfinite(found)
  r = lipsync.correlate(predicted[kept], found[kept])
  return None if np.isnan(r) else round(r, 4)


def probe(config, builder) -> dict:
  """The probe's JSON dict for a prepared dataset."""
  train = input_pipeline.load_split(config, builder, 'train')
  val = input_pipeline.load_split(config, builder, 'val')
  y_train = measured_mouth(train, 'train')
  y_val = measured_mouth(val, 'val')
  x_train = mouth_readout.centre_windows(train['audio'])
  x_val = mouth_readout.centre_windows(val['audio'])
  strength, cv_r = mouth_readout.choose_strength(x_train, y_train)
  readout = mouth_readout.ridge_fit(x_train, y_train, strength)
  predicted_val = mouth_readout.predict(readout, x_val)
  frame_ids = np.concatenate([train['frame_id'], val['frame_id']])
  order = np.argsort(frame_ids)
  loudness = frame_loudness(input_pipeline.load_dataset_waveform(builder),
                            int(frame_ids.max()) + 1)
  lag, lag_r = best_lag(np.concatenate([y_train, y_val])[order],
                        loudness[frame_ids[order]])
  return {
      'benchmark': 'audio_probe',
      'audio_feature': builder.info.metadata['audio']['feature'],
      'window': list(train['audio'].shape[2:]),
      'frames_train': len(y_train), 'frames_val': len(y_val),
      'ridge_strength': strength,
      'r_train_cv': round(cv_r, 4),
      'r_val': round(correlate_or_zero(predicted_val, y_val), 4),
      'mouth_sync_ceiling': mouth_sync_ceiling(predicted_val, val['image']),
      'loudness_lag_frames': lag,
      'loudness_r': round(lag_r, 4),
  }


def main(argv):
  cli.dataset_main(argv, probe, example='--config=configs/video.py:cpu '
                   '--config.data.video=clip.mp4')


if __name__ == '__main__':
  cli.define_dataset_flags()
  app.run(main)
