"""Rigid head poses and one focal length per clip, from 2-D landmarks and
tracked skin points.

No face model is needed: the clip's own rigid 3-D landmark shape is
estimated from the frames.

1. `initial_shape`: mediapipe's per-frame 3-D landmarks (x, y in pixels,
   z relative depth at the same scale: near-orthographic) of the rigid
   points, aligned by generalised Procrustes and averaged.
2. `initial_poses`: per frame, the similarity that maps that shape onto the
   frame's landmarks, read as a perspective camera at distance f / scale.
3. `bundle_adjust`: per-frame rotation and translation, the shared shape
   and the focal length refined jointly (scipy `least_squares`, robust
   loss) by reprojection error under perspective projection, over all
   frames.  mediapipe's relative depth per point enters as a second
   residual (it carries pitch and yaw that 2-D points show only as
   sub-pixel foreshortening).  Skin tracks (`skin_tracks`), when given,
   are further rigid points, started on the landmarks' surface
   (`initial_track_points`) and held near it in depth; the landmarks then
   weigh LANDMARK_WEIGHT_WITH_TRACKS, so the tracks set the rotations.
   The focal length is barely observable (see FOCAL_PRIOR_WEIGHT): the
   pipeline holds it near a prior field of view.
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
# Starting (and, in the pipeline, prior) focal length in units of the
# image size: portrait videos are shot at 25-60 degree fields of view
# (focal 0.9-2.3 x size); AD-NeRF's Obama clip has 2.4.  The field of view
# is the source camera's: the pipeline passes FOCAL_START x the source
# frame's longer side, scaled like the crop, as the fit's `focal_prior`
# (see FOCAL_PRIOR_WEIGHT for why the fit needs one).
FOCAL_START = 2.0
# Weight of mediapipe's relative depth against the 2-D reprojection error
# (both in pixels).  On the synthetic clip (256 px, 10 s) 1.0 lowered the
# median rotation error from 2.1 to 1.8 degrees; 3.0 changed nothing more.
DEPTH_WEIGHT = 1.0
# Weight of the prior on log focal, per square root of the frame count.
# Landmarks and skin tracks of a head turning by +-10 degrees at portrait
# distance hardly see the focal length: on the synthetic clip the fit's
# cost falls by 1 % from focal 400 to 1500 px (true 822), monotonically,
# so an unconstrained fit drifts towards the orthographic camera, as far
# as its evaluations allow (12: 601 px, 25: 715, 50: 923).  2.0 keeps that
# drift to a few per cent and lets strong perspective (a close camera)
# still move the focal.
FOCAL_PRIOR_WEIGHT = 2.0
# Weight of the prior that holds the shape near its initial estimate: it
# only fixes the gauge (the shape's scale and placement are otherwise
# free), so it is tiny next to the reprojection residuals (pixels).
SHAPE_PRIOR_WEIGHT = 1e-2
# Bundle-adjustment function evaluations at most.  With the focal prior
# and tracks the synthetic clip settles within 8-12 (same error at 8, 12
# and 25); the real 20 s clip does not at 12 (pitch range 10.2 degrees,
# rms 1.44 px; at 25: 11.4 degrees, 1.38 px).
MAX_EVALUATIONS = 25
# Robust loss of the residuals (scipy least_squares' `loss`, `f_scale` in
# pixels): a skin track that slips (an occluding contour, a blink at the
# region's edge) is an outlier, which soft_l1 lets count linearly beyond
# 1 px.  Synthetic clip with tracks: 'linear' -> median 1.54, p95 2.76
# degrees; 'soft_l1' -> 1.44, 2.67 (f_scale 0.5: the same).
LOSS = 'soft_l1'
LOSS_SCALE = 1.0
# With skin tracks (`skin_tracks`), the landmarks' weight (2-D and depth)
# next to a track observation's 1: on the synthetic clip (256 px, 10 s)
# mediapipe's points report a third of the true pitch; at 0.1 the tracks
# set the per-frame rotations and the landmarks the head frame and,
# through their depth, the depth scale.  (Measured with the linear loss:
# 0.3 -> median 1.76, p95 3.08 degrees; 0.1 -> 1.54, 2.76; 0.03 -> 1.51,
# 2.82; 0 -> 1.53, 2.82.)
LANDMARK_WEIGHT_WITH_TRACKS = 0.1
# Weight of the prior holding each track point near its starting point on
# the landmarks' surface (pixels, like SHAPE_PRIOR_WEIGHT).  2-D tracks
# alone leave the depth scale free (the bas-relief ambiguity of small
# rotations: depth x angle is what they see), and a fit of the tracks
# alone flattens the head and shrinks yaw and pitch; this prior ties their
# depth to the landmarks'.  Synthetic clip, linear loss: 0.3 -> median
# 1.72, p95 3.12 degrees (yaw range 17.3 for a true 14.3: too deep a
# head); 1.0 -> 1.54, 2.76; 3.0 -> 1.85, 3.24 (pitch range 6.7 for 10.6).
TRACK_PRIOR_WEIGHT = 1.0
# Landmarks that lift a track's first observation to the face's depth.
TRACK_DEPTH_NEIGHBOURS = 4
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

  Residuals, one row per observation: the 2-D reprojection error (pixels)
  of a point in a frame, times that observation's weight; `depth_weight`
  x the error of a landmark's depth relative to the frame's other points,
  against mediapipe's per-point z (pixels at the image scale): the
  landmark model's depth carries pitch and yaw information that the 2-D
  points show only through sub-pixel foreshortening; and the shape prior,
  `prior_weight` per point x its distance from the starting shape.
  """

  def __init__(self, num_frames, num_points, frame, point, uv, weight,
               depth_frame, depth_point, depth, depth_weight, center, shape0,
               prior_weight, focal_prior=None):
    self.n, self.p = num_frames, num_points
    self.frame, self.point = frame, point  # [M] ints
    self.uv, self.weight = uv, weight  # [M, 2], [M]
    self.depth_frame, self.depth_point = depth_frame, depth_point  # [D]
    self.depth, self.depth_weight = depth, depth_weight  # [D] pixels
    self.center = center
    self.shape0 = shape0  # [P, 3]
    self.prior_weight = prior_weight  # [P]
    # (log focal, weight) of the focal length's prior, or None.
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
    rot = transform.Rotation.from_rotvec(rotvecs).as_matrix()  # [N, 3, 3]
    cam = np.einsum('mij,mj->mi', rot[self.frame],
                    shape[self.point]) + trans[self.frame]
    reproj = np.exp(log_focal) * cam[:, :2] / cam[:, 2:3] + self.center
    return (reproj - self.uv) * self.weight[:, None]

  def residuals(self, x):
    log_focal, rotvecs, trans, shape, depth_offsets = self.unpack(x)
    rot = transform.Rotation.from_rotvec(rotvecs).as_matrix()  # [N, 3, 3]
    frame = self.depth_frame
    cam_z = np.einsum('mj,mj->m', rot[frame, 2],
                      shape[self.depth_point]) + trans[frame, 2]
    # Depth in pixels at the head's distance; mediapipe's z has its own
    # origin per frame, hence a free offset per frame.
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
  """Refines (focal, rotvecs, trans, shape) from problem.shape0 and the
  given poses; returns them and the rms reprojection error in pixels of
  the observations with weight 1 (the landmarks without tracks, else the
  tracks)."""
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


