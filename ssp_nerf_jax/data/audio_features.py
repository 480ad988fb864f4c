"""Per-video-frame audio feature windows (AD-NeRF layout) with librosa.

AD-NeRF conditions frame i on a window of 16 audio feature steps of 20 ms
around the frame's time, and its AudioAttNet smooths over the windows of 8
neighbouring frames.  This module computes the same layout from a waveform:

* Audio is 16 kHz mono (`librosa.load(..., sr=16000, mono=True)` resamples
  and mixes down any file; waveforms at other rates or with several
  channels go through the same librosa calls).
* Feature steps: hop 320 samples (20 ms) with a 640-sample (40 ms) Hann
  window, `center=True`, so step k is centred at k * 20 ms.  Outside the
  audio the signal counts as silence (zero padding).
* Frame i (at fps frames/s) is centred at t_i = i / fps, i.e. step
  c_i = round(t_i / 20 ms) (= 2 i at 25 fps).  Its window holds the 16
  steps c_i - 8 .. c_i + 7: window row j is centred at t_i + (j - 8) * 20 ms,
  so rows 7 and 8 are the centre of the window and row 8 is at t_i exactly.
  (AD-NeRF's DeepSpeech windows are indexed the same way: [2i-8, 2i+8).)
* Features, C per step:
  - 'logmel': C mel bands (0-8 kHz, Slaney) of the power spectrum in dB
    (ref 1.0, floor -80 dB), then a FIXED affine map x = dB / 40 + 1, so
    silence is -1 and speech at a typical level (RMS ~0.1) is ~+0.8.
  - 'mfcc': the first C coefficients of the orthonormal DCT-II of the
    normalised log-mel (max(40, C) bands).  The DCT is orthonormal, so the
    scale follows the log-mel's.
  The normalisation is clip-independent on purpose: new audio at render time
  gets exactly the features training saw, with no statistics to carry over.
  - 'whisper': a pretrained Whisper encoder's rows (C = the model's width,
    384 for tiny), in the same windows (`whisper_features`).
"""
from typing import Optional, Union
import os

import librosa
import numpy as np

SAMPLE_RATE = 16_000
HOP_LENGTH = 320  # 20 ms at 16 kHz: one feature step.
WIN_LENGTH = 640  # 40 ms analysis window (50 % overlap).
N_FFT = 1024  # Zero-padded FFT: fine enough bins for up to ~80 mel bands.
WINDOW_STEPS = 16  # Feature steps per video frame.
WINDOW_CENTRE = 8  # Row of the window that is centred on the frame time.
STEP_S = HOP_LENGTH / SAMPLE_RATE
FPS = 25.0
LIBROSA_FEATURES = ('logmel', 'mfcc')
# Features of a pretrained speech model (`whisper_features`).
SPEECH_MODEL_FEATURES = ('whisper',)
FEATURES = LIBROSA_FEATURES + SPEECH_MODEL_FEATURES
# Feature name recorded for datasets built from a precomputed .npy (e.g.
# 'precomputed:aud.npy'): features we cannot compute from a waveform.
PRECOMPUTED_PREFIX = 'precomputed:'

# Fixed log-mel normalisation: dB values are floored at -80 dB (amin 1e-8)
# and mapped by x = dB / _DB_SCALE + 1.
_AMIN = 1e-8
_DB_SCALE = 40.0
_MFCC_MIN_MELS = 40


def load_audio(path: Union[str, os.PathLike]) -> np.ndarray:
  """Reads any audio file as 16 kHz mono float32 [T] (librosa resamples)."""
  waveform, _ = librosa.load(os.fspath(path), sr=SAMPLE_RATE, mono=True)
  return waveform.astype(np.float32)


def to_16k_mono(waveform: np.ndarray, sample_rate: float) -> np.ndarray:
  """Mixes down and resamples a waveform to 16 kHz mono.

  Args:
    waveform: float [T] or [channels, T] (librosa's channel-first layout).
    sample_rate: rate of `waveform` in Hz.

  Returns:
    float32 [T'] at 16 kHz.
  """
  waveform = np.asarray(waveform, np.float32)
  if waveform.ndim == 2:
    waveform = librosa.to_mono(waveform)
  elif waveform.ndim != 1:
    raise ValueError(f'waveform must be [T] or [channels, T], got shape '
                     f'{waveform.shape}')
  if sample_rate != SAMPLE_RATE:
    waveform = librosa.resample(waveform, orig_sr=sample_rate,
                                target_sr=SAMPLE_RATE)
  return waveform.astype(np.float32)


def num_video_frames(num_samples: int, fps: float = FPS) -> int:
  """Video frames covered by `num_samples` of 16 kHz audio (floor)."""
  # The small epsilon keeps e.g. 24 s * 25 fps at 600, not 599.
  return int(np.floor(num_samples / SAMPLE_RATE * fps + 1e-6))


