"""Rigid head poses and one focal length per clip, from 2-D landmarks.

No face model is needed: the clip's own rigid 3-D landmark shape is
estimated from the frames.

1. `initial_shape`: mediapipe's per-frame 3-D landmarks (x, y in pixels,
   z relative depth at the same scale: near-orthographic) of the rigid
   points, aligned by generalised Procrustes and averaged.
2. `initial_poses`: per frame, the similarity that maps that shape onto the
   frame's landmarks, read as a perspective camera at distance f / scale.
3. `bundle_adjust`: per-frame rotation and translation, the shared shape
   and the focal length refined jointly (scipy `least_squares`) by
   reprojection error under perspective projection, over all frames.  The
   focal length is weakly determined by a few frames, so it is fitted over
   the whole clip.  mediapipe's relative depth per point enters as a
   second residual (it carries pitch and yaw that 2-D points show only as
   sub-pixel foreshortening).
4. `to_head_space`: the shape's frame becomes AD-NeRF's head space: x along
   the eye line, z towards the mean camera, y up; origin and scale put the
   eyes where the synthetic generator's head has them, so near/far (mean
   camera distance -0.2/+0.4) and the positional encoding's range fit as
   they do on AD-NeRF's data.
5. `smooth_poses`: a centred (zero-lag) Gaussian filter over time.

Cameras: the fit uses OpenCV camera axes (x right, y down, z forward); the
output c2w matrices use AD-NeRF's OpenGL axes (x right, y up, looking along
-z), camera-to-head.
"""
import dataclasses
from typing import Optional

import numpy as np
from scipy import ndimage
from scipy import optimize
from scipy import sparse
from scipy.spatial import transform

from ssp_nerf_jax.preprocess import landmarks as landmarks_lib
from ssp_nerf_jax.synthetic import scene

# The synthetic head's eye centres (head space): the scale and origin
# reference of every fitted head.
REFERENCE_EYES = scene.EYE_CENTERS  # [2, 3]: subject's right, left
# Starting focal length in units of the image size: portrait videos are
# shot at 25-60 degree fields of view (focal 0.9-2.3 x size); AD-NeRF's
# Obama clip has 2.4.  (Starts of 1 and 4 x size converged to the same
# focal on the synthetic clip.)
FOCAL_START = 2.0
# Weight of mediapipe's relative depth against the 2-D reprojection error
# (both in pixels).  On the synthetic clip (256 px, 10 s) 1.0 lowered the
# median rotation error from 2.1 to 1.8 degrees; 3.0 changed nothing more.
DEPTH_WEIGHT = 1.0
# Weight of the prior that holds the shape near its initial estimate: it
# only fixes the gauge (the shape's scale and placement are otherwise
# free), so it is tiny next to the reprojection residuals (pixels).
SHAPE_PRIOR_WEIGHT = 1e-2
# Bundle-adjustment function evaluations at most: rotations settle within
# 10 (synthetic clip: same error at 10, 25 and 50); the focal length keeps
# drifting slowly, it is weakly determined by landmarks (see README).
MAX_EVALUATIONS = 25
_OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0])


@dataclasses.dataclass(frozen=True)
class PoseFit:
  """A fitted pose track.

  Attributes:
    c2w: float64 [N, 4, 4] camera-to-head, OpenGL axes, head-space units.
    focal: focal length in pixels.
    shape: float64 [P, 3] the rigid landmarks in head space.
    rms_px: root-mean-square reprojection error in pixels (before smoothing).
  """
  c2w: np.ndarray
  focal: float
  shape: np.ndarray
  rms_px: float


def umeyama(src: np.ndarray, dst: np.ndarray):
  """Similarity (s, R, t) minimising |s R src + t - dst|^2 (Umeyama 1991).

  Args:
    src, dst: [P, 3] corresponding points.
  Returns:
    s float, R [3, 3] proper rotation, t [3].
  """
  mu_s, mu_d = src.mean(0), dst.mean(0)
  a, b = src - mu_s, dst - mu_d
  u, sig, vt = np.linalg.svd(b.T @ a / len(src))
  d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
  rot = u @ d @ vt
  scale = np.trace(np.diag(sig) @ d) / (a**2).sum(1).mean()
  return scale, rot, mu_d - scale * rot @ mu_s


