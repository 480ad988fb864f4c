"""Whisper speech features: the log-mel against a slow reference, window
stitching and timing, the installed model's rows, and the errors a user
without a model (or with the wrong one) gets."""
import numpy as np
import pytest

from ssp_nerf_jax.data import whisper_features
from ssp_nerf_jax.runtime import errors

SR = whisper_features.SAMPLE_RATE


def hz_to_slaney_mel(hz):
  """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
  hz = np.asarray(hz, np.float64)
  linear = hz / (200.0 / 3)
  log = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27)
  return np.where(hz >= 1000.0, log, linear)


def slaney_mel_to_hz(mel):
  mel = np.asarray(mel, np.float64)
  linear = mel * (200.0 / 3)
  log = 1000.0 * np.exp((np.log(6.4) / 27) * (mel - 15.0))
  return np.where(mel >= 15.0, log, linear)


def reference_log_mel(waveform, n_mels=80):
  """Whisper's recipe written out: reflect-padded 400-sample frames every
  160, periodic Hann, a DFT by its definition, triangular Slaney filters of
  unit area, log10, max - 8 clamp, (x + 4) / 4."""
  padded = np.pad(np.asarray(waveform, np.float64), 200, mode='reflect')
  num_frames = len(waveform) // 160  # the STFT's last frame is dropped
  window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)
  bins = np.arange(201)
  dft = np.exp(-2j * np.pi * np.outer(bins, np.arange(400)) / 400)
  power = np.stack([np.abs(dft @ (padded[160 * j:160 * j + 400] * window))**2
                    for j in range(num_frames)], axis=1)  # [201, frames]
  edges = slaney_mel_to_hz(np.linspace(hz_to_slaney_mel(0.0),
                                       hz_to_slaney_mel(SR / 2), n_mels + 2))
  freqs = bins * SR / 400
  filters = np.zeros((n_mels, 201))
  for m in range(n_mels):
    left, centre, right = edges[m:m + 3]
    rising = (freqs - left) / (centre - left)
    falling = (right - freqs) / (right - centre)
    filters[m] = np.maximum(0, np.minimum(rising, falling)) * 2 / (right - left)
  log = np.log10(np.maximum(filters @ power, 1e-10))
  return (np.maximum(log, log.max() - 8) + 4) / 4


def speechy(seconds, seed=0):
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * SR)) / SR
  envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)  # syllable-like
  return (envelope * (0.2 * np.sin(2 * np.pi * (150 + 100 * t) * t) +
                      0.05 * rng.normal(size=t.shape))).astype(np.float32)


def test_log_mel_matches_the_slow_reference():
  wave = speechy(0.5)
  wave[:1000] = 0  # silence is clamped at the clip's max - 8
  np.testing.assert_allclose(whisper_features.log_mel(wave),
                             reference_log_mel(wave), atol=2e-4)


def local_encoder(mel):
  """A stand-in with Whisper's timing but no attention: row k is the mean
  of mel frames 2k - 1 .. 2k + 1 (zero outside), so every row depends only
  on its neighbourhood and windows must stitch exactly."""
  padded = np.pad(mel, ((0, 0), (1, 1)))
  rows = (padded[:, 0:-2:2] + padded[:, 1:-1:2] + padded[:, 2::2]) / 3
  return rows.T


@pytest.mark.parametrize('num_rows', [30, 41, 100, 157])
def test_windows_stitch_into_one_pass(num_rows):
  rng = np.random.default_rng(0)
  mel = rng.normal(size=(4, 2 * 200)).astype(np.float32)
  one_pass = local_encoder(mel[:, :2 * num_rows])
  # Rows near a window's edge see its zero padding: drop the first and last
  # row of each window's kept span by keeping margins >= 1.
  stitched = whisper_features.encode_rows(mel, num_rows, local_encoder,
                                          window_rows=40, margin_rows=5)
  assert stitched.shape == (num_rows, 4)
  np.testing.assert_allclose(stitched[:-1], one_pass[:-1], atol=1e-6)
  starts = whisper_features.window_starts(num_rows, 40, 5)
  assert starts[-1] + 40 >= num_rows and starts == list(range(0, 30 * len(
      starts), 30))


def test_frame_windows_interpolate_rows_at_frame_times():
  rows = np.arange(200, dtype=np.float32)[:, None]  # row k holds k
  pad_rows = whisper_features.PAD_S / whisper_features.ROW_S
  for fps in (25.0, 30.0):
    windows = whisper_features.frame_windows(rows, 10, fps)
    times = np.arange(10) / fps
    # Row 8 of frame i is at i / fps: padded row (t + PAD_S) / 20 ms.
    np.testing.assert_allclose(windows[:, 8, 0], times / 0.02 + pad_rows,
                               atol=1e-4)
    np.testing.assert_allclose(np.diff(windows[0, :, 0]), 1.0, atol=1e-5)


class LocalEncoder:
  """`local_encoder` with the attributes of a `WhisperEncoder`."""
  n_mels = 80
  width = 80

  def __call__(self, mel):
    return local_encoder(mel)


def click_change(encoder, click_s, fps, seconds=3.0):
  """|change| [frames] of each frame's centre row (its own time) when a
  click is added at click_s to quiet noise."""
  rng = np.random.default_rng(1)
  quiet = (0.002 * rng.normal(size=int(seconds * SR))).astype(np.float32)
  clicked = quiet.copy()
  clicked[int(click_s * SR):int(click_s * SR) + 16] += 0.8
  num_frames = int(seconds * fps)
  windows = [whisper_features.frame_windows(
      whisper_features.encoder_rows(wave, encoder), num_frames, fps)
             for wave in (quiet, clicked)]
  return np.linalg.norm(windows[1][:, 8] - windows[0][:, 8], axis=-1)


@pytest.mark.parametrize('fps', [25.0, 30.0])
def test_a_click_lands_in_its_frame(fps):
  """Log-mel framing, padding, stitching and the frames' windows put a
  sound in the frame at its time (a local stand-in encoder: Whisper's own
  attention spreads a click over every row)."""
  for click_s in (0.61, 1.0, 1.77):
    change = click_change(LocalEncoder(), click_s, fps)
    assert np.argmax(change) == round(click_s * fps)


@pytest.fixture(scope='module')
def encoder():
  try:
    return whisper_features.load_encoder(whisper_features.resolve_model_dir())
  except errors.UserError as e:
    pytest.skip(f'no Whisper model installed: {e}')


@pytest.mark.parametrize('fps', [25.0, 30.0])
def test_the_installed_encoder_answers_a_click_in_its_frame(encoder, fps):
  """The model's rows change most around the click's frame: their
  centroid over the nearest five frames is within half a frame of it."""
  for click_s in (0.61, 1.77):
    change = click_change(encoder, click_s, fps)
    near = np.arange(round(click_s * fps) - 2, round(click_s * fps) + 3)
    centroid = np.sum(change[near] * near) / np.sum(change[near])
    assert abs(centroid - click_s * fps) < 0.5
    assert change.shape == (int(3 * fps),)


def test_missing_or_wrong_models_are_one_clear_error(tmp_path, monkeypatch):
  monkeypatch.setattr(whisper_features, 'MODEL_PACKAGES',
                      (('no_such_package_xyz', 'no-such-package-xyz',
                        'get_model_path'),))
  with pytest.raises(errors.UserError, match='pip install no-such-package'):
    whisper_features.resolve_model_dir('')
  with pytest.raises(errors.UserError, match='holds no CTranslate2 model'):
    whisper_features.resolve_model_dir(str(tmp_path))


def test_width_must_match_the_configured_dim(encoder):
  with pytest.raises(errors.UserError, match='audio_dim='):
    whisper_features.encode_speech(speechy(1.0), 25, 25.0,
                                   dim=encoder.width + 1)
