"""The synthetic portrait's layout.  The camera frame is the world; c2w maps it
to the static head (x right, y up, +z out of the face); neck and torso sway on
their own below the mean head pose, so they move in head space."""
import numpy as np


CLASS_NAMES = ('background', 'skin', 'brows', 'eyes', 'ears', 'nose', 'mouth',
               'lips', 'neck', 'torso', 'hair')
# SSP-NeRF parsing colours as RGB on disk.
CLASS_COLORS = np.array(
    [[255, 255, 255], [25, 202, 173], [140, 199, 181], [160, 238, 225],
     [0, 0, 255], [190, 237, 199], [214, 213, 183], [209, 186, 116],
     [230, 206, 172], [236, 173, 158], [244, 96, 108]], dtype=np.uint8)
CLASS_COLORS.setflags(write=False)
(BACKGROUND, SKIN, BROWS, EYES, EARS, NOSE, MOUTH, LIPS, NECK, TORSO,
 HAIR) = range(11)
HEAD_CLASSES = (SKIN, BROWS, EYES, EARS, NOSE, MOUTH, LIPS, HAIR)

# Head space.  The skull sits above the origin: real heads pivot near the neck.
SKULL_CENTER = np.array([0.0, 0.035, -0.005])
SKULL_RADII = np.array([0.042, 0.062, 0.056])
HAIR_CENTER = SKULL_CENTER + np.array([0.0, 0.004, -0.003])
HAIR_RADII = SKULL_RADII + np.array([0.004, 0.005, 0.005])
EAR_RADII = np.array([0.008, 0.016, 0.010])
EYE_RADIUS = 0.0068
BROW_RADII = np.array([0.010, 0.0028, 0.004])
NOSE_RADII = np.array([0.0075, 0.014, 0.011])
MOUTH_Y = SKULL_CENTER[1] - 0.031  # where closed lips meet
LIP_THICKNESS = 0.0042  # y half-thickness of the upper lip
LOWER_LIP_SCALE = 1.15
LIP_DEPTH = 0.0065
MAX_GAP = 0.018  # lip gap at mouth_open = 1
HEAD_LIGHT = np.array([0.35, 0.45, 0.82]) / np.linalg.norm([0.35, 0.45, 0.82])
TORSO_LIGHT = np.array([-0.3, 0.5, 0.8]) / np.linalg.norm([-0.3, 0.5, 0.8])
AMBIENT = 0.35


def skull_surface_z(x, y):
  """z of the skull's front surface above head-space (x, y)."""
  q = 1.0 - (x / SKULL_RADII[0])**2 - ((y - SKULL_CENTER[1]) /
                                       SKULL_RADII[1])**2
  return SKULL_CENTER[2] + SKULL_RADII[2] * np.sqrt(np.maximum(q, 0.0))


def _on_face(x, y, depth):
  return np.array([x, y, skull_surface_z(x, y) + depth])


EAR_CENTER = np.array([0.041, SKULL_CENTER[1], -0.011])  # right; left mirrors
EYE_CENTERS = np.stack([
    _on_face(-0.016, SKULL_CENTER[1] + 0.008, -0.003),
    _on_face(0.016, SKULL_CENTER[1] + 0.008, -0.003)
])
BROW_CENTERS = np.stack([
    _on_face(-0.017, SKULL_CENTER[1] + 0.021, 0.0005),
    _on_face(0.017, SKULL_CENTER[1] + 0.021, 0.0005)
])
NOSE_CENTER = _on_face(0.0, SKULL_CENTER[1] - 0.006, -0.003)
HEAD_BOUND_RADIUS = 0.09

# Torso space: origin at the neck base (of the mean head pose), camera axes.
NECK_BASE_IN_HEAD = SKULL_CENTER + np.array([0.0, -0.08, -0.012])
NECK_RADII_XZ = (0.026, 0.024)
NECK_Y_RANGE = (-0.06, 0.10)
TORSO_CENTER = np.array([0.0, -0.09, -0.035])
TORSO_RADII = np.array([0.20, 0.095, 0.08])

(P_SKULL, P_HAIR, P_EAR_L, P_EAR_R, P_NOSE, P_EYE_L, P_EYE_R, P_BROW_L,
 P_BROW_R, P_LIP_U, P_LIP_L, P_NECK, P_TORSO) = range(13)
