"""Pose fitting against exact perspective projections of a known head."""
import numpy as np
from scipy.spatial import transform

from ssp_nerf_jax.preprocess import landmarks
from ssp_nerf_jax.preprocess import pose_fit

SIZE = 256
FOCAL = 600.0


def synthetic_landmarks(num_frames=40, seed=0):
  """[N, 478, 3] landmarks (x, y px, depth px) of a rigid random shape seen
  under known poses, and the true head-to-camera rotations [N, 3, 3]."""
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
  center = np.array([SIZE / 2, SIZE / 2])
  uv = pose_fit.project(shape, rotvecs, trans, FOCAL, center)
  rot = transform.Rotation.from_rotvec(rotvecs).as_matrix()
  depth = np.einsum('nij,pj->npi', rot, shape)[..., 2] + trans[:, 2:3]
  lms = np.zeros((num_frames, landmarks.NUM_LANDMARKS, 3))
  lms[:, ids, :2] = uv
  lms[:, ids, 2] = FOCAL * (depth - trans[:, 2:3]) / trans[:, 2:3]
  return lms, rot


def test_exact_projections_give_the_poses_back():
  lms, head_to_camera = synthetic_landmarks()
  fit = pose_fit.fit_poses(lms, (SIZE, SIZE), smoothing_sigma=0)
  # True c2w rotations (OpenGL camera axes: y up, looking along -z); the
  # fitted head frame differs from the shape's by one fixed rotation,
  # which rotation_errors_deg removes.
  truth = np.tile(np.eye(4), (len(lms), 1, 1))
  truth[:, :3, :3] = np.transpose(head_to_camera, (0, 2, 1)) @ np.diag(
      [1.0, -1.0, -1.0])
  errors = pose_fit.rotation_errors_deg(fit.c2w, truth)
  assert np.max(errors) < 0.05, errors  # measured 0.003
  assert fit.rms_px < 0.02  # measured 0.003
  assert abs(fit.focal / FOCAL - 1) < 0.01, fit.focal  # measured 0.05 %


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
