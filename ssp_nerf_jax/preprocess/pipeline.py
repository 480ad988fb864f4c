"""Talking-head video -> AD-NeRF/SSP-NeRF processed folder.

Written into a hidden sibling folder that is renamed to `out` when complete.
"""
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from typing import Optional

from absl import logging
import cv2
import numpy as np
import soundfile
import tqdm

from ssp_nerf_jax.data import parsing_schemes
from ssp_nerf_jax.data import portrait_dataset
from ssp_nerf_jax.preprocess import background as background_lib
from ssp_nerf_jax.preprocess import crop as crop_lib
from ssp_nerf_jax.preprocess import decode
from ssp_nerf_jax.preprocess import landmarks as landmarks_lib
from ssp_nerf_jax.preprocess import parsing as parsing_lib
from ssp_nerf_jax.preprocess import pose_fit
from ssp_nerf_jax.preprocess import skin_tracks
from ssp_nerf_jax.runtime import errors
from ssp_nerf_jax.synthetic import generator

FPS = 25.0
SAMPLE_RATE = 16_000
DEFAULT_SIZE = 512
# Longer side of the face tracking pass (the detector downsamples anyway).
TRACK_SIDE = 640
# Longest face loss, in seconds (detector blinks, a hand); longer is an error
# since its poses would be guesses.
MAX_GAP_S = 0.5
# A second face counts when its box is at least this share of the main
# face's area, in at least SEVERAL_FACES_FRACTION of the frames.
SECOND_FACE_AREA = 0.25
SEVERAL_FACES_FRACTION = 0.1
# Frames sampled for the background plate.
BACKGROUND_SAMPLES = 48
# Warn when more of the plate than this was never seen and is inpainted.
UNSEEN_WARNING = 0.05
JPEG_QUALITY = 95
INFO_FILE = 'preprocess.json'
# Part of `cached_folder`'s key: bump it when a processed folder's contents
# change, so that cached folders are made again.
FOLDER_VERSION = 3
LANDMARKS_FILE = 'landmarks.npy'
TRANSFORMS = {'train': 'transforms_train.json', 'val': 'transforms_val.json'}


@dataclasses.dataclass
class Summary:
  """What a run did, printed as one line."""
  out: str
  num_frames: int
  source_fps: float
  crop: tuple[int, int, int]
  size: int
  focal: float
  rotation_range_deg: tuple[float, float, float]
  seconds: float

  def line(self) -> str:
    x, y, side = self.crop
    yaw, pitch, roll = self.rotation_range_deg
    return (f'{self.out}: {self.num_frames} frames ({self.source_fps:.2f} -> '
            f'{FPS:g} fps), crop {side}x{side} px at ({x}, {y}) -> '
            f'{self.size} px, focal {self.focal:.0f} px, head rotation range '
            f'yaw {yaw:.1f} pitch {pitch:.1f} roll {roll:.1f} deg, '
            f'{self.seconds:.1f} s')


def file_digest(path: str) -> str:
  """sha256 of a file's bytes (the cache key of a preprocessed video)."""
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def _gaps(found: np.ndarray):
  """(start, length) of each run of False in bool [N]."""
  runs, start = [], None
  for i, ok in enumerate(list(found) + [True]):
    if not ok and start is None:
      start = i
    elif ok and start is not None:
      runs.append((start, i - start))
      start = None
  return runs


def check_gaps(found: np.ndarray, path: str, what: str) -> None:
  """UserError if no frame has a face or the face is lost too long."""
  if not found.any():
    raise errors.UserError(
        f'{path}: no face found in any frame; preprocessing needs a '
        'video of one person facing the camera')
  for start, length in _gaps(found):
    if length / FPS > MAX_GAP_S:
      raise errors.UserError(
          f'{path}: {what} lost for {length / FPS:.2f} s from '
          f'{start / FPS:.2f} s (at most {MAX_GAP_S:g} s); cut that part '
          'out of the video (e.g. ffmpeg -ss/-to) and run again')


