"""Face parsing from face-mesh landmarks and person masks (preprocess.parsing).

The synthetic clip's exact parsing scores the whole path (mediapipe on the
rendered frames, then parse_frame); hand-made landmarks test the geometry.
"""
import subprocess
import sys

import numpy as np
import pytest

from ssp_nerf_jax.evaluation import metrics
from ssp_nerf_jax.preprocess import landmarks
from ssp_nerf_jax.preprocess import parsing
from ssp_nerf_jax import synthetic

P = parsing


# ---- The synthetic clip, parsed through mediapipe. ----


@pytest.fixture(scope='module')
def parsed_clip():
  """10 frames of the 160 px synthetic clip: predicted and true class ids
  [10, 160, 160] and the landmarks [10, 478, 3]."""
  clip = synthetic.generate_clip(size=160, duration_s=0.4, seed=0)
  preds, lms_seen = [], []
  with landmarks.FaceMesh(tracking=True) as mesh, \
      landmarks.PersonSegmenter() as segmenter:
    for image in clip.images:
      lms = mesh(image)
      assert lms is not None, 'mediapipe lost the synthetic face'
      preds.append(parsing.parse_frame(lms, segmenter(image)))
      lms_seen.append(lms)
  return np.stack(preds), clip.parsing, np.stack(lms_seen)


def _iou(pred, true):
  return np.count_nonzero(pred & true) / np.count_nonzero(pred | true)


def test_synthetic_mean_iou(parsed_clip):
  pred, true, _ = parsed_clip
  assert pred.dtype == np.uint8 and pred.shape == true.shape
  # A margin below what the parser reaches on this clip.
  assert metrics.mean_iou(pred, true, P.NUM_CLASSES) >= 0.55
  # Every class is found, none is a stray guess.
  for k in range(P.NUM_CLASSES):
    assert _iou(pred == k, true == k) >= 0.3, synthetic.CLASS_NAMES[k]


def test_synthetic_mouth_region_iou(parsed_clip):
  pred, true, _ = parsed_clip
  mouth = (P.MOUTH, P.LIPS)
  assert _iou(np.isin(pred, mouth), np.isin(true, mouth)) >= 0.55


# ---- Landmark loops. ----


def test_edge_loops_orders_loops_and_paths():
  square = [(5, 2), (2, 9), (9, 7), (7, 5)]
  path = [(30, 20), (20, 40), (40, 10)]
  assert P.edge_loops(square + path) == [(2, 5, 7, 9), (10, 40, 20, 30)]
  with pytest.raises(ValueError, match='more than two'):
    P.edge_loops([(1, 2), (1, 3), (1, 4)])


def test_loops_match_mediapipe_connections():
  # pylint: disable-next=protected-access
  conn = landmarks._import_mediapipe().face_mesh_connections
  assert P.edge_loops(conn.FACEMESH_FACE_OVAL) == [P.FACE_OVAL]
  assert P.edge_loops(conn.FACEMESH_LIPS) == [P.LIPS_OUTER, P.LIPS_INNER]
  assert P.edge_loops(conn.FACEMESH_RIGHT_EYE) == [P.RIGHT_EYE]
  assert P.edge_loops(conn.FACEMESH_LEFT_EYE) == [P.LEFT_EYE]
  for edges, brow in ((conn.FACEMESH_RIGHT_EYEBROW, P.RIGHT_BROW),
                      (conn.FACEMESH_LEFT_EYEBROW, P.LEFT_BROW)):
    lower, upper = P.edge_loops(edges)
    assert brow == lower + upper[::-1]
  # FACEMESH_NOSE is the midline 168..2 plus both wings: the outline runs
  # through the wings and the midline's ends.
  nose_ids = {i for edge in conn.FACEMESH_NOSE for i in edge}
  midline = {6, 197, 195, 5, 4, 1, 19, 94}
  assert nose_ids - midline <= set(P.NOSE_OUTLINE)
  assert len(set(P.NOSE_OUTLINE)) == len(P.NOSE_OUTLINE)


def test_nose_outline_encloses_the_midline(parsed_clip):
  _, _, lms = parsed_clip
  midline = [6, 197, 195, 5, 4, 1, 19, 94]
  for frame in lms:
    inside = P.polygon_mask((160, 160), frame[list(P.NOSE_OUTLINE)])
    x, y = np.round(frame[midline, :2]).astype(int).T
    assert inside[y, x].all()


# ---- Geometry on hand-made landmarks. ----

SIZE = 200


def _ellipse(ids, centre, radii, lms):
  """Puts the loop `ids` on an ellipse, starting at its top."""
  angles = np.linspace(0, 2 * np.pi, len(ids), endpoint=False)
  lms[list(ids), 0] = centre[0] + radii[0] * np.sin(angles)
  lms[list(ids), 1] = centre[1] - radii[1] * np.cos(angles)


def _face(mouth_gap=8.0):
  """[478, 3] landmarks of an upright face centred at x = 100, and a person
  mask: a head disc around it and a torso block at the bottom."""
  lms = np.zeros((478, 3))
  lms[:, :2] = (100, 90)
  _ellipse(P.FACE_OVAL, (100, 80), (30, 40), lms)  # chin (152) at y = 120
  _ellipse(P.RIGHT_EYE, (88, 70), (5, 2.5), lms)
  _ellipse(P.LEFT_EYE, (112, 70), (5, 2.5), lms)
  _ellipse(P.RIGHT_BROW, (88, 61), (7, 2), lms)
  _ellipse(P.LEFT_BROW, (112, 61), (7, 2), lms)
  _ellipse(P.NOSE_OUTLINE, (100, 80), (5, 10), lms)  # nose base at y = 90
  _ellipse(P.LIPS_OUTER, (100, 103), (12, 3 + mouth_gap / 2), lms)
  _ellipse(P.LIPS_INNER, (100, 103), (9, mouth_gap / 2), lms)
  ys, xs = np.mgrid[0:SIZE, 0:SIZE]
  person = ((xs - 100)**2 / 42**2 + (ys - 75)**2 / 55**2 <= 1) | (ys >= 150)
  person |= (np.abs(xs - 100) <= 14) & (ys >= 110)  # the neck
  return lms, person.astype(np.float32)