def initial_track_points(tracks, shape, rotvecs, trans, focal, center):
  """[Q, 3] starting 3-D points (shape coordinates) of skin tracks.

  Each track is lifted at its first observation to the camera depth of
  the nearest landmarks there (inverse-distance weighted), i.e. onto the
  face surface that the landmark shape spans.

  Args:
    tracks: skin_tracks.SkinTracks.
    shape: [P, 3] landmark shape; rotvecs, trans [N, 3] its poses.
  """
  rot = transform.Rotation.from_rotvec(rotvecs).as_matrix()  # [N, 3, 3]
  # First observation of each track (observations are in frame order).
  first = np.unique(tracks.track, return_index=True)[1]
  frame, uv = tracks.frame[first], tracks.uv[first]
  cam = np.einsum('qij,pj->qpi', rot[frame], shape) + trans[frame, None]
  proj = focal * cam[..., :2] / cam[..., 2:3] + center  # [Q, P, 2]
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
  """The bundle adjustment of landmarks [N, P, 3], optional tracks and an
  optional prior focal length (pixels)."""
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
    lms: float [N, 478, 3] mediapipe landmarks per frame in pixels (x, y,
      relative depth z), every frame filled.
    size: (height, width) of the frames.
    smoothing_sigma: Gaussian sigma in frames (0: none).
    center: principal point (cx, cy) in pixels; default the frames' centre
      (W/2, H/2), as AD-NeRF writes cx, cy.
    tracks: optional skin_tracks.SkinTracks of the same frames: rigid
      points that move with the skin; the landmarks then weigh
      LANDMARK_WEIGHT_WITH_TRACKS.
    focal_prior: the focal length (pixels) that the fit starts from and is
      held near (FOCAL_PRIOR_WEIGHT); None: start at FOCAL_START x the
      frames' size, no prior.
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
