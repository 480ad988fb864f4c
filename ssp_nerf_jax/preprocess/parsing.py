"""SSP-NeRF's 11-class parsing drawn from face-mesh landmarks and a person mask
(geometry, since no installable parsing network ships its weights)."""
from typing import Dict, Iterable, List, Tuple

import cv2
import numpy as np

(BACKGROUND, SKIN, BROWS, EYES, EARS, NOSE, MOUTH, LIPS, NECK, TORSO,
 HAIR) = range(11)
NUM_CLASSES = 11

# Ordered loops (`edge_loops`) of mediapipe's FACEMESH_* edge sets.
FACE_OVAL = (10, 109, 67, 103, 54, 21, 162, 127, 234, 93, 132, 58, 172, 136,
             150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361,
             323, 454, 356, 389, 251, 284, 332, 297, 338)
LIPS_OUTER = (0, 37, 39, 40, 185, 61, 146, 91, 181, 84, 17, 314, 405, 321,
              375, 291, 409, 270, 269, 267)
LIPS_INNER = (13, 82, 81, 80, 191, 78, 95, 88, 178, 87, 14, 317, 402, 318,
              324, 308, 415, 310, 311, 312)
RIGHT_EYE = (7, 33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153,
             145, 144, 163)
LEFT_EYE = (249, 263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380,
            374, 373, 390)
# Brows: the lower edge path, then the upper one reversed.
RIGHT_BROW = (46, 53, 52, 65, 55, 107, 66, 105, 63, 70)
LEFT_BROW = (276, 283, 282, 295, 285, 336, 296, 334, 293, 300)
# FACEMESH_NOSE is a tree, not a loop: nasion (168), down the left bridge,
# round both wings via the subnasale (2), up the right bridge.
NOSE_OUTLINE = (168, 417, 351, 419, 248, 281, 275, 440, 344, 278, 294, 327,
                326, 2, 97, 98, 64, 48, 115, 220, 45, 51, 3, 196, 122, 193)

RIGHT_EYE_CORNERS = (33, 133)
LEFT_EYE_CORNERS = (263, 362)
NOSE_BASE = 2
CHIN = 152
MOUTH_CORNERS = (78, 308)
JAW_POINTS = (132, 361)

# Lengths in interocular distances (iod) unless said otherwise.
PERSON_THRESHOLD = 0.5
EAR_WIDTH = 0.35
EAR_TOP = 0.6  # ears start this fraction of the eye-to-brow height above eyes
EAR_BOTTOM = 0.0  # ... and end this fraction of nose-to-chin below the nose
NECK_HALF_WIDTH = 0.7  # times the half jaw width
NECK_DEPTH = 0.45  # neck ends this many eye-to-chin heights below the chin
FOREHEAD_RAISE = 0.35  # times the eye-to-oval-top height
HAIR_REACH = 2.0
MIN_MOUTH_GAP = 1.0  # pixels: thinner inner-lip polygons are not drawn


def edge_loops(edges: Iterable[Tuple[int, int]]) -> List[Tuple[int, ...]]:
  """Ordered id chains of an undirected edge set: loops (first id not repeated)
  or open paths, deterministic; ValueError for a vertex with 3+ neighbours."""
  neighbours: Dict[int, List[int]] = {}
  for a, b in edges:
    if a == b:
      continue
    for p, q in ((a, b), (b, a)):
      if q not in neighbours.setdefault(p, []):
        neighbours[p].append(q)
  branching = sorted(p for p, n in neighbours.items() if len(n) > 2)
  if branching:
    raise ValueError(f'vertices with more than two neighbours: {branching}')
  seen = set()
  chains = []
  for root in sorted(neighbours):
    if root in seen:
      continue
    component, stack = {root}, [root]
    while stack:
      for q in neighbours[stack.pop()]:
        if q not in component:
          component.add(q)
          stack.append(q)
    ends = sorted(p for p in component if len(neighbours[p]) == 1)
    start = ends[0] if ends else root
    chain, prev, cur = [start], None, start
    while True:
      nexts = [q for q in sorted(neighbours[cur]) if q != prev and q != start]
      if not nexts:
        break
      prev, cur = cur, nexts[0]
      chain.append(cur)
    seen.update(component)
    chains.append(tuple(chain))
  return chains


def fill_polygon(mask: np.ndarray, points: np.ndarray, value: int = 1,
                 shift: int = 4) -> np.ndarray:
  """Fills polygon [P, 2] (x, y pixels, centres at integers) into `mask`."""
  fixed = np.round(np.asarray(points, np.float64)[:, :2] * (1 << shift))
  cv2.fillPoly(mask, [fixed.astype(np.int32)], int(value),
               lineType=cv2.LINE_8, shift=shift)
  return mask


def polygon_mask(shape: Tuple[int, int], points: np.ndarray) -> np.ndarray:
  """bool [H, W]: pixels inside (or on) the polygon."""
  return fill_polygon(np.zeros(shape, np.uint8), points).astype(bool)


