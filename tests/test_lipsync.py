"""Landmark lip-sync metrics: the maths against slow loop references, the
metrics of `score` on scripted landmarks, and a real face-mesh run."""
import logging

import numpy as np
import pytest

from ssp_nerf_jax.evaluation import lipsync
from ssp_nerf_jax.preprocess import landmarks
from ssp_nerf_jax.runtime import errors
from ssp_nerf_jax import synthetic

# mediapipe's own graph set-up calls a deprecated protobuf API.
pytestmark = pytest.mark.filterwarnings(
    r'ignore:label\(\) is deprecated:DeprecationWarning')


def centred_loop(points):
  """[N, P, D] -> each frame's points minus their mean, one by one."""
  out = np.empty_like(points, np.float64)
  for n, frame in enumerate(points):
    mean = [sum(p[d] for p in frame) / len(frame)
            for d in range(frame.shape[1])]
    for i, p in enumerate(frame):
      out[n, i] = [p[d] - mean[d] for d in range(len(p))]
  return out


def lmd_loop(rendered, real):
  """Mean over frames of the mean point distance after centring."""
  rendered, real = centred_loop(rendered), centred_loop(real)
  per_frame = []
  for r, t in zip(rendered, real):
    distances = [np.sqrt(sum((a - b) ** 2 for a, b in zip(p, q)))
                 for p, q in zip(r, t)]
    per_frame.append(sum(distances) / len(distances))
  return sum(per_frame) / len(per_frame)


def random_mouths(seed, num_frames=4):
  """float [num_frames, 20, 2] mouth-like points in pixels."""
  return np.random.default_rng(seed).uniform(20, 70, (num_frames, 20, 2))


def test_centred_matches_loop_and_has_zero_mean():
  points = random_mouths(0)
  np.testing.assert_allclose(lipsync.centred(points), centred_loop(points))
  np.testing.assert_allclose(lipsync.centred(points).mean(axis=1), 0,
                             atol=1e-12)


def test_lmd_of_identical_sets_is_zero():
  points = random_mouths(1)
  assert lipsync.lmd(points, points) == 0


def test_lmd_ignores_where_each_frame_is():
  points = random_mouths(2)
  # A different shift per frame: the head moved, the mouth did not.
  shifts = np.array([[3, -2], [0.5, 7], [-11, 0], [40, 40]])[:, None]
  assert lipsync.lmd(points + shifts, points) == pytest.approx(0, abs=1e-12)


def test_lmd_of_one_moved_point():
  points = random_mouths(3, num_frames=2)
  moved = points.copy()
  moved[0, 5] += [3, 4]  # 5 px in frame 0; frame 1 untouched
  # Centring spreads the move: the moved point is off by 5 (1 - 1/20) px,
  # the 19 others by 5 / 20 px each; frame 1 adds zero.
  frame0 = (5 * 19 / 20 + 19 * 5 / 20) / 20
  assert lipsync.lmd(moved, points) == pytest.approx(frame0 / 2)
  assert frame0 / 2 == pytest.approx(0.2375)


def test_lmd_matches_loop():
  rendered, real = random_mouths(4, 5), random_mouths(5, 5)
  assert lipsync.lmd(rendered, real) == pytest.approx(lmd_loop(rendered,
                                                               real))


def test_lmd_rejects_mismatched_shapes():
  with pytest.raises(ValueError, match='equal'):
    lipsync.lmd(random_mouths(0, 3), random_mouths(0, 4))
  with pytest.raises(ValueError, match='equal'):
    lipsync.lmd(np.zeros((0, 20, 2)), np.zeros((0, 20, 2)))


def test_pearson_matches_numpy():
  rng = np.random.default_rng(6)
  a = rng.normal(size=30)
  b = 0.5 * a + rng.normal(size=30)
  assert lipsync.correlate(a, b) == pytest.approx(np.corrcoef(a, b)[0, 1])
  assert lipsync.correlate([0, 2, 4], [1, 2, 3]) == pytest.approx(1.0)
  assert lipsync.correlate([0, 2, 4], [3, 2, 1]) == pytest.approx(-1.0)


