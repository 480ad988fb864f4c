"""Small AD-NeRF/SSP-NeRF/RAD-NeRF processed-data folders written by tests.

    write_folder(tmp_path / 'clip', scheme='ssp', audio='npy', face_rect=False)

Frames carry the real (packaged) Obama head poses, blocky colour images,
parsing maps drawn in either colour scheme from a known id map, and audio
as aud.wav or a feature .npy, so that tests can compare what the builder
stores against exactly what was written.
"""
import json
import os

import numpy as np
from PIL import Image
import soundfile

from ssp_nerf_jax.data import parsing_schemes
from ssp_nerf_jax import synthetic

NUM_FRAMES = 12  # train: int(12 * 10 / 11) = 10 frames, val: 2
FIRST_ID = 100  # img_id / aud_id of the first frame (ids need not start at 0)


def class_ids(size, frame, scheme):
  """uint8 [size, size] ids: background, a head blob, neck, torso (+ face
  parts in the 11-class scheme), moving a little with `frame`."""
  ids = np.zeros((size, size), np.uint8)
  rows, cols = np.mgrid[:size, :size] / size
  shift = 0.02 * (frame % 3)
  head = (rows - 0.35) ** 2 + (cols - 0.5 - shift) ** 2 < 0.2 ** 2
  if scheme == 'adnerf':
    ids[rows > 0.75] = 3  # torso
    ids[(rows > 0.5) & (rows <= 0.75) & (np.abs(cols - 0.5) < 0.12)] = 2
    ids[head] = 1
  else:
    ids[rows > 0.75] = 9  # torso
    ids[(rows > 0.5) & (rows <= 0.75) & (np.abs(cols - 0.5) < 0.12)] = 8
    ids[head] = 1  # skin
    ids[head & (rows < 0.25)] = 10  # hair
    ids[head & (np.abs(rows - 0.45) < 0.03)] = 7  # lips
    ids[head & (np.abs(rows - 0.3) < 0.03) & (np.abs(cols - 0.5 - shift) >
                                              0.05)] = 3  # eyes
  return ids


def frame_image(size, frame):
  """uint8 [size, size, 3]: smooth colours that differ per frame."""
  rows, cols = np.mgrid[:size, :size] / size
  rgb = np.stack([rows, cols, 0.5 + 0.4 * np.sin(rows * 6 + frame)], -1)
  return np.round(rgb * 255).astype(np.uint8)


def write_image(path, array):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array).save(path)


def write_folder(root, *, size=32, scheme='adnerf', face_rect=True,
                 audio='wav', num_frames=NUM_FRAMES, image_ext='.png'):
  """Writes a processed folder; returns a dict of what was written.

  Args:
    root: folder to create.
    size: frame size (square).
    scheme: 'adnerf' (4 classes) or 'ssp' (11 classes) parsing colours.
    face_rect: whether the json frames carry face_rect.
    audio: 'wav' (aud.wav), 'npy' (aud.npy [N, 16, 29]) or 'hubert'
      (aud_hu.npy [N, 2, 8]: HuBERT's layout with a small width).
    num_frames: frames over both splits.
    image_ext: '.png' (lossless) or '.jpg' for ori_imgs.

  Returns:
    dict with 'ids' uint8 [N, size, size], 'images' uint8 [N, size, size,
    3], 'c2w' float32 [N, 4, 4], 'face_rect' [N, 4], 'img_ids' [N],
    'focal', 'cx', 'cy', 'background', and 'features' (npy audio) or
    'waveform' (wav audio).
  """
  root = str(root)
  os.makedirs(root, exist_ok=True)
  c2w, focal, cx, cy, rects = synthetic.load_pose_track()
  scale = size / 450.0
  focal, cx, cy = focal * scale, size / 2, size / 2
  colors = parsing_schemes.SCHEMES[scheme].colors
  img_ids = FIRST_ID + np.arange(num_frames)
  written = {'ids': [], 'images': [], 'c2w': c2w[:num_frames],
             'face_rect': np.round(rects[:num_frames] * scale).astype(int),
             'img_ids': img_ids, 'focal': focal, 'cx': cx, 'cy': cy}
  for k, img_id in enumerate(img_ids):
    ids = class_ids(size, k, scheme)
    image = frame_image(size, k)
    write_image(os.path.join(root, 'ori_imgs', f'{img_id}{image_ext}'), image)
    write_image(os.path.join(root, 'parsing', f'{img_id}.png'), colors[ids])
    written['ids'].append(ids)
    written['images'].append(image)
  written['ids'] = np.stack(written['ids'])
  written['images'] = np.stack(written['images'])
  written['background'] = np.full((size, size, 3), [40, 90, 160], np.uint8)
  write_image(os.path.join(root, 'bc.png'), written['background'])

  num_audio = FIRST_ID + num_frames  # audio covers the whole video
  rng = np.random.default_rng(0)
  if audio == 'wav':
    t = np.arange(int(num_audio / 25 * 16000)) / 16000
    waveform = (0.3 * np.sin(2 * np.pi * 220 * t) *
                (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    soundfile.write(os.path.join(root, 'aud.wav'), waveform, 16000)
    written['waveform'] = waveform
  else:
    shape = (num_audio, 16, 29) if audio == 'npy' else (num_audio, 2, 8)
    features = rng.normal(size=shape).astype(np.float32)
    name = 'aud.npy' if audio == 'npy' else 'aud_hu.npy'
    np.save(os.path.join(root, name), features)
    written['features'] = features

  num_train = num_frames * 10 // 11
  for split, index in (('train', range(num_train)),
                       ('val', range(num_train, num_frames))):
    frames = []
    for k in index:
      frame = {'img_id': int(img_ids[k]), 'aud_id': int(img_ids[k]),
               'transform_matrix': c2w[k].tolist(),
               'exp_para': [0.0] * 3}  # extra keys are ignored
      if face_rect:
        frame['face_rect'] = written['face_rect'][k].tolist()
      frames.append(frame)
    write_json(os.path.join(root, f'transforms_{split}.json'),
               {'focal_len': focal, 'cx': cx, 'cy': cy, 'frames': frames})
  return written


def write_json(path, value):
  with open(path, 'w') as f:
    json.dump(value, f)


def read_json(path):
  with open(path) as f:
    return json.load(f)


def adnerf_config(path, data_dir, *, audio_file='', audio_dim=None):
  """configs/tiny.py model/training on the adnerf builder for `path`."""
  from configs import tiny  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  config.data.builder_config = 'adnerf'
  config.data.path = str(path)
  config.data.data_dir = str(data_dir)
  config.data.audio_file = audio_file
  if audio_dim is not None:
    config.data.audio_dim = audio_dim
  return config
