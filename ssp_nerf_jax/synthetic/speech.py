"""Speech-like audio synthesis and the mouth shape it drives.

The waveform is built from syllables: a voiced nucleus (additive harmonics of
a gliding pitch contour, shaped by three vowel formants) optionally preceded
by an unvoiced consonant (band-limited noise), grouped into words and
phrases separated by near-silent pauses. It is not intelligible speech, but
it has the time-frequency structure audio features care about.

The mouth opening is a FIXED, causal-enough function of the audio (band
energy per video frame), so a model that sees only audio can in principle
predict it exactly.
"""
import numpy as np

SAMPLE_RATE = 16000
FPS = 25.0

# Formants (F1, F2, F3) in Hz of five cardinal vowels (adult male averages)
# and how far the jaw drops for each (scales syllable loudness, so louder
# vowels open the mouth more, as in real speech).
_VOWEL_FORMANTS = np.array([
    [730.0, 1090.0, 2440.0],  # a
    [530.0, 1840.0, 2480.0],  # e
    [270.0, 2290.0, 3010.0],  # i
    [570.0, 840.0, 2410.0],  # o
    [300.0, 870.0, 2240.0],  # u
])
_VOWEL_OPENNESS = np.array([1.0, 0.8, 0.6, 0.85, 0.6])
_FORMANT_BANDWIDTHS = np.array([90.0, 110.0, 170.0])
_FORMANT_GAINS = np.array([1.0, 0.6, 0.3])

# Band whose energy drives the mouth (where vowels live; fricatives mostly
# fall above it, so "s" keeps the mouth nearly closed).
MOUTH_BAND_HZ = (300.0, 3000.0)
_CENTROID_BAND_HZ = (300.0, 4000.0)
_NOISE_FLOOR = 3e-4  # near-silence in pauses (about -70 dBFS)


def _smooth_ramp(n):
  """Raised-cosine envelope of length n that rises and falls, [n]."""
  x = (np.arange(n) + 0.5) / max(n, 1)
  return np.sin(np.pi * x) ** 0.6