def test_pearson_undefined_is_nan():
  assert np.isnan(lipsync.correlate([1, 1, 1], [1, 2, 3]))
  assert np.isnan(lipsync.correlate([1.0], [2.0]))
  with pytest.raises(ValueError, match='3 and 2'):
    lipsync.correlate([1, 2, 3], [1, 2])


def test_mouth_points_are_the_dlib_mouth_in_order():
  lms = np.arange(2 * 478 * 3, dtype=np.float32).reshape(2, 478, 3)
  points = lipsync.mouth_points(lms)
  assert points.shape == (2, 20, 2)
  for k, landmark_id in enumerate(landmarks.MOUTH68_IDS):
    np.testing.assert_array_equal(points[:, k], lms[:, landmark_id, :2])


def test_to_size_scales_x_and_z_by_width_and_y_by_height():
  lms = np.ones((3, 478, 3), np.float32)
  scaled = lipsync.to_size(lms, (100, 200), (50, 50))
  np.testing.assert_allclose(scaled[..., 0], 0.25)
  np.testing.assert_allclose(scaled[..., 1], 0.5)
  np.testing.assert_allclose(scaled[..., 2], 0.25)


# ------------------------------------------- score on scripted landmarks --


def face(mouth_gap, shift=0.0, seed=0):
  """float32 [478, 3] landmarks: random points, the eye corners 20 px
  apart and the inner lips `mouth_gap` px apart, all moved by `shift`."""
  lms = np.random.default_rng(seed).uniform(30, 60, (478, 3))
  lms[landmarks.RIGHT_EYE_CORNERS, :2] = [[30, 40], [40, 40]]
  lms[landmarks.LEFT_EYE_CORNERS, :2] = [[60, 40], [50, 40]]
  lms[landmarks.INNER_LIP_GAP, :2] = [[45, 70], [45, 70 + mouth_gap]]
  return (lms + shift).astype(np.float32)


class ScriptedMesh:
  """A FaceMesh stand-in: image value v (its first pixel) -> faces[v], or
  no face for v = 255."""

  def __init__(self, faces):
    self.faces = faces

  def __call__(self, image):
    key = int(image[0, 0, 0])
    return None if key == 255 else self.faces[key]

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    pass


def keyed_images(keys, size):
  """uint8 [len(keys), size, size, 3], image i filled with keys[i]."""
  return np.broadcast_to(np.array(keys, np.uint8)[:, None, None, None],
                         (len(keys), size, size, 3)).copy()


@pytest.fixture
def scripted(monkeypatch):
  """Installs a ScriptedMesh of 8 faces; returns the faces."""
  gaps = [0, 4, 1, 6, 2, 2, 3, 8]
  faces = [face(g, shift=i, seed=i) for i, g in enumerate(gaps)]
  monkeypatch.setattr(landmarks, 'FaceMesh',
                      lambda tracking: ScriptedMesh(faces))
  return faces


def test_score_is_lmd_and_pearson_of_the_faces_found(scripted):
  # Rendered frames show faces 0-3; the real frames faces 4-7.
  result = lipsync.score(keyed_images([0, 1, 2, 3], 96),
                         keyed_images([4, 5, 6, 7], 96))
  rendered, real = np.stack(scripted[:4]), np.stack(scripted[4:])
  assert result['landmark_frames'] == 4
  assert result['lmd'] == pytest.approx(lmd_loop(
      rendered[:, landmarks.MOUTH68_IDS, :2],
      real[:, landmarks.MOUTH68_IDS, :2]))
  # Inner-lip gap / interocular (20 px) of each side's faces.
  opening_r = np.array([0, 4, 1, 6]) / 20
  opening_t = np.array([2, 2, 3, 8]) / 20
  assert result['mouth_sync'] == pytest.approx(
      np.corrcoef(opening_r, opening_t)[0, 1])
  # The eyes' the same way (lid gap over eye width).
  eyes = lipsync.correlate(landmarks.eye_openness(rendered),
                           landmarks.eye_openness(real))
  assert result['eye_sync'] == (None if np.isnan(eyes) else
                                pytest.approx(eyes))


