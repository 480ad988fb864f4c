"""Pose fitting against exact perspective projections of a known head."""
import cv2
import numpy as np
import pytest
from scipy.spatial import transform

from ssp_nerf_jax.preprocess import landmarks
from ssp_nerf_jax.preprocess import pose_fit
from ssp_nerf_jax.preprocess import skin_tracks

SIZE = 256
FOCAL = 600.0


def synthetic_scene(num_frames=40, seed=0):
  """A rigid random landmark shape [P, 3] (RIGID_IDS order) and its poses
  (rotvecs [N, 3], translations [N, 3])."""
  rng = np.random.default_rng(seed)
  shape = rng.normal(0, [0.04, 0.05, 0.03], (len(landmarks.RIGID_IDS), 3))
  ids = list(landmarks.RIGID_IDS)
  right = [ids.index(i) for i in landmarks.RIGHT_EYE_CORNERS]
  left = [ids.index(i) for i in landmarks.LEFT_EYE_CORNERS]
  shape[right] = [[-0.045, -0.02, -0.01], [-0.015, -0.02, -0.005]]
  shape[left] = [[0.045, -0.02, -0.01], [0.015, -0.02, -0.005]]
  angles = np.radians(rng.uniform(-8, 8, (num_frames, 3)))
  rotvecs = transform.Rotation.from_euler('xyz', angles).as_rotvec()
  trans = np.stack([rng.uniform(-0.02, 0.02, num_frames),
                    rng.uniform(-0.02, 0.02, num_frames),
                    rng.uniform(0.55, 0.65, num_frames)], axis=1)
  return shape, rotvecs, trans


def synthetic_landmarks(num_frames=40, seed=0, pitch_share=1.0):
  """[N, 478, 3] landmarks (x, y px, depth px) of `synthetic_scene` and
  the true head-to-camera rotations [N, 3, 3].  pitch_share < 1: the
  landmarks show only that share of each rotation's x (pitch) component,
  as mediapipe's do on the synthetic head."""
  shape, true_rotvecs, trans = synthetic_scene(num_frames, seed)
  rotvecs = true_rotvecs * [pitch_share, 1.0, 1.0]
  ids = list(landmarks.RIGID_IDS)
  center = np.array([SIZE / 2, SIZE / 2])
  uv = pose_fit.project(shape, rotvecs, trans, FOCAL, center)
  rot = transform.Rotation.from_rotvec(rotvecs).as_matrix()
  depth = np.einsum('nij,pj->npi', rot, shape)[..., 2] + trans[:, 2:3]
  lms = np.zeros((num_frames, landmarks.NUM_LANDMARKS, 3))
  lms[:, ids, :2] = uv
  lms[:, ids, 2] = FOCAL * (depth - trans[:, 2:3]) / trans[:, 2:3]
  return lms, transform.Rotation.from_rotvec(true_rotvecs).as_matrix()


def true_c2w(head_to_camera):
  """[N, 4, 4] c2w (OpenGL camera axes: y up, looking along -z) of the
  head-to-camera rotations [N, 3, 3]."""
  c2w = np.tile(np.eye(4), (len(head_to_camera), 1, 1))
  c2w[:, :3, :3] = np.transpose(head_to_camera, (0, 2, 1)) @ np.diag(
      [1.0, -1.0, -1.0])
  return c2w


def test_exact_projections_give_the_poses_back():
  lms, head_to_camera = synthetic_landmarks()
  fit = pose_fit.fit_poses(lms, (SIZE, SIZE), smoothing_sigma=0)
  # The fitted head frame differs from the shape's by one fixed rotation,
  # which rotation_errors_deg removes.
  errors = pose_fit.rotation_errors_deg(fit.c2w, true_c2w(head_to_camera))
  assert np.max(errors) < 0.05, errors  # measured 0.003
  assert fit.rms_px < 0.02  # measured 0.003
  assert abs(fit.focal / FOCAL - 1) < 0.01, fit.focal


def test_head_space_scale_and_axes():
  lms, _ = synthetic_landmarks(seed=1)
  fit = pose_fit.fit_poses(lms, (SIZE, SIZE), smoothing_sigma=0)
  ids = list(landmarks.RIGID_IDS)
  right = fit.shape[[ids.index(i) for i in landmarks.RIGHT_EYE_CORNERS]].mean(0)
  left = fit.shape[[ids.index(i) for i in landmarks.LEFT_EYE_CORNERS]].mean(0)
  # The eyes land where the reference head has them: x to the subject's
  # left, same height, the reference's distance apart.
  np.testing.assert_allclose(right, pose_fit.REFERENCE_EYES[0] * [1, 1, 0] +
                             [0, 0, right[2]], atol=1e-6)
  np.testing.assert_allclose(left[:2], pose_fit.REFERENCE_EYES[1][:2],
                             atol=1e-6)
  assert np.all(np.isfinite(fit.c2w))
  # Camera in front of the face (+z in head space), rigid c2w.
  assert np.all(fit.c2w[:, 2, 3] > 0)
  rot = fit.c2w[:, :3, :3]
  np.testing.assert_allclose(rot @ np.transpose(rot, (0, 2, 1)),
                             np.broadcast_to(np.eye(3), rot.shape), atol=1e-9)


