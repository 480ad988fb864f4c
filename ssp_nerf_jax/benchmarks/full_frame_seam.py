"""How visible the pasted crop's edges are in full-frame output.

  python -m ssp_nerf_jax.benchmarks.full_frame_seam --folder=PROCESSED \\
      [--val=DIR] [--source_video=clip.mp4] [--size=96]

The renders are a `render_main.py --split=val` output's (`--val`:
<id>.png, parsing_<id>.png), else the processed folder's own val frames and
parsing at --size px (the compositing's own seam, the render's errors
aside).  Each is pasted into its source frame as `offline/full_frame` does,
and as a hard paste (the whole box, no feather, no person mask).  Printed:
the mean gradient magnitude (grey levels per pixel) across the box sides
that lie inside the frame, in the blend band at the person's edge, and
over the whole frame, for both pastes and for the source frame itself.
"""
import json
import os
import re

from absl import app
from absl import flags
import cv2
import numpy as np

from ssp_nerf_jax import cli
from ssp_nerf_jax.data import parsing_schemes
from ssp_nerf_jax.offline import full_frame
from ssp_nerf_jax.preprocess import pipeline

FLAGS = flags.FLAGS


def define_flags():
  """Defined only when run as a program: render_main defines --source_video
  too, and tests import both."""
  flags.DEFINE_string('folder', None, 'Processed folder (preprocess.json).')
  flags.DEFINE_string('val', None, 'A render_main --split=val output folder.')
  flags.DEFINE_string('source_video', None, 'The source video, if it moved.')
  flags.DEFINE_integer('size', 96, 'Render size without --val.')


def gradient(image: np.ndarray) -> np.ndarray:
  """float [H, W] forward-difference gradient magnitude, channel mean
  (0 on the last row and column)."""
  image = image.astype(np.float32)
  dx = np.zeros_like(image)
  dy = np.zeros_like(image)
  dx[:, :-1] = image[:, 1:] - image[:, :-1]
  dy[:-1] = image[1:] - image[:-1]
  return np.sqrt(dx ** 2 + dy ** 2).mean(-1)


def border_mask(box, frame_hw) -> np.ndarray:
  """bool [H, W]: pixels whose forward difference crosses a box side that
  lies inside the frame."""
  x, y, side = box
  height, width = frame_hw
  mask = np.zeros((height, width), bool)
  rows = slice(max(y, 0), min(y + side, height))
  cols = slice(max(x, 0), min(x + side, width))
  if x > 0:
    mask[rows, x - 1] = True
  if x + side < width:
    mask[rows, x + side - 1] = True
  if y > 0:
    mask[y - 1, cols] = True
  if y + side < height:
    mask[y + side - 1, cols] = True
  return mask


def person_band(class_id, box, frame_hw) -> np.ndarray:
  """bool [H, W]: where the person mask blends (0 < weight < 1) away from
  the feathered box sides."""
  x, y, side = box
  person = full_frame.person_alpha(class_id, side)
  feather = full_frame.feather_weights(box, frame_hw,
                                       full_frame.FEATHER_SHARE * side)
  band = (person > 0.02) & (person < 0.98) & (feather == 1)
  mask = np.zeros(frame_hw, bool)
  canvas = np.zeros((side, side), bool)
  canvas[band] = True
  return mask | _placed(canvas, box, frame_hw)


def _placed(crop_mask, box, frame_hw) -> np.ndarray:
  """bool [H, W]: crop_mask [side, side] placed at box, clipped."""
  x, y, side = box
  full = np.zeros((frame_hw[0] + 2 * side, frame_hw[1] + 2 * side), bool)
  full[y + side:y + 2 * side, x + side:x + 2 * side] = crop_mask
  return full[side:side + frame_hw[0], side:side + frame_hw[1]]


def read_renders(folder: str, val: str, size: int):
  """(frame ids, rgb uint8 [h, w, 3] list, class ids [h, w] list)."""
  background = parsing_schemes.SCHEMES['ssp'].colors[0]
  if val:
    ids = sorted(int(m.group(1)) for m in map(
        re.compile(r'^(\d+)\.png$').match, os.listdir(val)) if m)
    rgb = [_read(os.path.join(val, f'{i:05d}.png')) for i in ids]
    parsing = [_read(os.path.join(val, f'parsing_{i:05d}.png')) for i in ids]
  else:
    with open(os.path.join(folder, pipeline.TRANSFORMS['val'])) as f:
      ids = [int(fr['img_id']) for fr in json.load(f)['frames']]
    rgb = [full_frame.resize(_read(os.path.join(folder, 'ori_imgs',
                                                f'{i}.jpg')), size)
           for i in ids]
    parsing = [full_frame.resize(_read(os.path.join(
        folder, 'parsing', f'{i}.png')), size, cv2.INTER_NEAREST)
               for i in ids]
  classes = [np.any(p != background, -1).astype(np.uint8) for p in parsing]
  return ids, rgb, classes


def _read(path: str) -> np.ndarray:
  return cv2.imread(path, cv2.IMREAD_COLOR)[..., ::-1]


def measure(folder, val, size, source_video) -> dict:
  """Mean gradients at the box sides, the person's edge and everywhere."""
  with open(os.path.join(folder, pipeline.INFO_FILE)) as f:
    info = json.load(f)
  box = tuple(int(info['crop'][k]) for k in ('x', 'y', 'side'))
  ids, renders, classes = read_renders(folder, val, size)
  sums = {}
  frames = full_frame.frames_in_order(source_video or info['source'], ids,
                                      float(info['fps']))
  for frame, rgb, class_id in zip(frames, renders, classes):
    hw = frame.shape[:2]
    regions = {'box_sides': border_mask(box, hw),
               'person_edge': person_band(class_id, box, hw),
               'frame': np.ones(hw, bool)}
    side_rgb = full_frame.resize(rgb, box[2])
    outputs = {'feathered': full_frame.composite(frame, rgb, class_id, box),
               'hard_paste': full_frame.paste_crop(
                   frame, side_rgb, np.ones(box[2:] * 2, np.float32), box),
               'source': frame}
    for name, image in outputs.items():
      grad = gradient(image)
      for region, mask in regions.items():
        if mask.any():
          sums.setdefault(name, {}).setdefault(region, []).append(
              float(grad[mask].mean()))
  return {'box': box, 'frames': len(ids), 'renders': val or 'folder',
          **{name: {r: round(float(np.mean(v)), 2) for r, v in by.items()}
             for name, by in sums.items()}}


def main(argv):
  cli.start(argv)
  cli.print_json({'benchmark': 'full_frame_seam',
                  **measure(FLAGS.folder, FLAGS.val, FLAGS.size,
                            FLAGS.source_video)})


if __name__ == '__main__':
  define_flags()
  app.run(main)
