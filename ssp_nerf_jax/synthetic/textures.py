"""Procedural albedo of every material, a fixed function of points in the
surface's own frame (so it is static there), and the background plate."""
import numpy as np

_RNG = np.random.default_rng(20220117)  # fixed: appearance is not seeded


def _make_waves(num, lo, hi):
  dirs = _RNG.standard_normal((num, 3))
  dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
  return dirs * _RNG.uniform(lo, hi, (num, 1)), _RNG.uniform(0, 2 * np.pi, num)


# Radians per scene unit: face-scale shading, blotches, pores and weave.
_LOW = _make_waves(4, 40.0, 90.0)
_MID = _make_waves(6, 150.0, 300.0)
_FINE = _make_waves(6, 600.0, 900.0)


def sine_noise(p, waves):
  """[R] sum of plane waves at points p [R, 3], roughly in [-1, 1]."""
  freqs, phases = waves
  return np.sin(p @ freqs.T + phases).sum(-1) / np.sqrt(len(phases) * 2)


def _mix(a, b, w):
  w = np.asarray(w, np.float64)[:, None]
  return np.asarray(a) * (1.0 - w) + np.asarray(b) * w


def skin(p, base=(0.82, 0.60, 0.47)):
  """Skin: base tone with blotches and pores, [R, 3]."""
  mod = (1.0 + 0.06 * sine_noise(p, _LOW) + 0.06 * sine_noise(p, _MID) +
         0.03 * sine_noise(p, _FINE))
  return np.asarray(base) * mod[:, None]


def face_skin(p, center):
  """Skin of the skull with rosy cheeks; center [3] is the skull centre."""
  q = p - center
  cheeks = np.exp(-((np.abs(q[:, 0]) - 0.024)**2 + (q[:, 1] + 0.012)**2) /
                  0.012**2)
  return skin(p) + np.array([0.07, -0.02, -0.02]) * cheeks[:, None]


def hair(p, center):
  """Hair: dark brown strands along meridians with a sheen, [R, 3]."""
  q = p - center
  azimuth = np.arctan2(q[:, 0], q[:, 2])
  strands = np.sin(110.0 * azimuth + 6.0 * sine_noise(p, _LOW))
  sheen = np.exp(-((q[:, 1] - 0.05) / 0.015)**2)
  base = np.array([0.20, 0.13, 0.08]) * (0.75 + 0.25 * strands)[:, None]
  return base + 0.10 * sheen[:, None] + 0.02 * sine_noise(p, _FINE)[:, None]


def brows(p):
  """Eyebrows: slanted dark strands, [R, 3]."""
  strands = np.sin(2500.0 * p[:, 0] + 900.0 * p[:, 1])
  return np.array([0.24, 0.15, 0.09]) * (0.75 + 0.25 * strands)[:, None]


def eyes(p, centers, radius):
  """Eyeballs [R, 3]: sclera, iris, pupil about the nearer of centers [2, 3]."""
  left = np.abs(p[:, 0] - centers[0, 0]) < np.abs(p[:, 0] - centers[1, 0])
  q = (p - np.where(left[:, None], centers[0], centers[1])) / radius
  forward = q[:, 2]
  spokes = np.sin(14.0 * np.arctan2(q[:, 1], q[:, 0]))
  iris = np.array([0.38, 0.25, 0.14]) * (0.8 + 0.2 * spokes)[:, None]
  rgb = _mix([0.93, 0.91, 0.87], iris, forward > 0.78)
  return _mix(rgb, [0.04, 0.03, 0.03], forward > 0.95)


def lips(p):
  """Lips: red-pink with vertical creases, [R, 3]."""
  creases = np.sin(1800.0 * p[:, 0]) * np.sin(500.0 * p[:, 1])
  mod = 0.92 + 0.08 * creases + 0.04 * sine_noise(p, _MID)
  return np.array([0.72, 0.34, 0.35]) * mod[:, None]


