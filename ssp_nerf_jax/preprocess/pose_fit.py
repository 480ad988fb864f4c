"""Head poses and one focal length per clip, by bundle adjustment.

The fit uses OpenCV camera axes; c2w results are camera-to-head, OpenGL axes.
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

# Eye centres [2, 3] (right, left) that fix each fitted head's scale, origin.
REFERENCE_EYES = scene.EYE_CENTERS
# Starting (and, in the pipeline, prior) focal length over the longer frame
# side: a typical portrait field of view.
FOCAL_START = 2.0
# Mediapipe's relative depth against the 2-D error (both pixels): it carries
# pitch and yaw that 2-D points show only as slight foreshortening.
DEPTH_WEIGHT = 1.0
# Prior on log focal, per square root of the frame count.  Small head turns
# at portrait distance hardly observe the focal, and unconstrained it drifts
# towards an orthographic camera; strong perspective can still move it.
FOCAL_PRIOR_WEIGHT = 2.0
# Only fixes the shape's gauge (scale, placement): tiny next to pixels.
SHAPE_PRIOR_WEIGHT = 1e-2
MAX_EVALUATIONS = 25
# A slipping skin track (occluding contour, blink) is an outlier: soft_l1
# counts it linearly beyond LOSS_SCALE pixels.
LOSS = 'soft_l1'
LOSS_SCALE = 1.0
# Landmarks' weight next to a track observation's 1: landmarks slide over the
# skin, so tracks set the rotations and landmarks the head frame and depth.
LANDMARK_WEIGHT_WITH_TRACKS = 0.1
# Holds track points near their start on the landmark surface: 2-D tracks
# leave the depth scale free (bas-relief) and would flatten the head.
TRACK_PRIOR_WEIGHT = 1.0
# Landmarks that lift a track's first observation to the face's depth.
TRACK_DEPTH_NEIGHBOURS = 4
_OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0])


@dataclasses.dataclass(frozen=True)
class PoseFit:
  """c2w float64 [N, 4, 4] (camera-to-head, OpenGL, head units), focal in
  pixels, shape [P, 3] rigid landmarks in head space, unsmoothed rms error."""
  c2w: np.ndarray
  focal: float
  shape: np.ndarray
  rms_px: float


def umeyama(src: np.ndarray, dst: np.ndarray):
  """(s, R [3, 3], t [3]) minimising |s R src + t - dst|^2, points [P, 3]."""
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
  """Per-frame (rotvec [N, 3], t [N, 3]); a similarity scale s means depth
  f / s."""
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
  rot = transform.Rotation.from_rotvec(rotvecs).as_matrix()
  cam = np.einsum('nij,pj->npi', rot, shape) + trans[:, None, :]
  return focal * cam[..., :2] / cam[..., 2:3] + center


class _Problem:
  """Residuals: reprojection [M, 2], landmark depth [D], shape, focal prior."""

  def __init__(self, num_frames, num_points, frame, point, uv, weight,
               depth_frame, depth_point, depth, depth_weight, center, shape0,
               prior_weight, focal_prior=None):
    self.n, self.p = num_frames, num_points
    self.frame, self.point = frame, point
    self.uv, self.weight = uv, weight
    self.depth_frame, self.depth_point = depth_frame, depth_point
    self.depth, self.depth_weight = depth, depth_weight
    self.center = center
    self.shape0 = shape0
    self.prior_weight = prior_weight
    self.focal_prior = focal_prior

  def pack(self, log_focal, rotvecs, trans, shape, depth_offsets):
    return np.concatenate([[log_focal], rotvecs.ravel(), trans.ravel(),
                           shape.ravel(), depth_offsets])

  def unpack(self, x):
    n, p = self.n, self.p
    rotvecs = x[1:1 + 3 * n].reshape(n, 3)
    trans = x[1 + 3 * n:1 + 6 * n].reshape(n, 3)
    shape = x[1 + 6 * n:1 + 6 * n + 3 * p].reshape(p, 3)
    return x[0], rotvecs, trans, shape, x[1 + 6 * n + 3 * p:]

  def reprojection(self, x):
    """Weighted reprojection errors [M, 2] in pixels."""
    log_focal, rotvecs, trans, shape, _ = self.unpack(x)
    rot = transform.Rotation.from_rotvec(rotvecs).as_matrix()
    cam = np.einsum('mij,mj->mi', rot[self.frame],
                    shape[self.point]) + trans[self.frame]
    reproj = np.exp(log_focal) * cam[:, :2] / cam[:, 2:3] + self.center
    return (reproj - self.uv) * self.weight[:, None]

  def residuals(self, x):
    log_focal, rotvecs, trans, shape, depth_offsets = self.unpack(x)
    rot = transform.Rotation.from_rotvec(rotvecs).as_matrix()
    frame = self.depth_frame
    cam_z = np.einsum('mj,mj->m', rot[frame, 2],
                      shape[self.depth_point]) + trans[frame, 2]
    # Pixels at the head's distance; mediapipe's z has a per-frame origin.
    depth = np.exp(log_focal) * (cam_z - trans[frame, 2]) / trans[frame, 2]
    depth_error = depth - self.depth - depth_offsets[frame]
    prior = self.prior_weight[:, None] * (shape - self.shape0)
    focal = [] if self.focal_prior is None else [
        self.focal_prior[1] * (log_focal - self.focal_prior[0])]
    return np.concatenate([self.reprojection(x).ravel(),
                           self.depth_weight * depth_error, prior.ravel(),
                           focal])

  def sparsity(self):
    """Which parameters each residual depends on."""
    n, p = self.n, self.p
    m, d = len(self.frame), len(self.depth_frame)
    k = np.arange(3)
    rows, cols = [], []

    def depends(row, col):
      row, col = np.broadcast_arrays(row, col)
      rows.append(row.ravel())
      cols.append(col.ravel())

    for row, frame, point in (
        (2 * np.arange(m), self.frame, self.point),
        (2 * np.arange(m) + 1, self.frame, self.point),
        (2 * m + np.arange(d), self.depth_frame, self.depth_point)):
      row = row[:, None]
      depends(row, np.zeros((1, 1), np.int64))
      depends(row, 1 + 3 * frame[:, None] + k)
      depends(row, 1 + 3 * n + 3 * frame[:, None] + k)
      depends(row, 1 + 6 * n + 3 * point[:, None] + k)
    depends(2 * m + np.arange(d), 1 + 6 * n + 3 * p + self.depth_frame)
    depends(2 * m + d + np.arange(3 * p), 1 + 6 * n + np.arange(3 * p))
    num_rows = 2 * m + d + 3 * p
    if self.focal_prior is not None:
      depends(np.array([num_rows]), np.array([0]))
      num_rows += 1
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    return sparse.coo_matrix(
        (np.ones(len(rows), np.int8), (rows, cols)),
        shape=(num_rows, 1 + 7 * n + 3 * p)).tocsr()


def bundle_adjust(problem: _Problem, rotvecs, trans, focal):
  """Refined (focal, rotvecs, trans, shape, rms); rms in pixels over the
  weight-1 observations (the tracks if any, else the landmarks)."""
  x0 = problem.pack(np.log(focal), rotvecs, trans, problem.shape0,
                    np.zeros(len(rotvecs)))
  result = optimize.least_squares(
      problem.residuals, x0, jac_sparsity=problem.sparsity(), method='trf',
      x_scale='jac', tr_solver='lsmr', max_nfev=MAX_EVALUATIONS, ftol=1e-6,
      xtol=1e-8, loss=LOSS, f_scale=LOSS_SCALE)
  log_focal, rotvecs, trans, shape, _ = problem.unpack(result.x)
  unit = problem.weight == 1.0
  reproj = problem.reprojection(result.x)[unit]
  rms = float(np.sqrt(np.mean(reproj**2) * 2))
  return float(np.exp(log_focal)), rotvecs, trans, shape, rms


def head_frame(shape: np.ndarray, rotvecs: np.ndarray, eye_ids):
  """(basis [3, 3] head axes as columns, eye midpoint, eye distance), in shape
  coordinates: x to the subject's left, z towards the mean camera, y up."""
  right_eye = shape[eye_ids[0]].mean(0)
  left_eye = shape[eye_ids[1]].mean(0)
  x_axis = left_eye - right_eye
  distance = np.linalg.norm(x_axis)
  x_axis /= distance
  # OpenCV cameras look along +z: seen from the head, along -R^T e_z.
  rot = transform.Rotation.from_rotvec(rotvecs).mean().as_matrix()
  towards_camera = -rot.T @ np.array([0.0, 0.0, 1.0])
  z_axis = towards_camera - x_axis * (towards_camera @ x_axis)
  z_axis /= np.linalg.norm(z_axis)
  y_axis = np.cross(z_axis, x_axis)
  return np.stack([x_axis, y_axis, z_axis], 1), (right_eye + left_eye) / 2, (
      distance)


