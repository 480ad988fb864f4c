"""The rendered crop pasted back into the source video's frames.

A video-trained workdir renders the square crop that preprocessing cut out
(`preprocess.json`: the box (x, y, side) in source pixels).  Here each
render is resized to the box, blended in with weights that fall to zero
towards the box sides inside the frame, and kept only where the render sees
the person, so that background, body and the frame around the crop are the
source's own pixels.  Source frames stream from the video in any order
(forward then backward for long audio) without holding the clip in memory.
"""
import collections
import json
import os
import tempfile
from typing import Iterator, Optional, Sequence

from absl import logging
import cv2
import numpy as np

from ssp_nerf_jax.data import input_pipeline
from ssp_nerf_jax.preprocess import decode
from ssp_nerf_jax.preprocess import pipeline
from ssp_nerf_jax.rendering import rigid
from ssp_nerf_jax.runtime import errors

# Width of the blend at a box side inside the frame, over the box side.
FEATHER_SHARE = 1 / 16
# Rendered class 0 is the background: there the source shows.
BACKGROUND_CLASS = 0

Source = collections.namedtuple('Source', ['path', 'box', 'width', 'height',
                                           'fps'])
Source.__doc__ = """A workdir's source video: its path, the crop box
(x, y, side) in its pixels, its frame size and the frame rate (as
`decode.read_frames` yields frames, whose index is the dataset's frame_id)."""


def feather_weights(box: Sequence[int], frame_hw: Sequence[int],
                    border: float) -> np.ndarray:
  """float32 [side, side] weights of the render over the box.

  1 inside, falling linearly to 0 over `border` pixels at each box side that
  has source pixels beyond it; a side on or past the frame edge has nothing
  to blend with and stays 1 (so does every side when border < 1).
  """
  x, y, side = (int(v) for v in box)
  height, width = frame_hw
  ones = np.ones(side, np.float32)
  if border < 1:
    return np.ones((side, side), np.float32)
  ramp = np.minimum((np.arange(side, dtype=np.float32) + 0.5) / border, 1.0)
  cols = np.minimum(ramp if x > 0 else ones,
                    ramp[::-1] if x + side < width else ones)
  rows = np.minimum(ramp if y > 0 else ones,
                    ramp[::-1] if y + side < height else ones)
  return np.minimum(rows[:, None], cols[None, :])


def resize(image: np.ndarray, side: int, interpolation=None) -> np.ndarray:
  """[h, w, ...] -> [side, side, ...]: area-averaged when shrinking, linear
  when enlarging (no ringing)."""
  if image.shape[:2] == (side, side):
    return image
  if interpolation is None:
    interpolation = (cv2.INTER_AREA if side < image.shape[0]
                     else cv2.INTER_LINEAR)
  return cv2.resize(image, (side, side), interpolation=interpolation)


def person_alpha(class_id: np.ndarray, side: int) -> np.ndarray:
  """float32 [side, side] in [0, 1]: the rendered parsing's non-background
  share, class ids [h, w] resized linearly and, when enlarged, blurred by
  half a render pixel (a soft edge instead of the render's staircase)."""
  person = (np.asarray(class_id) != BACKGROUND_CLASS).astype(np.float32)
  alpha = resize(person, side, cv2.INTER_LINEAR)
  scale = side / person.shape[0]
  if scale > 1:
    alpha = cv2.GaussianBlur(alpha, (0, 0), sigmaX=scale / 2)
  return np.clip(alpha, 0.0, 1.0)


def paste_crop(frame: np.ndarray, crop_rgb: np.ndarray, alpha: np.ndarray,
               box: Sequence[int]) -> np.ndarray:
  """uint8 [H, W, 3]: `frame` with crop_rgb uint8 [side, side, 3] blended in
  at box (x, y, side) by alpha float [side, side].

  The box may reach past the frame edge (that part is dropped); pixels
  outside it, or where alpha is 0, are the frame's exactly.
  """
  height, width = frame.shape[:2]
  x, y, side = (int(v) for v in box)
  x0, y0 = max(x, 0), max(y, 0)
  x1, y1 = min(x + side, width), min(y + side, height)
  out = np.array(frame, np.uint8, copy=True)
  if x0 >= x1 or y0 >= y1:
    return out
  inside = (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))
  under = out[y0:y1, x0:x1].astype(np.float32)
  over = crop_rgb[inside].astype(np.float32)
  weight = alpha[inside][..., None].astype(np.float32)
  out[y0:y1, x0:x1] = np.round(under + weight * (over - under)).astype(
      np.uint8)
  return out