def track_faces(info: decode.VideoInfo):
  """(boxes float [N, 4] source pixels, NaN if none; found bool [N]).

  Raises UserError for several faces in many frames.
  """
  scale = min(1.0, TRACK_SIDE / max(info.width, info.height))
  boxes = np.full((info.num_frames, 4), np.nan)
  several = 0
  frames = decode.read_frames(info.path, max_side=TRACK_SIDE)
  with landmarks_lib.FaceDetector() as detector:
    for i, frame in enumerate(tqdm.tqdm(frames, total=info.num_frames,
                                        desc='track faces', unit='frame')):
      found = detector(frame)
      if not len(found):
        continue
      areas = found[:, 2] * found[:, 3]
      order = np.argsort(-areas)
      boxes[i] = found[order[0], :4] / scale
      if len(found) > 1 and areas[order[1]] >= SECOND_FACE_AREA * areas[
          order[0]]:
        several += 1
  if several > SEVERAL_FACES_FRACTION * info.num_frames:
    raise errors.UserError(
        f'{info.path}: several faces in {several} of {info.num_frames} '
        'frames; crop the video to one speaker and run again')
  found = ~np.isnan(boxes[:, 0])
  check_gaps(found, info.path, 'the face')
  return boxes, found


def fill_gaps(lms: np.ndarray, found: np.ndarray) -> np.ndarray:
  """Landmarks [N, 478, 3] with missing frames interpolated in time."""
  if found.all():
    return lms
  index = np.flatnonzero(found)
  flat = lms[found].reshape(len(index), -1)
  filled = np.stack([np.interp(np.arange(len(lms)), index, flat[:, k])
                     for k in range(flat.shape[1])], axis=1)
  return filled.reshape(lms.shape).astype(lms.dtype)


def colour_parsing(ids: np.ndarray) -> np.ndarray:
  """uint8 [H, W, 3] SSP-NeRF colours of class ids [H, W]."""
  return parsing_schemes.SCHEMES['ssp'].colors[ids]


def write_rgb(path: str, rgb: np.ndarray, jpeg: bool) -> None:
  params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if jpeg else [
      cv2.IMWRITE_PNG_COMPRESSION, 1]
  if not cv2.imwrite(path, np.ascontiguousarray(rgb[..., ::-1]), params):
    raise errors.UserError(f'cannot write {path}')


def process_frames(info: decode.VideoInfo, crop, size: int, folder: str):
  """Stage 2: frames, landmarks, person masks and parsing, written as they
  come.  Returns (landmarks [N, 478, 3], face rects int32 [N, 4],
  background samples, their person masks, skin_tracks.SkinTracks)."""
  n = info.num_frames
  lms = np.zeros((n, landmarks_lib.NUM_LANDMARKS, 3), np.float32)
  rects = np.zeros((n, 4), np.int32)
  found = np.zeros(n, bool)
  sample_ids = set(np.linspace(0, n - 1, min(n, BACKGROUND_SAMPLES)).round()
                   .astype(int).tolist())
  samples, sample_persons, pending = [], [], {}
  os.makedirs(os.path.join(folder, 'ori_imgs'))
  os.makedirs(os.path.join(folder, 'parsing'))
  frames = decode.read_frames(info.path, crop=crop, size=size)
  tracker = skin_tracks.SkinTracker()
  with landmarks_lib.FaceMesh(tracking=True) as mesh, \
      landmarks_lib.PersonSegmenter() as segmenter:
    for i, frame in enumerate(tqdm.tqdm(frames, total=n, desc='frames',
                                        unit='frame')):
      write_rgb(os.path.join(folder, 'ori_imgs', f'{i}.jpg'), frame, True)
      person = segmenter(frame)
      points = mesh(frame)
      tracker.update(frame, points)
      if i in sample_ids:
        samples.append(frame)
        sample_persons.append(person)
      if points is None:
        pending[i] = person  # parsed once neighbours give its landmarks
        continue
      lms[i], found[i] = points, True
      rects[i] = write_parsing(folder, i, points, person)
  check_gaps(found, info.path, 'the face mesh')
  lms = fill_gaps(lms, found)
  for i, person in pending.items():
    rects[i] = write_parsing(folder, i, lms[i], person)
  return (lms, rects, np.stack(samples), np.stack(sample_persons),
          tracker.tracks())


