"""Processed-data folders of AD-NeRF, SSP-NeRF and RAD-NeRF: read + validate.

`read_folder` lists every problem in one FolderError; `load_*` give arrays."""
import collections
import dataclasses
import hashlib
import json
import os
from typing import Optional, Sequence

from absl import logging
import numpy as np
from PIL import Image
import soundfile

from ssp_nerf_jax.data import audio_features
from ssp_nerf_jax.data import parsing_schemes
from ssp_nerf_jax.rendering import rigid
from ssp_nerf_jax.runtime import errors

# Layout: transforms_{train,val}.json ({"focal_len", "cx", "cy", "frames":
# [{"img_id", "aud_id", "transform_matrix" (camera-to-head), optional
# "face_rect" [x, y, w, h], "mouth_open" in [0, 1]}]}), ori_imgs/<img_id>,
# parsing/<img_id>.png, bc.jpg|png, aud.wav or a [N, S <= 16, C] .npy.
SPLIT_FILES = {'train': 'transforms_train.json', 'val': 'transforms_val.json'}
IMAGE_EXTENSIONS = ('.jpg', '.png', '.jpeg')
PARSING_DIR = 'parsing'
BACKGROUND_NAME = 'bc'
WAV_FILE = 'aud.wav'
# Off-scheme pixels allowed per parsing map (antialiased edges); they snap.
MAX_OFF_SCHEME_FRACTION = 0.01
# aud_id may pass the features' end by this much (clamped, as in AD-NeRF):
# DeepSpeech and ffmpeg round the length by a frame or two.
MAX_CLAMPED_FRAMES = 3
_MAX_LINES_PER_KIND = 10


class FolderError(errors.DatasetError):
  """An unusable processed-data folder; one line per problem."""


class Problems:
  """Problem lines in the order found, a few per kind and then a count."""

  def __init__(self, root: str):
    self.root = root
    self._lines = []
    self._counts = collections.Counter()

  def add(self, kind: str, line: str) -> None:
    self._counts[kind] += 1
    if self._counts[kind] <= _MAX_LINES_PER_KIND:
      self._lines.append(line)

  def __bool__(self):
    return bool(self._counts)

  def raise_if_any(self) -> None:
    if not self:
      return
    lines = list(self._lines)
    for kind, count in self._counts.items():
      if count > _MAX_LINES_PER_KIND:
        lines.append(f'... and {count - _MAX_LINES_PER_KIND} more {kind} '
                     'problems')
    total = sum(self._counts.values())
    raise FolderError(
        f'{self.root} is not a usable AD-NeRF/SSP-NeRF/RAD-NeRF folder '
        f'({total} problem{"s" * (total != 1)}):\n' +
        '\n'.join(f'  {line}' for line in lines))


@dataclasses.dataclass
class FrameRecord:
  """One frame listed in a transforms json."""
  img_id: int
  aud_id: int
  c2w: np.ndarray  # float32 [4, 4]
  face_rect: Optional[np.ndarray]  # float64 [4] x, y, w, h, or None
  image_path: Optional[str] = None
  parsing_path: Optional[str] = None
  mouth_open: float = float('nan')
  eye_openness: float = float('nan')


@dataclasses.dataclass
class Folder:
  """A validated folder (source resolution)."""
  root: str
  splits: dict[str, list[FrameRecord]]
  focal: float
  cx: float
  cy: float
  height: int
  width: int
  background_path: str
  scheme: parsing_schemes.Scheme
  audio_path: str
  audio_shape: Optional[tuple[int, ...]]  # [N, S, C] of a .npy, None: wav
  wav_path: Optional[str]

  def frames(self) -> list[FrameRecord]:
    return [f for split in SPLIT_FILES for f in self.splits[split]]


def fingerprint_folder(root: str, audio_file: str = '') -> str:
  """Cheap hash of the transforms jsons and the audio file's size and mtime."""
  digest = hashlib.sha1()
  for name in SPLIT_FILES.values():
    path = os.path.join(root, name)
    if os.path.isfile(path):
      with open(path, 'rb') as f:
        digest.update(f.read())
    digest.update(b'\0')
  audio = os.path.join(root, audio_file or WAV_FILE)
  if os.path.isfile(audio):
    stat = os.stat(audio)
    digest.update(f'{stat.st_size}:{stat.st_mtime_ns}'.encode())
  return digest.hexdigest()


