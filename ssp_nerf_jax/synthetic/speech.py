"""Speech-like audio and the mouth shape it drives.  The mouth is a fixed
function of the audio, so an audio-only model can in principle predict it."""
import numpy as np

SAMPLE_RATE = 16000
FPS = 25.0

# Formants (F1, F2, F3) in Hz of a, e, i, o, u, and how far each opens the jaw
# (it scales loudness: louder vowels open the mouth more).
_VOWEL_FORMANTS = np.array([
    [730.0, 1090.0, 2440.0],
    [530.0, 1840.0, 2480.0],
    [270.0, 2290.0, 3010.0],
    [570.0, 840.0, 2410.0],
    [300.0, 870.0, 2240.0],
])
_VOWEL_OPENNESS = np.array([1.0, 0.8, 0.6, 0.85, 0.6])
_FORMANT_BANDWIDTHS = np.array([90.0, 110.0, 170.0])
_FORMANT_GAINS = np.array([1.0, 0.6, 0.3])

# Drives the mouth: vowels, not fricatives ("s" keeps the mouth nearly shut).
MOUTH_BAND_HZ = (300.0, 3000.0)
_CENTROID_BAND_HZ = (300.0, 4000.0)
_NOISE_FLOOR = 3e-4


def _smooth_ramp(n):
  x = (np.arange(n) + 0.5) / max(n, 1)
  return np.sin(np.pi * x) ** 0.6