def initial_shape(points3d: np.ndarray, iterations: int = 3) -> np.ndarray:
  """Mean rigid shape [P, 3] of per-frame 3-D landmarks [N, P, 3]
  (generalised Procrustes), centred, in the first frame's scale."""
  shape = points3d[0] - points3d[0].mean(0)
  for _ in range(iterations):
    aligned = []
    for frame in points3d:
      s, rot, t = umeyama(frame, shape)
      aligned.append(s * frame @ rot.T + t)
    mean = np.mean(aligned, axis=0)
    shape = mean - mean.mean(0)
  return shape


def initial_poses(shape: np.ndarray, points3d: np.ndarray, focal: float,
                  center: np.ndarray):
  """Per-frame (rotvec [N, 3], t [N, 3]) placing `shape` under perspective.

  The similarity s R shape + T that fits a frame's near-orthographic
  landmarks is a camera at depth Z = focal / s whose optical axis passes
  T's image point.
  """
  rotvecs, trans = [], []
  for frame in points3d:
    s, rot, t = umeyama(shape, frame)
    depth = focal / s
    trans.append([(t[0] - center[0]) * depth / focal,
                  (t[1] - center[1]) * depth / focal, depth])
    rotvecs.append(transform.Rotation.from_matrix(rot).as_rotvec())
  return np.array(rotvecs), np.array(trans)


def project(shape, rotvecs, trans, focal, center):
  """[N, P, 2] pixels of shape [P, 3] under poses [N, 3], [N, 3]."""
  rot = transform.Rotation.from_rotvec(rotvecs).as_matrix()  # [N, 3, 3]
  cam = np.einsum('nij,pj->npi', rot, shape) + trans[:, None, :]
  return focal * cam[..., :2] / cam[..., 2:3] + center


class _Problem:
  """Parameter packing and residuals of the bundle adjustment.

  Residuals: the 2-D reprojection error (pixels) of every rigid point, and
  `depth_weight` x the error of its depth relative to the frame's other
  points, against mediapipe's per-point z (pixels at the image scale):
  the landmark model's depth carries pitch and yaw information that the
  2-D points show only through sub-pixel foreshortening.
  """

  def __init__(self, observed, center, shape0, depth_weight):
    self.observed = observed  # [N, P, 3]: x, y, z in pixels
    self.center = center
    self.shape0 = shape0
    self.depth_weight = depth_weight
    self.n, self.p = observed.shape[:2]

  def pack(self, log_focal, rotvecs, trans, shape, depth_offsets):
    return np.concatenate([[log_focal], rotvecs.ravel(), trans.ravel(),
                           shape.ravel(), depth_offsets])

  def unpack(self, x):
    n, p = self.n, self.p
    rotvecs = x[1:1 + 3 * n].reshape(n, 3)
    trans = x[1 + 3 * n:1 + 6 * n].reshape(n, 3)
    shape = x[1 + 6 * n:1 + 6 * n + 3 * p].reshape(p, 3)
    return x[0], rotvecs, trans, shape, x[1 + 6 * n + 3 * p:]

  def residuals(self, x):
    log_focal, rotvecs, trans, shape, depth_offsets = self.unpack(x)
    focal = np.exp(log_focal)
    rot = transform.Rotation.from_rotvec(rotvecs).as_matrix()  # [N, 3, 3]
    cam = np.einsum('nij,pj->npi', rot, shape) + trans[:, None, :]
    reproj = focal * cam[..., :2] / cam[..., 2:3] + self.center
    # Depth in pixels at the head's distance; mediapipe's z has its own
    # origin per frame, hence a free offset per frame.
    depth = focal * (cam[..., 2] - trans[:, 2:3]) / trans[:, 2:3]
    depth_error = depth - self.observed[..., 2] - depth_offsets[:, None]
    prior = SHAPE_PRIOR_WEIGHT * (shape - self.shape0)
    return np.concatenate([
        (reproj - self.observed[..., :2]).ravel(),
        self.depth_weight * depth_error.ravel(), prior.ravel()])

  def sparsity(self):
    """Which parameters each residual depends on."""
    n, p = self.n, self.p
    rows = 3 * n * p + 3 * p
    jac = sparse.lil_matrix((rows, 1 + 7 * n + 3 * p), dtype=np.int8)
    frame = np.repeat(np.arange(n), p)
    point = np.tile(np.arange(p), n)
    depth_rows = 2 * n * p + np.arange(n * p)
    for row in (2 * np.arange(n * p), 2 * np.arange(n * p) + 1, depth_rows):
      jac[row, 0] = 1
      for k in range(3):
        jac[row, 1 + 3 * frame + k] = 1
        jac[row, 1 + 3 * n + 3 * frame + k] = 1
        jac[row, 1 + 6 * n + 3 * point + k] = 1
    jac[depth_rows, 1 + 6 * n + 3 * p + frame] = 1
    prior_rows = 3 * n * p + np.arange(3 * p)
    jac[prior_rows, 1 + 6 * n + np.arange(3 * p)] = 1
    return jac