def find_image(directory: str, stem: str) -> Optional[str]:
  """`directory/stem.jpg|png|jpeg`, whichever exists first, else None."""
  for ext in IMAGE_EXTENSIONS:
    path = os.path.join(directory, stem + ext)
    if os.path.isfile(path):
      return path
  return None


def read_split(root: str, split: str, problems: Problems):
  """(intrinsics (f, cx, cy) or None, frame records) of one transforms json."""
  name = SPLIT_FILES[split]
  path = os.path.join(root, name)
  if not os.path.isfile(path):
    problems.add('missing file', f'{name}: missing')
    return None, []
  try:
    with open(path) as f:
      meta = json.load(f)  # NaN/Infinity load; reported below
    intrinsics = tuple(float(meta[k]) for k in ('focal_len', 'cx', 'cy'))
    frames = meta['frames']
  except (OSError, ValueError, KeyError, TypeError) as e:
    problems.add('json', f'{name}: cannot read ({type(e).__name__}: {e}); '
                 'needs focal_len, cx, cy and frames')
    return None, []
  if not (np.all(np.isfinite(intrinsics)) and intrinsics[0] > 0):
    problems.add('json', f'{name}: focal_len, cx, cy must be finite with '
                 f'focal_len > 0, got {intrinsics}')
  if not frames:
    problems.add('empty split', f'{name}: no frames (empty {split} split)')
  records, seen = [], set()
  for k, frame in enumerate(frames):
    record = read_frame(frame, f'{name}: frame {k}', problems)
    if record is None:
      continue
    if record.img_id in seen:
      problems.add('json', f'{name}: frame {k}: img_id {record.img_id} '
                   'listed twice')
    seen.add(record.img_id)
    records.append(record)
  check_transforms(records, name, problems)
  return intrinsics, records


def read_measure(frame, key: str, low: float, high: float, allowed: str,
                 where: str, problems: Problems) -> float:
  """A frame's optional measured value `key` in [low, high]; NaN when absent
  or bad (a bad one is also added to `problems`, as `allowed`)."""
  value = frame.get(key, float('nan'))
  if key in frame and (not isinstance(value, (int, float)) or
                       not low <= value <= high):
    problems.add('json', f'{where}: {key} must be a number {allowed}, got '
                 f'{value!r}')
    return float('nan')
  return float(value)


def read_frame(frame, where: str, problems: Problems):
  """A FrameRecord from one json frame, or None (problem recorded)."""
  try:
    img_id = int(frame['img_id'])
    aud_id = int(frame.get('aud_id', img_id))
    c2w = np.asarray(frame['transform_matrix'], np.float64)
  except (KeyError, TypeError, ValueError) as e:
    problems.add('json', f'{where}: needs img_id and transform_matrix '
                 f'({type(e).__name__}: {e})')
    return None
  if c2w.shape != (4, 4):
    problems.add('transform', f'{where}: transform_matrix must be 4x4, got '
                 f'shape {c2w.shape}')
    return None
  rect = frame.get('face_rect')
  if rect is not None:
    rect = np.asarray(rect, np.float64)
    if rect.shape != (4,) or not np.all(np.isfinite(rect)) or np.any(
        rect[2:] <= 0):
      problems.add('json', f'{where}: face_rect must be [x, y, w, h] with '
                   f'w, h > 0, got {frame.get("face_rect")}')
      rect = None
  mouth = read_measure(frame, 'mouth_open', 0.0, 1.0, 'in [0, 1]', where,
                       problems)
  eyes = read_measure(frame, 'eye_openness', 0.0, 10.0,
                      '>= 0 (lid gap over eye width)', where, problems)
  return FrameRecord(img_id, aud_id, c2w.astype(np.float32), rect,
                     mouth_open=float(mouth), eye_openness=float(eyes))


def check_transforms(records: Sequence[FrameRecord], name: str,
                     problems: Problems) -> None:
  """Records a problem for every non-finite or non-rigid transform_matrix."""
  c2w = np.stack([record.c2w for record in records]) if records else (
      np.zeros((0, 4, 4)))
  for index, reason in rigid.pose_problems(c2w):
    problems.add('transform', f'{name}: img_id {records[index].img_id}: '
                 f'transform_matrix {reason}')