def _voiced(num, f0_start, f0_end, formants_from, formants_to, sr):
  """float64 [num] voiced nucleus (peak of order 1): harmonics of an f0 glide
  (Hz) through formants [3] moving from the previous vowel's."""
  t = np.arange(num) / num
  f0 = f0_start + (f0_end - f0_start) * t
  glide = np.clip(t / 0.35, 0.0, 1.0)[:, None]
  formants = formants_from + (formants_to - formants_from) * glide
  phase = 2 * np.pi * np.cumsum(f0) / sr
  max_k = int(4500.0 // min(f0_start, f0_end))
  k = np.arange(1, max_k + 1)[:, None]
  freq = k * f0[None, :]
  # Lorentzian formant peaks over a source falling as 1 / harmonic number.
  dist = (freq[..., None] - formants[None]) / (_FORMANT_BANDWIDTHS / 2)
  env = np.sum(_FORMANT_GAINS / (1.0 + dist**2), axis=-1) + 0.02
  amp = env / k * (freq < 0.45 * sr)
  return np.sum(amp * np.sin(k * phase[None, :]), axis=0)


def _unvoiced(num, band, rng, sr):
  noise = rng.standard_normal(num)
  spec = np.fft.rfft(noise)
  freqs = np.fft.rfftfreq(num, 1.0 / sr)
  spec[(freqs < band[0]) | (freqs > band[1])] = 0.0
  return np.fft.irfft(spec, num) * np.hanning(num)


def _syllable(rng, prev_formants, f0_start, f0_end, sr):
  """(samples [n], formants [3]): an optional consonant, then a vowel."""
  vowel = rng.integers(len(_VOWEL_FORMANTS))
  formants = _VOWEL_FORMANTS[vowel] * rng.uniform(0.93, 1.07, 3)
  num = int(rng.uniform(0.13, 0.28) * sr)
  loud = rng.uniform(0.55, 1.0) * _VOWEL_OPENNESS[vowel]
  nucleus = _voiced(num, f0_start, f0_end, prev_formants, formants, sr)
  nucleus *= loud * _smooth_ramp(num) / 4.0
  kind = rng.choice(3, p=[0.4, 0.35, 0.25])  # none, fricative, plosive
  if kind == 1:
    onset = _unvoiced(int(rng.uniform(0.05, 0.11) * sr),
                      (rng.uniform(2000, 4000), 7000.0), rng, sr) * 0.05
  elif kind == 2:
    burst = _unvoiced(int(rng.uniform(0.012, 0.03) * sr), (1500.0, 6000.0),
                      rng, sr) * 0.06
    onset = np.concatenate([np.zeros(int(0.03 * sr)), burst])
  else:
    onset = np.zeros(0)
  return np.concatenate([onset, nucleus]), formants


def synthesize_speech(duration_s, sample_rate=SAMPLE_RATE, seed=0):
  """float32 [round(duration_s * sample_rate)] speech-like audio in [-1, 1]:
  phrases of words of syllables, pitch falling over a phrase; seeded."""
  if duration_s <= 0:
    raise ValueError(f'duration_s must be > 0, got {duration_s}')
  rng = np.random.default_rng(seed)
  total = int(round(duration_s * sample_rate))
  out = np.zeros(total)
  speaker_f0 = rng.uniform(95.0, 150.0)
  formants = _VOWEL_FORMANTS[0]
  pos = int(rng.uniform(0.05, 0.25) * sample_rate)
  while pos < total:
    num_words = rng.integers(2, 6)
    f0 = speaker_f0 * rng.uniform(1.05, 1.2)
    for _ in range(num_words):
      for _ in range(rng.integers(1, 4)):
        f0_next = f0 * rng.uniform(0.93, 1.0)
        accent = rng.uniform(0.95, 1.12)
        syl, formants = _syllable(rng, formants, f0 * accent, f0_next,
                                  sample_rate)
        if pos >= total:
          break
        end = min(pos + len(syl), total)
        out[pos:end] += syl[:end - pos]
        pos = end + int(rng.uniform(0.0, 0.03) * sample_rate)
        f0 = f0_next
      pos += int(rng.uniform(0.04, 0.14) * sample_rate)
    pos += int(rng.uniform(0.3, 0.8) * sample_rate)
  peak = np.max(np.abs(out))
  if peak > 0:
    out *= 0.8 / peak
  out += _NOISE_FLOOR * rng.standard_normal(total)
  return np.clip(out, -1.0, 1.0).astype(np.float32)


def frame_power_spectra(audio, sample_rate, num_frames, fps=FPS,
                        window_s=0.064):
  """(power float64 [N, F], freqs [F] in Hz) of audio [T] in Hann windows
  centred on the frame times i / fps."""
  audio = np.asarray(audio, np.float64)
  win = int(round(window_s * sample_rate))
  half = win // 2
  padded = np.pad(audio, (half, half + win))
  centres = np.round(np.arange(num_frames) * sample_rate / fps).astype(np.int64)
  centres = np.minimum(centres, len(audio))  # frames past the end see zeros
  idx = centres[:, None] + np.arange(win)[None, :]
  frames = padded[idx] * np.hanning(win)
  power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2
  return power, np.fft.rfftfreq(win, 1.0 / sample_rate)


def _smooth_frames(x):
  """[1, 2, 1] / 4 smoothing over frames, edge-padded."""
  if len(x) < 2:
    return x
  p = np.pad(x, 1, mode='edge')
  return 0.25 * p[:-2] + 0.5 * p[1:-1] + 0.25 * p[2:]


def _band_rms(audio, sample_rate, num_frames):
  power, freqs = frame_power_spectra(audio, sample_rate, num_frames)
  band = (freqs >= MOUTH_BAND_HZ[0]) & (freqs <= MOUTH_BAND_HZ[1])
  return np.sqrt(power[:, band].sum(axis=-1))


def mouth_open_from_audio(audio, sample_rate, num_frames):
  """float32 [N] mouth opening in [0, 1] at 25 fps: band RMS over its clip
  97th percentile (robust to a stray peak), smoothed, with a dead zone so
  that silence closes the mouth exactly."""
  rms = _band_rms(audio, sample_rate, num_frames)
  ref = np.percentile(rms, 97) if num_frames else 0.0
  if ref <= 0:
    return np.zeros(num_frames, np.float32)
  x = _smooth_frames(np.clip(rms / ref, 0.0, 1.0))
  return np.clip((x - 0.05) / 0.95, 0.0, 1.0).astype(np.float32)


def lip_width_from_audio(audio, sample_rate, num_frames):
  """float32 [N] lip spread in [0, 1] from the spectral centroid: "i" spreads
  the lips, "o", "u" round them; silence is neutral (0.5)."""
  power, freqs = frame_power_spectra(audio, sample_rate, num_frames)
  band = (freqs >= _CENTROID_BAND_HZ[0]) & (freqs <= _CENTROID_BAND_HZ[1])
  # Amplitude, not power: power is dominated by F1 and hides F2.
  amp = np.sqrt(power[:, band])
  centroid = (amp * freqs[band]).sum(-1) / np.maximum(amp.sum(-1), 1e-20)
  spread = np.clip((centroid - 850.0) / 600.0, 0.0, 1.0)
  voiced = np.clip(4.0 * mouth_open_from_audio(audio, sample_rate,
                                               num_frames), 0.0, 1.0)
  width = 0.5 + (spread - 0.5) * voiced
  return np.clip(_smooth_frames(width), 0.0, 1.0).astype(np.float32)