def write_parsing(folder: str, i: int, points: np.ndarray,
                  person: np.ndarray) -> np.ndarray:
  """Writes parsing/<i>.png; returns the head classes' box int32 [4]."""
  ids = parsing_lib.parse_frame(points, person)
  write_rgb(os.path.join(folder, 'parsing', f'{i}.png'), colour_parsing(ids),
            False)
  return generator.face_rects(ids[None])[0]


def rotation_range(c2w: np.ndarray) -> tuple[float, float, float]:
  """Peak-to-peak head yaw, pitch, roll in degrees over the clip."""
  from scipy.spatial import transform  # pylint: disable=g-import-not-at-top
  rots = transform.Rotation.from_matrix(c2w[:, :3, :3])
  rel = (rots.mean().inv() * rots).as_euler('YXZ', degrees=True)
  return tuple(float(v) for v in np.ptp(rel, axis=0))


def principal_point(info: decode.VideoInfo, crop, size: int):
  """(cx, cy) of the output frames: the source centre, cropped and scaled."""
  x, y, side = crop
  scale = size / side
  return ((info.width / 2 - x) * scale, (info.height / 2 - y) * scale)


def prior_focal(info: decode.VideoInfo, crop, size: int) -> float:
  """Prior focal in output pixels: FOCAL_START x the source's longer side,
  scaled like the crop (the field of view is the source camera's)."""
  return pose_fit.FOCAL_START * max(info.width, info.height) * size / crop[2]


def mouth_open_unit(lms: np.ndarray) -> np.ndarray:
  """[N] mouth opening in [0, 1], over its clip 99th percentile: the range
  of the synthetic ground truth, so that both compare."""
  opening = landmarks_lib.mouth_opening(lms)
  widest = max(float(np.percentile(opening, 99)), 1e-6)
  return np.clip(opening / widest, 0.0, 1.0)


def write_transforms(folder: str, fit: pose_fit.PoseFit, center,
                     rects: np.ndarray, lms: np.ndarray) -> None:
  """transforms_train/val.json, AD-NeRF's split (first 10/11 train), with
  each frame's eye openness and mouth opening measured from `lms`."""
  n = len(fit.c2w)
  num_train, _ = portrait_dataset.split_sizes(n)
  eyes = landmarks_lib.eye_openness(lms)
  mouth = mouth_open_unit(lms)
  frames = [{'img_id': i, 'aud_id': i,
             'transform_matrix': fit.c2w[i].tolist(),
             'face_rect': rects[i].tolist(),
             'eye_openness': float(eyes[i]),
             'mouth_open': float(mouth[i])} for i in range(n)]
  for split, chosen in (('train', frames[:num_train]),
                        ('val', frames[num_train:])):
    with open(os.path.join(folder, TRANSFORMS[split]), 'w') as f:
      json.dump({'focal_len': fit.focal, 'cx': center[0], 'cy': center[1],
                 'frames': chosen}, f)


def prepare_out(out: str) -> str:
  """A hidden temporary sibling of `out`; UserError if `out` is taken."""
  out = os.path.abspath(out)
  if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
    raise errors.UserError(f'--out {out} already exists and is not an empty '
                           'folder; choose a new folder or delete it')
  parent = os.path.dirname(out)
  errors.ensure_writable_dir(parent, '--out parent folder')
  return tempfile.mkdtemp(prefix=f'.{os.path.basename(out)}.partial-',
                          dir=parent)