def test_frames_without_a_face_on_either_side_are_left_out(scripted):
  rendered = keyed_images([0, 255, 2, 3, 1], 96)  # no face in frame 1
  real = keyed_images([4, 5, 255, 7, 6], 96)  # no face in frame 2
  result = lipsync.score(rendered, real)
  assert result['landmark_frames'] == 3
  kept = lambda faces: np.stack(faces)[:, landmarks.MOUTH68_IDS, :2]
  assert result['lmd'] == pytest.approx(lmd_loop(
      kept([scripted[0], scripted[3], scripted[1]]),
      kept([scripted[4], scripted[7], scripted[6]])))


def test_real_landmarks_are_scaled_to_the_rendered_size(scripted):
  # The same faces on real frames twice the size: their pixels halve.
  del scripted
  result = lipsync.score(keyed_images([0, 1, 2], 48),
                         keyed_images([0, 1, 2], 96))
  assert result['lmd'] > 0
  assert result['mouth_sync'] == pytest.approx(1.0)  # ratio: size-free


def test_no_face_anywhere_gives_nulls_and_a_warning(scripted, caplog):
  del scripted
  with caplog.at_level(logging.WARNING):
    result = lipsync.score(keyed_images([255, 255], 32),
                           keyed_images([0, 255], 32))
  assert result == {'lmd': None, 'mouth_sync': None, 'eye_sync': None,
                    'landmark_frames': 0}
  assert 'found in 0 of 2 rendered and 1 of 2 real frames' in caplog.text


def test_one_common_frame_has_lmd_but_no_sync(scripted):
  del scripted
  result = lipsync.score(keyed_images([0, 255], 32),
                         keyed_images([4, 5], 32))
  assert result['landmark_frames'] == 1
  assert result['lmd'] > 0
  assert result['mouth_sync'] is None


def test_without_mediapipe_the_metrics_are_null(monkeypatch, caplog):
  def missing(tracking):
    raise errors.UserError('video preprocessing needs mediapipe')
  monkeypatch.setattr(landmarks, 'FaceMesh', missing)
  with caplog.at_level(logging.WARNING):
    result = lipsync.score(keyed_images([0], 32), keyed_images([0], 32))
  assert result == lipsync.no_scores()
  assert 'needs mediapipe' in caplog.text


# ------------------------------------------------------ real face mesh --


@pytest.fixture(scope='module')
def faces():
  """uint8 [5, 96, 96, 3]: synthetic portrait frames (0.2 s)."""
  pytest.importorskip('mediapipe')
  return synthetic.generate_clip(size=96, duration_s=0.2).images


def test_face_mesh_finds_the_synthetic_faces(faces):
  with landmarks.FaceMesh(tracking=False) as mesh:
    lms, found = lipsync.find_landmarks(mesh, faces)
  assert found.all()
  assert lms.shape == (len(faces), landmarks.NUM_LANDMARKS, 3)
  mouth = lipsync.mouth_points(lms)
  assert ((mouth >= 0) & (mouth < 96)).all()


def test_real_metrics_are_finite_and_blank_frames_are_counted_out(faces):
  blank = np.zeros_like(faces[:1])
  rendered = np.concatenate([faces[::-1], blank])  # mouths out of step
  real = np.concatenate([faces, faces[:1]])
  result = lipsync.score(rendered, real)
  assert result['landmark_frames'] == len(faces)
  assert np.isfinite(result['lmd']) and result['lmd'] >= 0
  assert result['mouth_sync'] is None or -1 <= result['mouth_sync'] <= 1
  assert result['eye_sync'] is None or -1 <= result['eye_sync'] <= 1
  # Static mode scores every frame on its own: identical frames, identical
  # landmarks.
  same = lipsync.score(faces, faces)
  assert same['lmd'] == 0
  assert same['landmark_frames'] == len(faces)