def image_size(path: str, problems: Problems, label: str):
  """(height, width) from the file header, or None (problem recorded)."""
  try:
    with Image.open(path) as image:
      return image.height, image.width
  except (OSError, ValueError) as e:
    problems.add('unreadable', f'{label}: cannot read image ({e})')
    return None


def locate_frames(folder_root: str, images_dir: str,
                  splits: dict[str, list[FrameRecord]], problems: Problems):
  """Fills image/parsing paths; records missing files and folders."""
  dirs = {images_dir: os.path.join(folder_root, images_dir),
          PARSING_DIR: os.path.join(folder_root, PARSING_DIR)}
  present = {}
  for name, path in dirs.items():
    present[name] = os.path.isdir(path)
    if not present[name]:
      problems.add('missing file', f'{name}/: folder missing')
  for split, records in splits.items():
    for record in records:
      listed = f'listed in {SPLIT_FILES[split]}'
      if present[images_dir]:
        record.image_path = find_image(dirs[images_dir], str(record.img_id))
        if record.image_path is None:
          problems.add('absent frame', f'{images_dir}/{record.img_id}.jpg|png:'
                       f' {listed} but absent')
      if present[PARSING_DIR]:
        path = os.path.join(dirs[PARSING_DIR], f'{record.img_id}.png')
        if os.path.isfile(path):
          record.parsing_path = path
        else:
          problems.add('absent frame', f'{PARSING_DIR}/{record.img_id}.png: '
                       f'{listed} but absent')


def check_sizes(root: str, frames: Sequence[FrameRecord],
                background: Optional[str], problems: Problems):
  """The common (height, width); records files of another size."""
  sizes = {}
  for record in frames:
    for path in (record.image_path, record.parsing_path):
      if path:
        size = image_size(path, problems, os.path.relpath(path, root))
        if size:
          sizes[path] = size
  if background:
    size = image_size(background, problems, os.path.relpath(background, root))
    if size:
      sizes[background] = size
  if not sizes:
    return None
  common = collections.Counter(sizes.values()).most_common(1)[0][0]
  for path, size in sizes.items():
    if size != common:
      problems.add('size', f'{os.path.relpath(path, root)}: {size[1]}x'
                   f'{size[0]} px, unlike the other images ({common[1]}x'
                   f'{common[0]})')
  return common


def read_rgb(path: str) -> np.ndarray:
  """uint8 [H, W, 3] of an image file (grey/alpha/palette converted)."""
  with Image.open(path) as image:
    return np.asarray(image.convert('RGB'))


def check_parsing(root: str, frames: Sequence[FrameRecord],
                  problems: Problems) -> Optional[parsing_schemes.Scheme]:
  """Detects the scheme; records maps with too many off-scheme colours."""
  per_map = []
  total = collections.Counter()
  for record in frames:
    if record.parsing_path:
      try:
        counts = parsing_schemes.colour_counts(read_rgb(record.parsing_path))
      except (OSError, ValueError):
        continue  # check_sizes reports it
      per_map.append((record.parsing_path, counts))
      total.update(counts)
  if not per_map:
    return None
  scheme = parsing_schemes.detect_scheme(total)
  own = set(parsing_schemes.pack(scheme.colors).tolist())
  snapped_pixels, snapped_maps = 0, 0
  for path, counts in per_map:
    off = {c: n for c, n in counts.items() if c not in own}
    fraction = sum(off.values()) / sum(counts.values())
    if fraction > MAX_OFF_SCHEME_FRACTION:
      worst = max(off, key=off.get)
      example = ((worst >> 16) & 255, (worst >> 8) & 255, worst & 255)
      problems.add('parsing colour', (
          f'{os.path.relpath(path, root)}: {100 * fraction:.1f} % of pixels '
          f'have colours outside the {scheme.description} parsing scheme '
          f'(e.g. RGB {example}); expected only its class colours'))
    elif off:
      snapped_pixels += sum(off.values())
      snapped_maps += 1
  if snapped_maps:
    logging.warning(
        '%d pixels in %d parsing maps of %s have colours outside the %s '
        'scheme (at most %g %% per map); they are snapped to the nearest '
        'class colour.', snapped_pixels, snapped_maps, root,
        scheme.description, 100 * MAX_OFF_SCHEME_FRACTION)
  return scheme