def preprocess_video(video: str, out: str, size: int = DEFAULT_SIZE,
                     smoothing_sigma: float = 2.0,
                     digest: Optional[str] = None) -> Summary:
  """Writes the processed folder of `video` to `out` (absent or empty).

  Stages: face track and one crop; per frame landmarks, skin tracks, person
  mask and parsing; poses; background plate, audio, transforms.
  `digest` is the video's `file_digest` if already computed.

  Raises:
    errors.UserError: bad video or output folder (one line).
  """
  tick = time.perf_counter()
  if int(size) != size or size < portrait_dataset.MIN_SIZE:
    raise errors.UserError(f'--size must be an integer >= '
                           f'{portrait_dataset.MIN_SIZE}, got {size}')
  info = decode.probe_video(video, FPS)
  audio = decode.read_audio(video, info.num_frames, FPS, SAMPLE_RATE)
  tmp = prepare_out(out)
  try:
    boxes, found = track_faces(info)
    crop = crop_lib.square_crop(boxes[found], (info.height, info.width))
    lms, rects, samples, persons, tracks = process_frames(info, crop, size,
                                                          tmp)
    print('fitting head poses ...', flush=True)
    center = principal_point(info, crop, size)
    fit = pose_fit.fit_poses(lms, (size, size), smoothing_sigma, center,
                             tracks, prior_focal(info, crop, size))
    plate, unseen = background_lib.plate(samples, persons)
    if unseen > UNSEEN_WARNING:
      logging.warning(
          '%.0f %% of the background was never seen (covered by the '
          'person in every sampled frame) and is inpainted', 100 * unseen)
    write_rgb(os.path.join(tmp, 'bc.png'), plate, False)
    soundfile.write(os.path.join(tmp, 'aud.wav'), audio, SAMPLE_RATE,
                    subtype='PCM_16')
    np.save(os.path.join(tmp, LANDMARKS_FILE), lms)
    write_transforms(tmp, fit, center, rects, lms)
    summary = Summary(out=os.path.abspath(out), num_frames=info.num_frames,
                      source_fps=info.source_fps, crop=crop, size=size,
                      focal=fit.focal, rotation_range_deg=rotation_range(
                          fit.c2w), seconds=0.0)
    summary.seconds = time.perf_counter() - tick
    write_info(tmp, video, digest or file_digest(video), info, summary, fit,
               unseen)
    if os.path.isdir(out):
      os.rmdir(out)  # empty (checked by prepare_out)
    os.rename(tmp, out)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return summary


def write_info(folder: str, video: str, digest: str, info: decode.VideoInfo,
               summary: Summary, fit: pose_fit.PoseFit,
               unseen: float) -> None:
  """preprocess.json: source, crop box (source pixels) and scale, so that
  renders can be pasted back into the source, and the fit's results."""
  x, y, side = summary.crop
  payload = {
      'source': os.path.abspath(video),
      'source_sha256': digest,
      'source_size': [info.width, info.height],
      'source_fps': info.source_fps,
      'source_start_s': info.start_s,
      'fps': FPS,
      'num_frames': summary.num_frames,
      # Output pixel (u, v) = ((x_src - x) * scale, (y_src - y) * scale).
      'crop': {'x': x, 'y': y, 'side': side},
      'scale': summary.size / side,
      'size': summary.size,
      'focal': fit.focal,
      'reprojection_rms_px': fit.rms_px,
      'rotation_range_deg': dict(zip(('yaw', 'pitch', 'roll'),
                                     summary.rotation_range_deg)),
      'mean_camera_distance': float(np.mean(np.linalg.norm(
          fit.c2w[:, :3, 3], axis=-1))),
      'background_unseen_fraction': unseen,
      'landmarks': f'{LANDMARKS_FILE}: float32 [N, 478, 3] mediapipe face '
                   'mesh (x, y pixels of the output frames, relative z)',
      'seconds': summary.seconds,
  }
  with open(os.path.join(folder, INFO_FILE), 'w') as f:
    json.dump(payload, f, indent=2)


def cached_folder(video: str, cache_root: str,
                  size: int = DEFAULT_SIZE) -> str:
  """The processed folder of `video` under `cache_root`, made on first use;
  keyed by the video's content hash, the size and FOLDER_VERSION."""
  if not os.path.isfile(video):
    raise errors.UserError(f'config.data.video {video}: no such file')
  digest = file_digest(video)
  key = f'video-{digest[:16]}-{size}px-v{FOLDER_VERSION}'
  folder = os.path.join(cache_root, key)
  if os.path.isfile(os.path.join(folder, INFO_FILE)):
    return folder
  errors.ensure_writable_dir(cache_root, 'data_dir')
  logging.info('Preprocessing %s into %s', video, folder)
  print(preprocess_video(video, folder, size, digest=digest).line(),
        flush=True)
  return folder