def blend_alpha(class_id: np.ndarray, box: Sequence[int],
                frame_hw: Sequence[int]) -> np.ndarray:
  """float32 [side, side]: the render's weight over box (x, y, side), its
  person mask (from class ids [h, w]) times the feather at the box sides."""
  side = int(box[2])
  return person_alpha(class_id, side) * feather_weights(
      box, frame_hw, FEATHER_SHARE * side)


def composite(frame: np.ndarray, rgb: np.ndarray, class_id: np.ndarray,
              box: Sequence[int]) -> np.ndarray:
  """uint8 [H, W, 3]: the render rgb uint8 [h, w, 3] with its parsing
  class_id [h, w] pasted into the source frame [H, W, 3] at its box."""
  return paste_crop(frame, resize(np.asarray(rgb, np.uint8), int(box[2])),
                    blend_alpha(class_id, box, frame.shape[:2]), box)


def frames_in_order(path: str, frame_ids: Sequence[int],
                    fps: float) -> Iterator[np.ndarray]:
  """Yields the uint8 [H, W, 3] frames frame_ids[0], frame_ids[1], ... of
  the video (as `decode.read_frames` numbers them), decoding it once.

  A frame asked for again later is kept as a lossless PNG in a temporary
  folder, not in memory; the folder goes when the generator is closed.
  """
  frame_ids = [int(i) for i in frame_ids]
  last_use = {i: position for position, i in enumerate(frame_ids)}
  decoded = decode.read_frames(path, fps=fps)
  next_id = 0
  with tempfile.TemporaryDirectory(prefix='ssp_nerf_frames_') as spill:
    kept = lambda i: os.path.join(spill, f'{i}.png')
    try:
      for position, want in enumerate(frame_ids):
        if want < next_id:
          frame = cv2.imread(kept(want), cv2.IMREAD_COLOR)[..., ::-1]
        while want >= next_id:
          frame = next(decoded)
          if last_use.get(next_id, -1) > position:
            cv2.imwrite(kept(next_id), frame[..., ::-1],
                        [cv2.IMWRITE_PNG_COMPRESSION, 1])
          next_id += 1
        yield np.ascontiguousarray(frame)
    finally:
      decoded.close()


def track_frame_ids(trained, num_frames: int) -> np.ndarray:
  """int64 [num_frames]: the source frame of each frame of the training
  pose track as `job_inputs.pose_track` plays it (forward, then backward)."""
  ids = input_pipeline.load_feature(trained.builder, 'train', 'frame_id')
  return ids[rigid.ping_pong_indices(num_frames, len(ids))].astype(np.int64)


def read_info(trained) -> tuple[str, dict]:
  """(path, contents) of the preprocess.json of the workdir's dataset."""
  data = trained.config.data
  folder = data.path if data.builder_config == 'adnerf' else ''
  path = os.path.join(folder, pipeline.INFO_FILE)
  if not folder or not os.path.isfile(path):
    raise errors.UserError(
        f'full-frame output needs the {pipeline.INFO_FILE} that video '
        f'preprocessing writes (crop box, source video); the dataset folder '
        f'{folder or "(none: " + data.builder_config + ")"} has none')
  try:
    with open(path) as f:
      info = json.load(f)
    info['crop'] = tuple(int(info['crop'][k]) for k in ('x', 'y', 'side'))
    info['source_size'] = tuple(int(v) for v in info['source_size'])
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise errors.UserError(f'cannot read {path}: {type(e).__name__}: '
                           f'{e}') from None
  return path, info


def load_source(trained, source_video: Optional[str] = None) -> Source:
  """The workdir's source video, checked to be the preprocessed one.

  `source_video` names it when it moved from where preprocess.json says.
  Raises errors.UserError (one line) when it is missing or another video.
  """
  info_path, info = read_info(trained)
  path = source_video or info['source']
  if not os.path.isfile(path):
    if source_video:
      raise errors.UserError(f'--source_video {path}: no such file')
    raise errors.UserError(
        f'the source video {path} (from {info_path}) is not there: name '
        'where it is now with --source_video=PATH')
  if pipeline.file_digest(path) != info['source_sha256']:
    raise errors.UserError(
        f'{path} is not the video this workdir was trained on (its sha256 '
        f'differs from {info_path}); give that video with --source_video')
  width, height = info['source_size']
  return Source(path, info['crop'], width, height, float(info['fps']))


def find_source(trained, source_video: Optional[str],
                required: bool) -> Optional[Source]:
  """`load_source`, or None with a log line when not `required` and the
  workdir has no usable source video."""
  try:
    return load_source(trained, source_video)
  except errors.UserError as e:
    if required:
      raise
    logging.info('No full-frame output: %s', e)
    return None