def mouth_interior(x, y_in_gap, half_gap):
  """[R, 3] cavity, tongue and teeth at offsets x, y_in_gap [R] from the gap
  centre, given half_gap [R] (0: closed)."""
  rgb = _mix([0.20, 0.05, 0.06], [0.55, 0.20, 0.22],
             np.clip(-y_in_gap / np.maximum(half_gap, 1e-6), 0.0, 1.0)**2)
  teeth = np.where(np.cos(2 * np.pi * x / 0.0042) > 0.85, 0.62, 0.95)
  upper = y_in_gap > half_gap - 0.0026
  lower = y_in_gap < -half_gap + 0.0016
  tooth_rgb = np.array([0.96, 0.95, 0.88]) * teeth[:, None]
  return np.where((upper | lower)[:, None], tooth_rgb, rgb)


def ears(p, center, radii):
  """Ears [R, 3] with a fold ring; center [3] is the right ear's (x > 0)."""
  q = np.stack([np.abs(p[:, 0]), p[:, 1], p[:, 2]], -1) - center
  r = np.sqrt((q[:, 1] / radii[1])**2 + (q[:, 2] / radii[2])**2)
  fold = np.exp(-((r - 0.6) / 0.15)**2)
  return skin(p, (0.84, 0.58, 0.46)) * (1.0 - 0.3 * fold)[:, None]


def nose(p):
  """Nose: skin with a slightly redder tip."""
  return skin(p) + np.array([0.03, -0.01, -0.01])


def neck(p):
  """Neck skin, darker than the face (in shadow in real video)."""
  return skin(p, (0.74, 0.53, 0.42))


def torso(p):
  """Suit, shirt and tie [R, 3] at torso-space points p [R, 3]."""
  x, y = p[:, 0], p[:, 1]
  pins = (np.cos(2 * np.pi * x / 0.012) > 0.93).astype(np.float64)
  jacket = np.array([0.13, 0.15, 0.27]) * (1.0 + 0.6 * pins +
                                           0.08 * sine_noise(p, _FINE))[:, None]
  shirt_v = np.abs(x) < 0.42 * (y + 0.16)
  tie = np.abs(x) < 0.008 + 0.08 * np.maximum(-0.03 - y, 0.0)
  tie_stripes = np.sin(2 * np.pi * (x + y) / 0.01) > 0.6
  tie_rgb = _mix([0.62, 0.12, 0.14], [0.82, 0.70, 0.35], tie_stripes)
  rgb = np.where(shirt_v[:, None], np.array([0.86, 0.88, 0.93]), jacket)
  return np.where((shirt_v & tie)[:, None], tie_rgb, rgb)


def background_plate(height, width):
  """float64 [H * W, 3] in [0, 1]: the same picture at every resolution."""
  v, u = np.meshgrid((np.arange(height) + 0.5) / height,
                     (np.arange(width) + 0.5) / width, indexing='ij')
  u, v = u.ravel(), v.ravel()
  rgb = _mix([0.62, 0.66, 0.72], [0.36, 0.38, 0.44], v)
  folds = np.sin(2 * np.pi * (9.0 * u + 0.4 * np.sin(2 * np.pi * 1.3 * v)))
  rgb = rgb * (1.0 + 0.06 * folds)[:, None]
  window = (u > 0.70) & (u < 0.96) & (v > 0.06) & (v < 0.44)
  mullion = (np.abs(u - 0.83) < 0.008) | (np.abs(v - 0.25) < 0.008)
  glass = _mix([0.80, 0.85, 0.90], [0.93, 0.95, 0.97], (0.44 - v) / 0.38)
  rgb = np.where(window[:, None], glass, rgb)
  rgb = np.where((window & mullion)[:, None], np.array([0.45, 0.40, 0.35]),
                 rgb)
  grain = np.sin(2 * np.pi * (37 * u + 23 * v)) * np.sin(2 * np.pi *
                                                         (29 * u - 31 * v))
  return np.clip(rgb + 0.025 * grain[:, None], 0.0, 1.0)