def check_audio(root: str, audio_file: str, audio_dim: int,
                max_aud_id: int, problems: Problems):
  """(audio path, .npy shape or None) after checking it covers the frames.

  `audio_file` '' means aud.wav; a .npy's last axis must be `audio_dim`."""
  path = os.path.join(root, audio_file or WAV_FILE)
  name = audio_file or WAV_FILE
  if not os.path.isfile(path):
    problems.add('missing file', f'{name}: missing' + (
        '' if audio_file else ' (or set config.data.audio_file to a '
        'precomputed aud.npy / aud_ds.npy / aud_eo.npy / aud_hu.npy)'))
    return path, None
  shape = None
  if audio_file:
    try:
      features = np.load(path, mmap_mode='r', allow_pickle=False)
    except (OSError, ValueError) as e:
      problems.add('audio', f'{name}: cannot read ({e})')
      return path, None
    shape = tuple(features.shape)
    if (features.ndim != 3 or not
        1 <= shape[1] <= audio_features.WINDOW_STEPS):
      problems.add('audio', f'{name}: shape {shape}, expected [N, S, C] with '
                   f'S <= {audio_features.WINDOW_STEPS} (AD-NeRF [N, 16, 29],'
                   ' ER-NeRF HuBERT [N, 2, 1024])')
      return path, None
    if shape[2] != audio_dim:
      problems.add('audio', f'{name}: {shape[2]} features per step but '
                   f'config.data.audio_dim={audio_dim}; set '
                   f'--config.data.audio_dim={shape[2]}')
    if not np.all(np.isfinite(features)):
      problems.add('audio', f'{name}: contains non-finite values')
    available, unit = shape[0], 'feature frames'
  else:
    try:
      info = soundfile.info(path)
    except (RuntimeError, soundfile.LibsndfileError) as e:
      problems.add('audio', f'{name}: cannot read audio ({e})')
      return path, None
    available = audio_features.num_video_frames(
        int(info.duration * audio_features.SAMPLE_RATE))
    unit = f'video frames ({info.duration:.2f} s)'
  if max_aud_id >= available + MAX_CLAMPED_FRAMES:
    problems.add('audio', f'{name}: {available} {unit}, fewer than the frames'
                 f' listed (aud_id up to {max_aud_id})')
  elif max_aud_id >= available:
    logging.warning('%s: %d %s; frames with aud_id up to %d use the last '
                    'one (as AD-NeRF).', path, available, unit, max_aud_id)
  return path, shape


def read_folder(root: str, *, images_dir: str = 'ori_imgs',
                audio_file: str = '', audio_dim: int = 29) -> Folder:
  """The validated `Folder`; nothing is written.

  Raises FolderError listing every problem found, a line per file."""
  problems = Problems(root)
  if not os.path.isdir(root):
    problems.add('missing file', f'{root}: not a folder')
    problems.raise_if_any()
  splits, intrinsics = {}, {}
  for split in SPLIT_FILES:
    intrinsics[split], splits[split] = read_split(root, split, problems)
  known = [v for v in intrinsics.values() if v is not None]
  if len(known) == 2 and not np.allclose(known[0], known[1]):
    problems.add('json', f'{SPLIT_FILES["val"]}: focal_len, cx, cy '
                 f'{known[1]} differ from {SPLIT_FILES["train"]}\'s '
                 f'{known[0]}')
  locate_frames(root, images_dir, splits, problems)
  frames = [f for split in SPLIT_FILES for f in splits[split]]
  background = find_image(root, BACKGROUND_NAME)
  if background is None:
    problems.add('missing file', f'{BACKGROUND_NAME}.jpg|png: missing '
                 '(background plate)')
  size = check_sizes(root, frames, background, problems)
  scheme = check_parsing(root, frames, problems)
  max_aud_id = max((f.aud_id for f in frames), default=-1)
  audio_path, audio_shape = check_audio(root, audio_file, audio_dim,
                                        max_aud_id, problems)
  problems.raise_if_any()
  wav = os.path.join(root, WAV_FILE)
  return Folder(
      root=root, splits=splits, focal=known[0][0], cx=known[0][1],
      cy=known[0][2], height=size[0], width=size[1],
      background_path=background, scheme=scheme, audio_path=audio_path,
      audio_shape=audio_shape, wav_path=wav if os.path.isfile(wav) else None)


