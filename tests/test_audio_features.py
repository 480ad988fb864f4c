"""Audio feature windows: shapes, time alignment, resampling, edge padding."""
import librosa
import numpy as np
import pytest
import soundfile

from ssp_nerf_jax.data import audio_features

SR = audio_features.SAMPLE_RATE


def speechy(duration_s, seed=0):
  """Band-limited noise with a moving tone: no silence, nothing above 6 kHz."""
  rng = np.random.default_rng(seed)
  t = np.arange(int(duration_s * SR)) / SR
  noise = librosa.effects.preemphasis(rng.normal(0, 0.05, t.shape))
  tone = 0.2 * np.sin(2 * np.pi * (200 + 300 * t) * t)
  wave = (noise + tone).astype(np.float32)
  spectrum = np.fft.rfft(wave)
  spectrum[np.fft.rfftfreq(len(wave), 1 / SR) > 6000] = 0
  return np.fft.irfft(spectrum, len(wave)).astype(np.float32)


@pytest.mark.parametrize('feature,dim', [('logmel', 29), ('mfcc', 13),
                                         ('logmel', 8)])
def test_shapes_and_range(feature, dim):
  features = audio_features.compute_features(speechy(2.0), feature=feature,
                                             dim=dim)
  assert features.shape == (50, 16, dim)  # 2 s at 25 fps.
  assert features.dtype == np.float32
  assert np.isfinite(features).all()
  explicit = audio_features.compute_features(speechy(2.0), feature=feature,
                                             dim=dim, num_frames=53)
  assert explicit.shape == (53, 16, dim)
  np.testing.assert_allclose(explicit[:50], features, atol=1e-5)


def test_silence_is_minus_one_and_normalisation_is_clip_independent():
  silence = audio_features.compute_features(np.zeros(SR, np.float32), dim=8)
  np.testing.assert_allclose(silence, -1.0, atol=1e-6)
  # A fixed normalisation: a frame's features do not depend on the rest of
  # the clip (here: appending louder audio after it).
  wave = speechy(2.0)
  longer = np.concatenate([wave, 5 * speechy(2.0, seed=1)])
  np.testing.assert_allclose(
      audio_features.compute_features(longer, dim=8)[:40],
      audio_features.compute_features(wave, dim=8)[:40], atol=1e-5)


@pytest.mark.parametrize('click_s', [0.403, 1.0, 1.517, 0.081])
def test_click_peaks_at_its_frame_and_window_centre(click_s):
  wave = np.zeros(2 * SR, np.float32)
  wave[int(click_s * SR)] = 1.0
  features = audio_features.compute_features(wave, dim=16)
  frame = int(round(click_s * 25))
  centre = features[:, audio_features.WINDOW_CENTRE - 1:
                    audio_features.WINDOW_CENTRE + 1].mean(axis=(1, 2))
  assert np.argmax(centre) == frame
  # Within that frame's window, the click is at the centre rows (7, 8).
  row = np.argmax(features[frame].mean(axis=1))
  assert row in (audio_features.WINDOW_CENTRE - 1,
                 audio_features.WINDOW_CENTRE)


def test_resampled_stereo_file_matches_16k_mono(tmp_path):
  mono = speechy(1.6)
  side = 0.1 * speechy(1.6, seed=3)
  stereo_16k = np.stack([mono + side, mono - side])  # Mixes down to `mono`.
  stereo_44k = librosa.resample(stereo_16k, orig_sr=SR, target_sr=44100)
  path = tmp_path / 'stereo_44k.wav'
  soundfile.write(path, stereo_44k.T, 44100, subtype='FLOAT')

  want = audio_features.compute_features(mono, dim=29)
  from_file = audio_features.features_from_file(path, dim=29)
  from_wave = audio_features.compute_features(stereo_44k, 44100, dim=29)
  assert from_file.shape == from_wave.shape == want.shape == (40, 16, 29)
  np.testing.assert_allclose(from_wave, from_file, atol=1e-5)
  # The round trip through 44.1 kHz is not bit-exact, but close on the
  # normalised scale (1 unit = 40 dB).
  np.testing.assert_allclose(from_file, want, atol=0.02)
  np.testing.assert_allclose(
      audio_features.compute_features(stereo_16k, SR, dim=29), want,
      atol=1e-5)


def test_context_windows_offsets_and_edge_padding():
  num_frames = 6
  features = np.arange(num_frames, dtype=np.float32)[:, None, None] * np.ones(
      (num_frames, 16, 3), np.float32)
  windows = audio_features.context_windows(features, 8)
  assert windows.shape == (num_frames, 8, 16, 3)
  ids = windows[:, :, 0, 0].astype(int)
  # Frame i sees frames i-4 .. i+3, the ends repeating frames 0 and N-1.
  np.testing.assert_array_equal(ids[0], [0, 0, 0, 0, 0, 1, 2, 3])
  np.testing.assert_array_equal(ids[3], [0, 0, 1, 2, 3, 4, 5, 5])
  np.testing.assert_array_equal(ids[5], [1, 2, 3, 4, 5, 5, 5, 5])
  np.testing.assert_array_equal(ids[4], [0, 1, 2, 3, 4, 5, 5, 5])
  np.testing.assert_array_equal(audio_features.context_offsets(8),
                                np.arange(-4, 4))
  np.testing.assert_array_equal(
      audio_features.context_windows(features[:1], 8)[0, :, 0, 0], 0)
  np.testing.assert_array_equal(
      audio_features.context_windows(features, 5)[2, :, 0, 0], [0, 1, 2, 3, 4])


def test_bad_arguments():
  with pytest.raises(ValueError, match='audio feature'):
    audio_features.compute_features(np.zeros(SR), feature='deepspeech')
  with pytest.raises(ValueError, match='waveform'):
    audio_features.compute_features(np.zeros((1, 2, SR)))
  with pytest.raises(ValueError, match='context'):
    audio_features.context_windows(np.zeros((3, 16, 2)), 0)