def test_parts_nest_inside_each_other():
  lms, person = _face()
  ids = P.parse_frame(lms, person)
  assert ids.dtype == np.uint8 and ids.shape == (SIZE, SIZE)
  # Centre of the mouth, on the lips, around the lips.
  assert ids[103, 100] == P.MOUTH
  assert ids[103 - 5, 100] == P.LIPS and ids[103 + 5, 100] == P.LIPS
  assert ids[103, 100 - 16] == P.SKIN and ids[103 - 9, 100] != P.MOUTH
  mouth = ids == P.MOUTH
  # Every mouth pixel lies inside the lips, and the lips inside the skin.
  rows, cols = np.nonzero(mouth)
  assert rows.min() > np.nonzero((ids == P.LIPS).any(axis=1))[0].min()
  assert rows.max() < np.nonzero((ids == P.LIPS).any(axis=1))[0].max()
  lips_or_mouth = np.isin(ids, (P.LIPS, P.MOUTH))
  ring = np.zeros_like(lips_or_mouth)
  ring[1:-1, 1:-1] = (lips_or_mouth[:-2, 1:-1] | lips_or_mouth[2:, 1:-1] |
                      lips_or_mouth[1:-1, :-2] | lips_or_mouth[1:-1, 2:])
  assert np.all(ids[ring & ~lips_or_mouth] == P.SKIN)
  assert np.all(np.isin(ids[np.roll(mouth, 1, 0) | np.roll(mouth, -1, 0)],
                        (P.MOUTH, P.LIPS)))
  assert ids[70, 88] == ids[70, 112] == P.EYES
  assert ids[61, 88] == ids[61, 112] == P.BROWS
  assert ids[80, 100] == P.NOSE
  assert ids[80, 78] == P.SKIN


def test_person_split_around_the_face():
  lms, person = _face()
  ids = P.parse_frame(lms, person)
  face = np.isin(ids, (P.SKIN, P.BROWS, P.EYES, P.NOSE, P.MOUTH, P.LIPS))
  # Neither person nor face: background, and only there.
  assert np.all(ids[(person < 0.5) & ~face] == P.BACKGROUND)
  assert np.all(face | (person >= 0.5) | (ids == P.BACKGROUND))
  assert np.all((ids != P.BACKGROUND) == (face | (person >= 0.5)))
  assert ids[0, 0] == ids[140, 10] == P.BACKGROUND
  assert ids[22, 100] == P.HAIR  # above the (raised) forehead
  assert ids[75, 62] == ids[75, 138] == P.EARS  # beside the eyes' level
  assert ids[50, 64] == P.HAIR  # beside the temples, above the ears
  assert ids[125, 100] == P.NECK  # under the chin
  assert ids[190, 20] == ids[190, 100] == P.TORSO
  assert ids[185, 100] == P.TORSO  # below the neck's end
  # The face is drawn whatever the person mask says.
  no_person = P.parse_frame(lms, np.zeros_like(person))
  assert np.array_equal(no_person != P.BACKGROUND, face)


def test_closed_lips_have_no_mouth_interior():
  lms, person = _face(mouth_gap=0.0)
  ids = P.parse_frame(lms, person)
  assert not np.any(ids == P.MOUTH)
  assert ids[103, 100] == P.LIPS


def test_rolled_head_keeps_hair_above_and_ears_beside():
  lms, person = _face()
  angle = np.radians(25)
  rot = np.array([[np.cos(angle), -np.sin(angle)],
                  [np.sin(angle), np.cos(angle)]])
  centre = np.array([100.0, 80.0])
  rolled = lms.copy()
  rolled[:, :2] = (lms[:, :2] - centre) @ rot.T + centre
  # A person mask large enough for any roll.
  ids = P.parse_frame(rolled, np.ones_like(person))
  up = rot @ np.array([0.0, -1.0])  # the face's up in the image
  side = rot @ np.array([1.0, 0.0])
  def at(along_up, along_side):
    x, y = centre + along_up * up + along_side * side
    return ids[int(round(y)), int(round(x))]
  assert at(58, 0) == P.HAIR
  assert at(5, 34) == at(5, -34) == P.EARS
  assert at(-42, 0) == P.NECK


def test_rejects_bad_input():
  lms, person = _face()
  with pytest.raises(ValueError, match='landmarks'):
    P.parse_frame(lms[:100], person)
  with pytest.raises(ValueError, match='person'):
    P.parse_frame(lms, person[None])
  bad = lms.copy()
  bad[10, 0] = np.nan
  with pytest.raises(ValueError, match='finite'):
    P.parse_frame(bad, person)


def test_parsing_does_not_import_mediapipe():
  code = ('import sys; sys.modules["mediapipe"] = None; import numpy as np; '
          'from ssp_nerf_jax.preprocess import parsing as p; '
          'lms = np.random.default_rng(0).uniform(20, 40, (478, 2)); '
          'print(p.parse_frame(lms, np.ones((64, 64), np.float32)).shape)')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                       text=True, check=True)
  assert out.stdout.strip() == '(64, 64)'