PRIM_CLASS = np.array([
    SKIN, HAIR, EARS, EARS, NOSE, EYES, EYES, BROWS, BROWS, LIPS, LIPS, NECK,
    TORSO
], np.uint8)
NUM_HEAD_PRIMS = P_NECK  # prims below this id live in head space


def hair_clip(p):
  """bool [R] hair at points [3, R]: top and back, above a sloped hairline."""
  y = p[1] - HAIR_CENTER[1]
  z = p[2] - HAIR_CENTER[2]
  return y > 0.036 - 0.75 * (0.058 - z)


def mouth_shape(mouth_open, lip_width):
  """Lip geometry: dict of [B] arrays and [B, 3] lip centres, from mouth_open
  and lip_width [B] in [0, 1]."""
  gap = MAX_GAP * mouth_open
  half_width = 0.020 * (0.88 + 0.24 * lip_width) * (1.0 - 0.12 * mouth_open)
  # The jaw does most of the opening; closed lips overlap and hide the mouth.
  upper_y = MOUTH_Y + 0.15 * gap + 0.8 * LIP_THICKNESS
  lower_y = MOUTH_Y - 0.85 * gap - 0.8 * LOWER_LIP_SCALE * LIP_THICKNESS
  zeros = np.zeros_like(gap)
  upper_c = np.stack([zeros, upper_y, skull_surface_z(0.0, upper_y) - 0.0025],
                     -1)
  lower_c = np.stack([zeros, lower_y, skull_surface_z(0.0, lower_y) - 0.0025],
                     -1)
  return dict(half_width=half_width, gap=gap, gap_y=MOUTH_Y - 0.35 * gap,
              upper_center=upper_c, lower_center=lower_c,
              open=mouth_open)


def mean_head_pose(c2w):
  """Mean camera-to-head rotation (projected to SO(3)) and translation."""
  u, _, vt = np.linalg.svd(np.mean(c2w[:, :3, :3], axis=0))
  rot = u @ vt
  if np.linalg.det(rot) < 0:
    rot = u @ np.diag([1.0, 1.0, -1.0]) @ vt
  return rot, np.mean(c2w[:, :3, 3], axis=0)


def _rotation(yaw, pitch, roll):
  """[N, 3, 3] rotations Ry(yaw) Rx(pitch) Rz(roll), angles in radians."""
  cy, sy = np.cos(yaw), np.sin(yaw)
  cp, sp = np.cos(pitch), np.sin(pitch)
  cr, sr = np.cos(roll), np.sin(roll)
  o, z = np.ones_like(yaw), np.zeros_like(yaw)
  ry = np.stack([cy, z, sy, z, o, z, -sy, z, cy], -1).reshape(-1, 3, 3)
  rx = np.stack([o, z, z, z, cp, -sp, z, sp, cp], -1).reshape(-1, 3, 3)
  rz = np.stack([cr, -sr, z, sr, cr, z, z, z, o], -1).reshape(-1, 3, 3)
  return ry @ rx @ rz


def torso_poses(num_frames, track_c2w, seed, fps=25.0):
  """(rot [N, 3, 3], trans [N, 3]), p_cam = rot p_torso + trans: below the mean
  head of track_c2w [M, 4, 4], swaying by seeded pairs of slow sinusoids."""
  rng = np.random.default_rng([seed, 7])  # independent of the audio stream
  head_rot, head_t = mean_head_pose(np.asarray(track_c2w, np.float64))
  anchor = head_rot.T @ (NECK_BASE_IN_HEAD - head_t)
  time = np.arange(num_frames) / fps
  periods = rng.uniform(3.0, 9.0, (6, 2))
  phases = rng.uniform(0, 2 * np.pi, (6, 2))
  waves = np.sin(2 * np.pi * time[:, None, None] / periods + phases).sum(-1)
  waves /= 2.0
  amps = np.array([np.radians(2.0), np.radians(1.0), np.radians(2.0), 0.006,
                   0.003, 0.004])
  sway = waves * amps
  rot = _rotation(sway[:, 0], sway[:, 1], sway[:, 2])
  return rot, anchor + sway[:, 3:]