def bundle_adjust(observed, shape, rotvecs, trans, focal, center,
                  depth_weight):
  """Refines (focal, rotvecs, trans, shape); returns them and the rms px.

  Args:
    observed: [N, P, 3] landmarks (x, y, relative z) in pixels.
    shape, rotvecs, trans, focal: the starting point.
    center: [2] principal point.
    depth_weight: weight of the relative-depth residuals (0: 2-D only).
  """
  problem = _Problem(observed, center, shape, depth_weight)
  x0 = problem.pack(np.log(focal), rotvecs, trans, shape,
                    np.zeros(len(rotvecs)))
  result = optimize.least_squares(
      problem.residuals, x0, jac_sparsity=problem.sparsity(), method='trf',
      x_scale='jac', tr_solver='lsmr', max_nfev=MAX_EVALUATIONS, ftol=1e-6, xtol=1e-8)
  log_focal, rotvecs, trans, shape, _ = problem.unpack(result.x)
  reproj = result.fun[:2 * problem.n * problem.p]
  rms = float(np.sqrt(np.mean(reproj**2) * 2))
  return float(np.exp(log_focal)), rotvecs, trans, shape, rms


def head_frame(shape: np.ndarray, rotvecs: np.ndarray, eye_ids):
  """(basis [3, 3] head axes as columns in shape coordinates, eye midpoint,
  eye distance).

  x runs along the eye line (towards the subject's left, image right), z
  towards the mean camera (orthogonalised), y = z x x (up).
  """
  right_eye = shape[eye_ids[0]].mean(0)
  left_eye = shape[eye_ids[1]].mean(0)
  x_axis = left_eye - right_eye
  distance = np.linalg.norm(x_axis)
  x_axis /= distance
  # The camera sits at -R^T t, seen from the shape: its mean direction
  # from the head is "front".  With OpenCV axes the camera looks along +z,
  # so from the head the camera is along -R^T e_z.
  rot = transform.Rotation.from_rotvec(rotvecs).mean().as_matrix()
  towards_camera = -rot.T @ np.array([0.0, 0.0, 1.0])
  z_axis = towards_camera - x_axis * (towards_camera @ x_axis)
  z_axis /= np.linalg.norm(z_axis)
  y_axis = np.cross(z_axis, x_axis)
  return np.stack([x_axis, y_axis, z_axis], 1), (right_eye + left_eye) / 2, (
      distance)


def to_head_space(shape, rotvecs, trans, eye_ids):
  """c2w [N, 4, 4] (OpenGL, head units) and the shape in head space.

  Head point h maps to shape coordinates as S = basis h / k + origin, with
  k the scale that makes the eye distance the reference head's and origin
  placing the eye midpoint where the reference head has it.
  """
  basis, eye_mid, distance = head_frame(shape, rotvecs, eye_ids)
  ref_mid = REFERENCE_EYES.mean(0)
  k = np.linalg.norm(REFERENCE_EYES[1] - REFERENCE_EYES[0]) / distance
  origin = eye_mid - basis @ ref_mid / k
  rot = transform.Rotation.from_rotvec(rotvecs).as_matrix()  # [N, 3, 3]
  # Head -> camera (OpenCV), in head units: R B h + k (R origin + t).
  w2c_rot = _OPENCV_TO_OPENGL @ rot @ basis
  w2c_t = k * (np.einsum('nij,j->ni', rot, origin) + trans) @ (
      _OPENCV_TO_OPENGL.T)
  c2w = np.tile(np.eye(4), (len(rot), 1, 1))
  c2w[:, :3, :3] = np.transpose(w2c_rot, (0, 2, 1))
  c2w[:, :3, 3] = -np.einsum('nji,nj->ni', w2c_rot, w2c_t)
  head_shape = k * (shape - origin) @ basis
  return c2w, head_shape


