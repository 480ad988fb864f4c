"""Per-video-frame windows of 16 audio feature steps of 20 ms (AD-NeRF layout).

Row 8 of frame i's window is at i / fps.  The log-mel normalisation is fixed,
not per clip, so audio at render time gets the features training saw."""
from typing import Optional, Union
import os

import numpy as np

SAMPLE_RATE = 16_000
HOP_LENGTH = 320
WIN_LENGTH = 640
N_FFT = 1024  # zero-padded: fine enough bins for ~80 mel bands
WINDOW_STEPS = 16
WINDOW_CENTRE = 8
STEP_S = HOP_LENGTH / SAMPLE_RATE
FPS = 25.0
LIBROSA_FEATURES = ('logmel', 'mfcc')
SPEECH_MODEL_FEATURES = ('whisper',)
FEATURES = LIBROSA_FEATURES + SPEECH_MODEL_FEATURES
# Names datasets built from a precomputed .npy ('precomputed:aud.npy').
PRECOMPUTED_PREFIX = 'precomputed:'

# Log-mel in decibels (floor set by _AMIN) maps to x = db / _DB_SCALE + 1.
_AMIN = 1e-8
_DB_SCALE = 40.0
_MFCC_MIN_MELS = 40


def _librosa():
  """librosa, imported where audio is decoded or featurised: code that only
  reads built datasets (the accelerator check) runs without it."""
  import librosa  # pylint: disable=g-import-not-at-top
  return librosa


def load_audio(path: Union[str, os.PathLike]) -> np.ndarray:
  """Reads any audio file as 16 kHz mono float32 [T] (librosa resamples)."""
  waveform, _ = _librosa().load(os.fspath(path), sr=SAMPLE_RATE, mono=True)
  return waveform.astype(np.float32)


def to_16k_mono(waveform: np.ndarray, sample_rate: float) -> np.ndarray:
  """float [T] or [channels, T] at `sample_rate` Hz -> float32 [T'] 16 kHz."""
  waveform = np.asarray(waveform, np.float32)
  if waveform.ndim == 2:
    waveform = _librosa().to_mono(waveform)
  elif waveform.ndim != 1:
    raise ValueError(f'waveform must be [T] or [channels, T], got shape '
                     f'{waveform.shape}')
  if sample_rate != SAMPLE_RATE:
    waveform = _librosa().resample(waveform, orig_sr=sample_rate,
                                target_sr=SAMPLE_RATE)
  return waveform.astype(np.float32)


def num_video_frames(num_samples: int, fps: float = FPS) -> int:
  """Video frames covered by `num_samples` of 16 kHz audio (floor)."""
  # The small epsilon keeps e.g. 24 s * 25 fps at 600, not 599.
  return int(np.floor(num_samples / SAMPLE_RATE * fps + 1e-6))


def feature_steps(waveform: np.ndarray, feature: str = 'logmel',
                  dim: int = 29) -> np.ndarray:
  """'logmel'/'mfcc' of 16 kHz [T]: float32 [T // 320 + 1, dim] (k * 20 ms)."""
  if feature not in LIBROSA_FEATURES:
    raise ValueError(f'audio feature must be one of {LIBROSA_FEATURES}, got '
                     f'{feature!r}')
  if dim < 1:
    raise ValueError(f'audio feature dim must be >= 1, got {dim}')
  n_mels = dim if feature == 'logmel' else max(_MFCC_MIN_MELS, dim)
  librosa = _librosa()
  power = librosa.feature.melspectrogram(
      y=np.asarray(waveform, np.float32), sr=SAMPLE_RATE, n_fft=N_FFT,
      hop_length=HOP_LENGTH, win_length=WIN_LENGTH, center=True,
      pad_mode='constant', n_mels=n_mels, fmin=0.0, fmax=SAMPLE_RATE / 2)
  db = librosa.power_to_db(power, ref=1.0, amin=_AMIN, top_db=None)
  logmel = db / _DB_SCALE + 1.0
  if feature == 'logmel':
    out = logmel
  else:
    out = librosa.feature.mfcc(S=logmel, n_mfcc=dim, dct_type=2,
                               norm='ortho')
  return np.ascontiguousarray(out.T, dtype=np.float32)


def compute_features(waveform: np.ndarray, sample_rate: float = SAMPLE_RATE,
                     *, feature: str = 'logmel', dim: int = 29,
                     num_frames: Optional[int] = None,
                     fps: float = FPS, speech_model: str = '') -> np.ndarray:
  """[T] or [channels, T] audio -> float32 [num_frames, 16, dim] windows.

  Windows past the audio see silence; `speech_model`: Whisper folder or ''."""
  waveform = to_16k_mono(waveform, sample_rate)
  if num_frames is None:
    num_frames = num_video_frames(len(waveform), fps)
  if feature in SPEECH_MODEL_FEATURES:
    from ssp_nerf_jax.data import whisper_features  # pylint: disable=g-import-not-at-top
    return whisper_features.encode_speech(waveform, num_frames, fps,
                                          speech_model, dim)
  centres = np.round(np.arange(num_frames) / fps / STEP_S).astype(np.int64)
  # Zero-pad so every window lies inside the padded signal.
  pad_steps = WINDOW_CENTRE
  rows_needed = int(centres[-1]) + WINDOW_STEPS if num_frames else 0
  total = max(len(waveform) + 2 * pad_steps * HOP_LENGTH,
              rows_needed * HOP_LENGTH)
  padded = np.zeros(total, np.float32)
  padded[pad_steps * HOP_LENGTH:pad_steps * HOP_LENGTH + len(waveform)] = (
      waveform)
  steps = feature_steps(padded, feature, dim)  # row k+8 is at k * 20 ms
  rows = centres[:, None] + np.arange(WINDOW_STEPS)[None, :]
  return steps[rows]


def features_from_file(path: Union[str, os.PathLike], *,
                       feature: str = 'logmel', dim: int = 29,
                       num_frames: Optional[int] = None,
                       fps: float = FPS, speech_model: str = '') -> np.ndarray:
  """`compute_features` of an audio file (any rate / channel count)."""
  return compute_features(load_audio(path), SAMPLE_RATE, feature=feature,
                          dim=dim, num_frames=num_frames, fps=fps,
                          speech_model=speech_model)


def context_offsets(context: int = 8) -> np.ndarray:
  """Frame offsets AudioAttNet smooths over: -4 .. +3 for context 8."""
  if context < 1:
    raise ValueError(f'audio context must be >= 1, got {context}')
  return np.arange(context) - context // 2


def context_windows(features: np.ndarray, context: int = 8) -> np.ndarray:
  """[N, 16, C] -> [N, context, 16, C], frames i + offsets, edge-padded."""
  features = np.asarray(features)
  num_frames = features.shape[0]
  if num_frames == 0:
    raise ValueError('context_windows needs at least one frame')
  index = np.arange(num_frames)[:, None] + context_offsets(context)[None, :]
  return features[np.clip(index, 0, num_frames - 1)]