def _voiced(num, f0_start, f0_end, formants_from, formants_to, sr):
  """Voiced nucleus: harmonics of a gliding f0 through moving formants.

  Args:
    num: length in samples.
    f0_start, f0_end: pitch at the start / end (Hz), linear glide.
    formants_from, formants_to: [3] formants at the start / after the
      transition (first 35 % of the nucleus; coarticulation).
    sr: sample rate.

  Returns:
    float64 [num] waveform, peak of order 1.
  """
  t = np.arange(num) / num
  f0 = f0_start + (f0_end - f0_start) * t  # [num]
  glide = np.clip(t / 0.35, 0.0, 1.0)[:, None]
  formants = formants_from + (formants_to - formants_from) * glide  # [num, 3]
  phase = 2 * np.pi * np.cumsum(f0) / sr  # [num]
  max_k = int(4500.0 // min(f0_start, f0_end))
  k = np.arange(1, max_k + 1)[:, None]  # [K, 1]
  freq = k * f0[None, :]  # [K, num]
  # Sum of resonance peaks (Lorentzians) with a -6 dB/octave source tilt.
  dist = (freq[..., None] - formants[None]) / (_FORMANT_BANDWIDTHS / 2)
  env = np.sum(_FORMANT_GAINS / (1.0 + dist**2), axis=-1) + 0.02  # [K, num]
  amp = env / k * (freq < 0.45 * sr)
  return np.sum(amp * np.sin(k * phase[None, :]), axis=0)


def _unvoiced(num, band, rng, sr):
  """Band-limited noise burst (fricative / plosive release), [num]."""
  noise = rng.standard_normal(num)
  spec = np.fft.rfft(noise)
  freqs = np.fft.rfftfreq(num, 1.0 / sr)
  spec[(freqs < band[0]) | (freqs > band[1])] = 0.0
  return np.fft.irfft(spec, num) * np.hanning(num)


def _syllable(rng, prev_formants, f0_start, f0_end, sr):
  """One syllable: optional consonant onset + voiced vowel, [n] samples."""
  vowel = rng.integers(len(_VOWEL_FORMANTS))
  formants = _VOWEL_FORMANTS[vowel] * rng.uniform(0.93, 1.07, 3)
  num = int(rng.uniform(0.13, 0.28) * sr)
  loud = rng.uniform(0.55, 1.0) * _VOWEL_OPENNESS[vowel]
  nucleus = _voiced(num, f0_start, f0_end, prev_formants, formants, sr)
  nucleus *= loud * _smooth_ramp(num) / 4.0
  kind = rng.choice(3, p=[0.4, 0.35, 0.25])  # none, fricative, plosive
  if kind == 1:  # "s", "f", "sh": long, high, quiet-ish noise
    onset = _unvoiced(int(rng.uniform(0.05, 0.11) * sr),
                      (rng.uniform(2000, 4000), 7000.0), rng, sr) * 0.05
  elif kind == 2:  # "t", "k", "p": a closure (silence) then a short burst
    burst = _unvoiced(int(rng.uniform(0.012, 0.03) * sr), (1500.0, 6000.0),
                      rng, sr) * 0.06
    onset = np.concatenate([np.zeros(int(0.03 * sr)), burst])
  else:
    onset = np.zeros(0)
  return np.concatenate([onset, nucleus]), formants


def synthesize_speech(duration_s, sample_rate=SAMPLE_RATE, seed=0):
  """Speech-like mono audio, deterministic by seed.

  Phrases of 2-5 words (1-3 syllables each), short gaps between words and
  0.3-0.8 s pauses between phrases. Pitch falls over a phrase (declination)
  with per-syllable accents, around a per-seed speaker pitch.

  Args:
    duration_s: length in seconds (> 0).
    sample_rate: samples per second.
    seed: integer seed.

  Returns:
    float32 [round(duration_s * sample_rate)] waveform in [-1, 1].
  """
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
      pos += int(rng.uniform(0.04, 0.14) * sample_rate)  # between words
    pos += int(rng.uniform(0.3, 0.8) * sample_rate)  # between phrases
  peak = np.max(np.abs(out))
  if peak > 0:
    out *= 0.8 / peak
  out += _NOISE_FLOOR * rng.standard_normal(total)
  return np.clip(out, -1.0, 1.0).astype(np.float32)


def frame_power_spectra(audio, sample_rate, num_frames, fps=FPS,
                        window_s=0.064):
  """Power spectra of Hann windows centred on each video frame's time i/fps.

  Args:
    audio: [T] mono waveform.
    sample_rate: samples per second.
    num_frames: number of video frames N.
    fps: video frame rate.
    window_s: window length in seconds (two video frames by default).

  Returns:
    power: float64 [N, F] power spectra; freqs: float64 [F] in Hz.
  """
  audio = np.asarray(audio, np.float64)
  win = int(round(window_s * sample_rate))
  half = win // 2
  padded = np.pad(audio, (half, half + win))
  centres = np.round(np.arange(num_frames) * sample_rate / fps).astype(np.int64)
  centres = np.minimum(centres, len(audio))  # frames past the end see zeros
  idx = centres[:, None] + np.arange(win)[None, :]  # [N, win], padded coords
  frames = padded[idx] * np.hanning(win)
  power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2
  return power, np.fft.rfftfreq(win, 1.0 / sample_rate)


def _smooth_frames(x):
  """[1, 2, 1]/4 smoothing over frames (about 3 frames), edge-padded."""
  if len(x) < 2:
    return x
  p = np.pad(x, 1, mode='edge')
  return 0.25 * p[:-2] + 0.5 * p[1:-1] + 0.25 * p[2:]


def _band_rms(audio, sample_rate, num_frames):
  """Per-frame RMS amplitude in MOUTH_BAND_HZ, float64 [N]."""
  power, freqs = frame_power_spectra(audio, sample_rate, num_frames)
  band = (freqs >= MOUTH_BAND_HZ[0]) & (freqs <= MOUTH_BAND_HZ[1])
  return np.sqrt(power[:, band].sum(axis=-1))


def mouth_open_from_audio(audio, sample_rate, num_frames):
  """Ground-truth mouth opening per video frame, a fixed function of audio.

  Band (300-3000 Hz) RMS amplitude in a 64 ms window centred at i/25 s,
  normalised by its 97th percentile over the clip (robust to a stray peak,
  loud vowels reach 1), smoothed over ~3 frames ([1, 2, 1] / 4),
  with a small dead zone so silence gives an exactly closed mouth.

  Args:
    audio: [T] mono waveform.
    sample_rate: samples per second.
    num_frames: number of video frames N (25 fps).

  Returns:
    float32 [N] opening in [0, 1].
  """
  rms = _band_rms(audio, sample_rate, num_frames)
  ref = np.percentile(rms, 97) if num_frames else 0.0
  if ref <= 0:
    return np.zeros(num_frames, np.float32)
  x = _smooth_frames(np.clip(rms / ref, 0.0, 1.0))
  return np.clip((x - 0.05) / 0.95, 0.0, 1.0).astype(np.float32)


def lip_width_from_audio(audio, sample_rate, num_frames):
  """Lip spread per video frame from the spectral centroid, in [0, 1].

  Amplitude-spectrum centroid in 300-4000 Hz, mapped from 850-1450 Hz. High
  centroid (front vowel "i") spreads the lips, low centroid
  ("o", "u") rounds them. Silence is neutral (0.5).

  Args:
    audio: [T] mono waveform.
    sample_rate: samples per second.
    num_frames: number of video frames N.

  Returns:
    float32 [N] width in [0, 1].
  """
  power, freqs = frame_power_spectra(audio, sample_rate, num_frames)
  band = (freqs >= _CENTROID_BAND_HZ[0]) & (freqs <= _CENTROID_BAND_HZ[1])
  # Amplitude (not power) weighting: power is dominated by F1 and hardly
  # tells "i" from "u"; amplitude lets F2 count.
  amp = np.sqrt(power[:, band])
  centroid = (amp * freqs[band]).sum(-1) / np.maximum(amp.sum(-1), 1e-20)
  spread = np.clip((centroid - 850.0) / 600.0, 0.0, 1.0)
  # Only trust the centroid when there is voice; fade to neutral otherwise.
  voiced = np.clip(4.0 * mouth_open_from_audio(audio, sample_rate,
                                               num_frames), 0.0, 1.0)
  width = 0.5 + (spread - 0.5) * voiced
  return np.clip(_smooth_frames(width), 0.0, 1.0).astype(np.float32)