def smooth_poses(c2w: np.ndarray, sigma: float) -> np.ndarray:
  """Centred Gaussian smoothing of a c2w track [N, 4, 4] (no lag).

  Rotations are smoothed as rotation vectors relative to the mean rotation
  (head rotations in a talking clip stay far from 180 degrees of it).
  """
  if sigma <= 0 or len(c2w) < 3:
    return c2w
  rots = transform.Rotation.from_matrix(c2w[:, :3, :3])
  mean = rots.mean()
  rel = (mean.inv() * rots).as_rotvec()
  rel = ndimage.gaussian_filter1d(rel, sigma, axis=0, mode='nearest')
  out = c2w.copy()
  out[:, :3, :3] = (mean * transform.Rotation.from_rotvec(rel)).as_matrix()
  out[:, :3, 3] = ndimage.gaussian_filter1d(c2w[:, :3, 3], sigma, axis=0,
                                            mode='nearest')
  return out


def fit_poses(lms: np.ndarray, size: tuple[int, int],
              smoothing_sigma: float = 2.0,
              center: Optional[tuple[float, float]] = None) -> PoseFit:
  """Fits the pose track of a clip.

  Args:
    lms: float [N, 478, 3] mediapipe landmarks per frame in pixels (x, y,
      relative depth z), every frame filled.
    size: (height, width) of the frames.
    smoothing_sigma: Gaussian sigma in frames (0: none).
    center: principal point (cx, cy) in pixels; default the frames' centre
      (W/2, H/2), as AD-NeRF writes cx, cy.
  Returns:
    PoseFit (c2w in AD-NeRF's convention).
  """
  rigid = np.asarray(landmarks_lib.RIGID_IDS)
  points = np.asarray(lms, np.float64)[:, rigid]
  if center is None:
    center = (size[1] / 2.0, size[0] / 2.0)
  center = np.asarray(center, np.float64)
  shape0 = initial_shape(points)
  index = {lm: i for i, lm in enumerate(landmarks_lib.RIGID_IDS)}
  eye_ids = ([index[i] for i in landmarks_lib.RIGHT_EYE_CORNERS],
             [index[i] for i in landmarks_lib.LEFT_EYE_CORNERS])
  focal0 = FOCAL_START * max(size)
  rotvecs, trans = initial_poses(shape0, points, focal0, center)
  focal, rotvecs, trans, shape, rms = bundle_adjust(
      points, shape0, rotvecs, trans, focal0, center, DEPTH_WEIGHT)
  c2w, head_shape = to_head_space(shape, rotvecs, trans, eye_ids)
  return PoseFit(c2w=smooth_poses(c2w, smoothing_sigma), focal=focal,
                 shape=head_shape, rms_px=rms)


def rotation_errors_deg(c2w_est: np.ndarray, c2w_true: np.ndarray):
  """Per-frame head-rotation error in degrees after one global alignment.

  The fitted head frame differs from the true one by a fixed rotation Q:
  R_est = Q R_true (for camera-to-head rotations, head axes on the left).
  Q is the least-squares rotation over all frames.

  Args:
    c2w_est, c2w_true: [N, 4, 4].
  Returns:
    float64 [N]: the angle of (Q R_true)^T R_est per frame.
  """
  r_est, r_true = c2w_est[:, :3, :3], c2w_true[:, :3, :3]
  u, _, vt = np.linalg.svd(np.einsum('nij,nkj->ik', r_est, r_true))
  q = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
  aligned = np.einsum('ij,njk->nik', q, r_true)
  diff = np.einsum('nji,njk->nik', aligned, r_est)
  cos = (np.trace(diff, axis1=1, axis2=2) - 1) / 2
  return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