def to_head_space(shape, rotvecs, trans, eye_ids):
  """c2w [N, 4, 4] (OpenGL, head units) and the shape in head space, where
  the eyes sit at REFERENCE_EYES (S = basis h / k + origin)."""
  basis, eye_mid, distance = head_frame(shape, rotvecs, eye_ids)
  ref_mid = REFERENCE_EYES.mean(0)
  k = np.linalg.norm(REFERENCE_EYES[1] - REFERENCE_EYES[0]) / distance
  origin = eye_mid - basis @ ref_mid / k
  rot = transform.Rotation.from_rotvec(rotvecs).as_matrix()
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
  """Centred Gaussian smoothing of c2w [N, 4, 4]; rotations as rotation
  vectors relative to the mean (talking heads stay far from 180 degrees)."""
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


def initial_track_points(tracks, shape, rotvecs, trans, focal, center):
  """[Q, 3] track points in shape coordinates: each first observation lifted
  to the depth of the nearest landmarks (inverse-distance weighted)."""
  rot = transform.Rotation.from_rotvec(rotvecs).as_matrix()
  # Observations are in frame order.
  first = np.unique(tracks.track, return_index=True)[1]
  frame, uv = tracks.frame[first], tracks.uv[first]
  cam = np.einsum('qij,pj->qpi', rot[frame], shape) + trans[frame, None]
  proj = focal * cam[..., :2] / cam[..., 2:3] + center
  dist = np.linalg.norm(proj - uv[:, None], axis=-1)
  nearest = np.argsort(dist, axis=1)[:, :TRACK_DEPTH_NEIGHBOURS]
  weight = 1.0 / (np.take_along_axis(dist, nearest, 1) + 1.0)
  depth = (np.take_along_axis(cam[..., 2], nearest, 1) * weight).sum(
      1) / weight.sum(1)
  points = np.concatenate([(uv - center) / focal * depth[:, None],
                           depth[:, None]], 1)
  return np.einsum('qji,qj->qi', rot[frame], points - trans[frame])