def polygon_area(points: np.ndarray) -> float:
  """Absolute shoelace area of a polygon [P, 2] in square pixels."""
  pts = np.asarray(points, np.float64)
  x, y = pts[:, 0], pts[:, 1]
  return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def face_frame(lms: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray,
                                         float]:
  """(origin [2] between the eyes, unit x_axis [2] to the subject's left,
  unit y_axis [2] down the face, interocular distance)."""
  right = lms[list(RIGHT_EYE_CORNERS), :2].mean(axis=0)
  left = lms[list(LEFT_EYE_CORNERS), :2].mean(axis=0)
  span = left - right
  dist = float(np.linalg.norm(span))
  if not dist > 0:
    raise ValueError('degenerate landmarks: the two eyes coincide')
  x_axis = span / dist
  y_axis = np.array([-x_axis[1], x_axis[0]])
  return (right + left) / 2, x_axis, y_axis, dist


def face_outline(lms: np.ndarray) -> np.ndarray:
  """[36, 2] face oval raised above the eyes (it stops below the hairline)."""
  origin, _, y_axis, _ = face_frame(lms)
  oval = np.asarray(lms, np.float64)[list(FACE_OVAL), :2]
  v = (oval - origin) @ y_axis
  return oval + FOREHEAD_RAISE * np.minimum(v, 0.0)[:, None] * y_axis


def draw_face(lms: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
  """uint8 [H, W]: the face classes (skin, brows, eyes, nose, lips, mouth)
  drawn from landmarks [>= 468, 2+] in pixels; 0 elsewhere."""
  lms = np.asarray(lms, np.float64)[:, :2]
  out = np.zeros(shape, np.uint8)
  fill_polygon(out, face_outline(lms), SKIN)
  for loop, cls in ((RIGHT_BROW, BROWS), (LEFT_BROW, BROWS),
                    (RIGHT_EYE, EYES), (LEFT_EYE, EYES),
                    (NOSE_OUTLINE, NOSE), (LIPS_OUTER, LIPS)):
    fill_polygon(out, lms[list(loop)], cls)
  # Closed lips still rasterise to a line: need a mean gap of MIN_MOUTH_GAP.
  inner = lms[list(LIPS_INNER)]
  width = np.linalg.norm(lms[MOUTH_CORNERS[1]] - lms[MOUTH_CORNERS[0]])
  if polygon_area(inner) >= MIN_MOUTH_GAP * max(width, 1.0):
    fill_polygon(out, inner, MOUTH)
  return out


def split_person(face_ids: np.ndarray, lms: np.ndarray,
                 is_person: np.ndarray) -> np.ndarray:
  """A new `draw_face` map [H, W] with ears, hair, neck and torso added.

  Person pixels off the face, by level along the face: ears in half ellipses
  beside the oval, hair above them near the head, neck in a column under the
  jaw, torso the rest."""
  lms = np.asarray(lms, np.float64)[:, :2]
  height, width = face_ids.shape
  face = face_ids != BACKGROUND
  origin, _, y_axis, iod = face_frame(lms)

  def level(ids):
    return float(np.mean((lms[list(ids)] - origin) @ y_axis))

  v_brow = level(RIGHT_BROW + LEFT_BROW)
  v_nose = level((NOSE_BASE,))
  v_mouth = level(LIPS_OUTER)
  v_chin = level((CHIN,))
  xs = np.arange(width, dtype=np.float64)[None, :]
  ys = np.arange(height, dtype=np.float64)[:, None]
  v = (xs - origin[0]) * y_axis[0] + (ys - origin[1]) * y_axis[1]
  dist = cv2.distanceTransform((~face).astype(np.uint8), cv2.DIST_L2, 3)

  rest = is_person & ~face
  ear_top = EAR_TOP * v_brow
  ear_bottom = v_nose + EAR_BOTTOM * (v_chin - v_nose)
  ear_mid = (ear_top + ear_bottom) / 2
  ear_half = max((ear_bottom - ear_top) / 2, 1.0)
  ears = rest & ((dist / (EAR_WIDTH * iod))**2 +
                 ((v - ear_mid) / ear_half)**2 <= 1.0)
  hair = rest & ~ears & (v < ear_bottom) & (dist <= HAIR_REACH * iod)
  jaw = lms[list(JAW_POINTS)]
  half_width = NECK_HALF_WIDTH * np.linalg.norm(jaw[1] - jaw[0]) / 2
  bottom = lms[CHIN, 1] + NECK_DEPTH * v_chin
  neck = (rest & ~ears & ~hair & (v > v_mouth) &
          (np.abs(xs - jaw[:, 0].mean()) <= half_width) & (ys <= bottom))

  out = face_ids.copy()
  out[rest] = TORSO
  out[neck] = NECK
  out[hair] = HAIR
  out[ears] = EARS
  return out


def parse_frame(landmarks: np.ndarray, person: np.ndarray) -> np.ndarray:
  """uint8 [H, W] class ids from landmarks float [478, 2 or 3] in pixels and
  person probabilities float32 [H, W] (landmarks.PersonSegmenter)."""
  lms = np.asarray(landmarks, np.float64)
  person = np.asarray(person)
  if lms.ndim != 2 or lms.shape[0] < 468 or lms.shape[1] not in (2, 3):
    raise ValueError(f'expected landmarks [478, 2 or 3], got {lms.shape}')
  if person.ndim != 2:
    raise ValueError(f'expected person [H, W], got {person.shape}')
  if not np.isfinite(lms[:468, :2]).all():
    raise ValueError('landmarks are not finite')
  return split_person(draw_face(lms, person.shape), lms,
                      person >= PERSON_THRESHOLD)