def test_smoothing_has_no_lag():
  lms, _ = synthetic_landmarks(num_frames=60, seed=2)
  fit = pose_fit.fit_poses(lms, (SIZE, SIZE), smoothing_sigma=0)
  smooth = pose_fit.smooth_poses(fit.c2w, 2.0)
  # A centred filter keeps a linear ramp where it is.
  ramp = np.tile(np.eye(4), (21, 1, 1))
  ramp[:, 0, 3] = np.linspace(0, 1, 21)
  np.testing.assert_allclose(pose_fit.smooth_poses(ramp, 2.0)[8:-8, 0, 3],
                             ramp[8:-8, 0, 3], atol=1e-9)
  assert smooth.shape == fit.c2w.shape



def test_skin_tracks_set_the_poses():
  """Landmarks that show half of each pitch, plus exact tracks of rigid
  points on the surface the landmarks span (depth interpolated like
  `initial_track_points` does), each seen from a random frame on: the
  tracks set the rotations."""
  num_frames = 40
  rng = np.random.default_rng(3)
  shape, rotvecs, trans = synthetic_scene(num_frames, seed=3)
  lms, head_to_camera = synthetic_landmarks(num_frames, seed=3,
                                            pitch_share=0.5)
  xy = rng.uniform(shape[:, :2].min(0), shape[:, :2].max(0), (60, 2))
  dist = np.linalg.norm(xy[:, None] - shape[:, :2], axis=-1)  # [Q, P]
  nearest = np.argsort(dist, 1)[:, :pose_fit.TRACK_DEPTH_NEIGHBOURS]
  weight = 1 / (np.take_along_axis(dist, nearest, 1) * FOCAL / 0.6 + 1)
  depth = (shape[nearest, 2] * weight).sum(1) / weight.sum(1)
  points = np.concatenate([xy, depth[:, None]], 1)
  uv = pose_fit.project(points, rotvecs, trans, FOCAL,
                        np.array([SIZE / 2, SIZE / 2]))  # [N, Q, 2]
  start = rng.integers(0, num_frames // 2, len(points))
  frame, track = np.nonzero(np.arange(num_frames)[:, None] >= start)
  tracks = skin_tracks.SkinTracks(frame, track, uv[frame, track],
                                  len(points))
  truth = true_c2w(head_to_camera)
  without = pose_fit.rotation_errors_deg(
      pose_fit.fit_poses(lms, (SIZE, SIZE), smoothing_sigma=0).c2w, truth)
  fit = pose_fit.fit_poses(lms, (SIZE, SIZE), smoothing_sigma=0,
                           tracks=tracks, focal_prior=FOCAL)
  errors = pose_fit.rotation_errors_deg(fit.c2w, truth)
  # The tracks must cut the error well below the landmark-only fit's.
  assert np.median(without) > 1.0, np.median(without)
  assert np.median(errors) < 0.4 * np.median(without), (
      np.median(errors), np.median(without))
  assert fit.focal == pytest.approx(FOCAL, rel=0.1)


def test_skin_tracker_follows_a_moving_texture():
  """A textured image shifted by known sub-pixel steps: the tracks move
  with it."""
  rng = np.random.default_rng(0)
  texture = cv2.GaussianBlur(rng.uniform(0, 255, (300, 300)), (0, 0), 2.0)
  # The rigid landmarks span a square over the image's centre; the eye and
  # brow ones (eye corners included) sit at its centre.
  eyes = [i for ids in skin_tracks._EYE_AND_BROW_IDS for i in ids]  # pylint: disable=protected-access
  rigid = [i for i in landmarks.RIGID_IDS if i not in eyes]
  corners = np.array([[80, 80], [176, 80], [176, 176], [80, 176]], float)
  lms = np.full((landmarks.NUM_LANDMARKS, 3), SIZE / 2)
  lms[rigid, :2] = corners[np.arange(len(rigid)) % 4]
  tracker = skin_tracks.SkinTracker()
  shifts = [(0.7 * k, -0.4 * k) for k in range(30)]
  for dx, dy in shifts:
    moved = cv2.warpAffine(texture, np.float64([[1, 0, dx], [0, 1, dy]]),
                           (SIZE, SIZE), flags=cv2.INTER_CUBIC)
    frame = np.repeat(np.clip(moved, 0, 255).astype(np.uint8)[..., None],
                      3, -1)
    tracker.update(frame, lms)
  tracks = tracker.tracks()
  assert tracks.num_tracks >= 20
  first = np.unique(tracks.track, return_index=True)[1]
  start = tracks.uv[first][tracks.track] - np.array(shifts)[
      tracks.frame[first]][tracks.track]
  moved = tracks.uv - np.array(shifts)[tracks.frame]
  np.testing.assert_allclose(moved, start, atol=0.1)