def make_problem(points, tracks, shape0, track_shape0, center,
                 focal_prior=None):
  """The bundle adjustment of landmarks [N, P, 3], tracks and focal prior."""
  n, p = points.shape[:2]
  frame, point = (a.ravel() for a in np.meshgrid(
      np.arange(n), np.arange(p), indexing='ij'))
  num_tracks = 0 if tracks is None else tracks.num_tracks
  landmark_weight = 1.0 if not num_tracks else LANDMARK_WEIGHT_WITH_TRACKS
  weight = np.full(n * p, landmark_weight)
  prior = np.full(p, SHAPE_PRIOR_WEIGHT)
  uv = points[..., :2].reshape(-1, 2)
  if num_tracks:
    frame_all = np.concatenate([frame, tracks.frame])
    point_all = np.concatenate([point, p + tracks.track])
    uv = np.concatenate([uv, tracks.uv])
    weight = np.concatenate([weight, np.ones(len(tracks.frame))])
    prior = np.concatenate([prior, np.full(num_tracks, TRACK_PRIOR_WEIGHT)])
    shape0 = np.concatenate([shape0, track_shape0])
  else:
    frame_all, point_all = frame, point
  return _Problem(n, p + num_tracks, frame_all, point_all, uv, weight,
                  frame, point, points[..., 2].ravel(),
                  DEPTH_WEIGHT * landmark_weight, center, shape0, prior,
                  None if focal_prior is None else (
                      np.log(focal_prior), FOCAL_PRIOR_WEIGHT * np.sqrt(n)))


def fit_poses(lms: np.ndarray, size: tuple[int, int],
              smoothing_sigma: float = 2.0,
              center: Optional[tuple[float, float]] = None,
              tracks=None, focal_prior: Optional[float] = None) -> PoseFit:
  """Fits the pose track of a clip.

  Args:
    lms: float [N, 478, 3] landmarks in pixels (z: relative depth), no gaps.
    size: (height, width) of the frames.
    smoothing_sigma: Gaussian sigma in frames (0: none).
    center: principal point (cx, cy) in pixels; default (W/2, H/2).
    tracks: optional skin_tracks.SkinTracks of the same frames.
    focal_prior: focal start and prior in pixels; None: FOCAL_START, no prior.
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
  focal0 = FOCAL_START * max(size) if focal_prior is None else focal_prior
  rotvecs, trans = initial_poses(shape0, points, focal0, center)
  if tracks is not None and tracks.num_tracks:
    track_shape0 = initial_track_points(tracks, shape0, rotvecs, trans,
                                        focal0, center)
  else:
    tracks, track_shape0 = None, None
  problem = make_problem(points, tracks, shape0, track_shape0, center,
                         focal_prior)
  focal, rotvecs, trans, shape, rms = bundle_adjust(problem, rotvecs, trans,
                                                    focal0)
  shape = shape[:len(rigid)]
  c2w, head_shape = to_head_space(shape, rotvecs, trans, eye_ids)
  return PoseFit(c2w=smooth_poses(c2w, smoothing_sigma), focal=focal,
                 shape=head_shape, rms_px=rms)


def align_rotations(c2w_est: np.ndarray, c2w_true: np.ndarray):
  """[N, 3, 3] true rotations of c2w_true turned by the one least-squares
  rotation Q onto those of c2w_est (R_est ~ Q R_true): the head frames of a
  fit and of the truth differ by such a turn."""
  r_est, r_true = c2w_est[:, :3, :3], c2w_true[:, :3, :3]
  u, _, vt = np.linalg.svd(np.einsum('nij,nkj->ik', r_est, r_true))
  q = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
  return np.einsum('ij,njk->nik', q, r_true)


def rotation_errors_deg(c2w_est: np.ndarray, c2w_true: np.ndarray):
  """float64 [N] rotation errors in degrees of c2w [N, 4, 4], after aligning
  the head frames by one least-squares rotation (`align_rotations`)."""
  r_est = c2w_est[:, :3, :3]
  aligned = align_rotations(c2w_est, c2w_true)
  diff = np.einsum('nji,njk->nik', aligned, r_est)
  cos = (np.trace(diff, axis1=1, axis2=2) - 1) / 2
  return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