def target_size(height: int, width: int, resolution: int) -> tuple[int, int]:
  """(height, width) with the longer side `resolution` (0: unchanged)."""
  if not resolution:
    return height, width
  scale = resolution / max(height, width)
  return (max(1, int(round(height * scale))),
          max(1, int(round(width * scale))))


def scale_intrinsics(focal: float, cx: float, cy: float,
                     src_hw: tuple[int, int], dst_hw: tuple[int, int]):
  """(focal, cx, cy) for an image resized from src_hw to dst_hw.

  Pixel centres are at integers: u maps to (u + 0.5) * s - 0.5."""
  sy, sx = dst_hw[0] / src_hw[0], dst_hw[1] / src_hw[1]
  return (focal * (sx + sy) / 2, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5)


def scale_rect(rect: np.ndarray, src_hw: tuple[int, int],
               dst_hw: tuple[int, int]) -> np.ndarray:
  """int32 (x, y, w, h): the rectangle's pixel edges scaled with the image."""
  sy, sx = dst_hw[0] / src_hw[0], dst_hw[1] / src_hw[1]
  x0, y0 = rect[0] * sx, rect[1] * sy
  x1, y1 = (rect[0] + rect[2]) * sx, (rect[1] + rect[3]) * sy
  x0, y0 = int(np.floor(x0)), int(np.floor(y0))
  x1, y1 = int(np.ceil(x1)), int(np.ceil(y1))
  return np.array([x0, y0, max(1, x1 - x0), max(1, y1 - y0)], np.int32)


def resize_rgb(rgb: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
  """uint8 [h, w, 3] (PIL bicubic, antialiased when shrinking)."""
  if rgb.shape[:2] == tuple(hw):
    return rgb
  return np.asarray(Image.fromarray(rgb).resize(
      (hw[1], hw[0]), Image.Resampling.BICUBIC))


def resize_ids(ids: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
  """uint8 class ids [h, w] (nearest: ids must not blend)."""
  if ids.shape == tuple(hw):
    return ids
  return np.asarray(Image.fromarray(ids).resize(
      (hw[1], hw[0]), Image.Resampling.NEAREST))


def load_frame(folder: Folder, record: FrameRecord,
               hw: tuple[int, int]) -> dict[str, np.ndarray]:
  """image uint8 [h, w, 3], parsing uint8 [h, w], face_rect int32 [4]."""
  ids = parsing_schemes.parsing_ids(read_rgb(record.parsing_path),
                                    folder.scheme)
  rect = record.face_rect
  if rect is None:  # RAD-NeRF folders
    rect = parsing_schemes.face_rect_from_ids(ids, folder.scheme)
  src = (folder.height, folder.width)
  return {'image': resize_rgb(read_rgb(record.image_path), hw),
          'parsing': resize_ids(ids, hw),
          'face_rect': scale_rect(rect, src, hw)}


def load_background(folder: Folder, hw: tuple[int, int]) -> np.ndarray:
  """The background plate, uint8 [h, w, 3]."""
  return resize_rgb(read_rgb(folder.background_path), hw)


def load_audio_features(folder: Folder, feature: str, dim: int,
                        speech_model: str = '') -> np.ndarray:
  """float32 [N, S, C] windows by aud_id: aud.wav's features or the .npy's.

  A .npy holds one window per frame (DeepSpeech [16, C], HuBERT [2, 1024])."""
  if folder.audio_shape is not None:
    return np.load(folder.audio_path, allow_pickle=False).astype(np.float32)
  num_frames = max(f.aud_id for f in folder.frames()) + 1
  return audio_features.features_from_file(
      folder.audio_path, feature=feature, dim=dim, num_frames=num_frames,
      speech_model=speech_model)


def context_window(features: np.ndarray, aud_id: int,
                   offsets: np.ndarray) -> np.ndarray:
  """[A, S, C] windows of frames aud_id + offsets, clamped to the features."""
  index = np.clip(aud_id + offsets, 0, len(features) - 1)
  return features[index]


def read_folder_waveform(folder: Folder) -> np.ndarray:
  """aud.wav as 16 kHz mono float32 [T]; empty if the folder has none."""
  if folder.wav_path is None:
    return np.zeros((0,), np.float32)
  return audio_features.load_audio(folder.wav_path)