def feature_steps(waveform: np.ndarray, feature: str = 'logmel',
                  dim: int = 29) -> np.ndarray:
  """Normalised features of a 16 kHz mono waveform, one row per 20 ms.

  Args:
    waveform: float32 [T] at 16 kHz.
    feature: 'logmel' or 'mfcc'.
    dim: C, features per step.

  Returns:
    float32 [S, C] with S = T // 320 + 1; row k is centred at k * 20 ms.
  """
  if feature not in LIBROSA_FEATURES:
    raise ValueError(f'audio feature must be one of {LIBROSA_FEATURES}, got '
                     f'{feature!r}')
  if dim < 1:
    raise ValueError(f'audio feature dim must be >= 1, got {dim}')
  n_mels = dim if feature == 'logmel' else max(_MFCC_MIN_MELS, dim)
  power = librosa.feature.melspectrogram(
      y=np.asarray(waveform, np.float32), sr=SAMPLE_RATE, n_fft=N_FFT,
      hop_length=HOP_LENGTH, win_length=WIN_LENGTH, center=True,
      pad_mode='constant', n_mels=n_mels, fmin=0.0, fmax=SAMPLE_RATE / 2)
  db = librosa.power_to_db(power, ref=1.0, amin=_AMIN, top_db=None)
  logmel = db / _DB_SCALE + 1.0  # [n_mels, S]
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
  """Per-frame windows of 16 feature steps centred on each frame's time.

  Args:
    waveform: float [T] or [channels, T] at `sample_rate`.
    sample_rate: rate of `waveform` in Hz (resampled to 16 kHz).
    feature: one of FEATURES.
    dim: C, features per step (for 'whisper', the model's width).
    num_frames: N video frames; default: the frames the audio covers.
      Windows reaching past the audio see silence.
    fps: video frame rate.
    speech_model: 'whisper' only: the model folder ('' = the installed
      default, `whisper_features.resolve_model_dir`).

  Returns:
    float32 [N, 16, C]; row j of frame i is centred at i/fps + (j-8)*20 ms
    (librosa features: at the nearest 20 ms step; Whisper's: interpolated).
  """
  waveform = to_16k_mono(waveform, sample_rate)
  if num_frames is None:
    num_frames = num_video_frames(len(waveform), fps)
  if feature in SPEECH_MODEL_FEATURES:
    from ssp_nerf_jax.data import whisper_features  # pylint: disable=g-import-not-at-top
    return whisper_features.compute_features(waveform, num_frames, fps,
                                             speech_model, dim)
  centres = np.round(np.arange(num_frames) / fps / STEP_S).astype(np.int64)
  # Zero-pad so every window lies inside the padded signal: `pad_steps` of
  # silence before step 0 and enough after the last window's end.
  pad_steps = WINDOW_CENTRE
  rows_needed = int(centres[-1]) + WINDOW_STEPS if num_frames else 0
  total = max(len(waveform) + 2 * pad_steps * HOP_LENGTH,
              rows_needed * HOP_LENGTH)
  padded = np.zeros(total, np.float32)
  padded[pad_steps * HOP_LENGTH:pad_steps * HOP_LENGTH + len(waveform)] = (
      waveform)
  steps = feature_steps(padded, feature, dim)  # Row k+8 <-> time k * 20 ms.
  # Window of frame i: padded rows c_i .. c_i + 15 (= steps c_i-8 .. c_i+7).
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
  """Frame offsets seen by AudioAttNet: -context//2 .. context - context//2 - 1.

  For the default 8 that is -4..+3 (AD-NeRF's smoothing window: frames
  i-4 .. i+3, the current frame at position 4).
  """
  if context < 1:
    raise ValueError(f'audio context must be >= 1, got {context}')
  return np.arange(context) - context // 2


def context_windows(features: np.ndarray, context: int = 8) -> np.ndarray:
  """Stacks the windows of neighbouring frames for temporal smoothing.

  Args:
    features: [N, 16, C] per-frame windows.
    context: number of neighbouring frames (8 in AD-NeRF).

  Returns:
    [N, context, 16, C]: entry [i, k] is the window of frame
    i + context_offsets(context)[k] (i-4 .. i+3 for 8), with edge padding:
    offsets before frame 0 repeat frame 0, offsets past frame N-1 repeat
    frame N-1.
  """
  features = np.asarray(features)
  num_frames = features.shape[0]
  if num_frames == 0:
    raise ValueError('context_windows needs at least one frame')
  index = np.arange(num_frames)[:, None] + context_offsets(context)[None, :]
  return features[np.clip(index, 0, num_frames - 1)]
