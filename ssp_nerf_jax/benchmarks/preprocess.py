"""Video preprocessing against exact ground truth, as one JSON line.

  python -m ssp_nerf_jax.benchmarks.preprocess --size=256 --out=DIR

A synthetic clip as mp4, preprocessed like a user's video: pose, focal,
parsing and mouth-opening errors against the truth.
"""
import json
import os
import time

from absl import app
from absl import flags
import numpy as np
from PIL import Image
from scipy.spatial import transform

from ssp_nerf_jax import cli
from ssp_nerf_jax.data import adnerf_folder
from ssp_nerf_jax.data import parsing_schemes
from ssp_nerf_jax.evaluation import metrics
from ssp_nerf_jax.offline import mp4
from ssp_nerf_jax.preprocess import pipeline
from ssp_nerf_jax.preprocess import pose_fit
from ssp_nerf_jax import synthetic

_MOUTH = (synthetic.CLASS_NAMES.index('lips'),
          synthetic.CLASS_NAMES.index('mouth'))


def write_clip(clip: synthetic.Clip, path: str) -> str:
  """The clip as H.264 mp4 with its audio (what a user would have)."""
  return mp4.write_mp4(path, clip.images, clip.fps, clip.audio,
                       clip.sample_rate)


def crop_truth(parsing: np.ndarray, crop, size: int) -> np.ndarray:
  """Ground-truth class ids [N, H, W] cropped and resized like the frames."""
  x, y, side = crop
  return np.stack([np.asarray(Image.fromarray(ids[y:y + side, x:x + side])
                              .resize((size, size), Image.Resampling.NEAREST))
                   for ids in parsing])


def iou(pred: np.ndarray, true: np.ndarray) -> float:
  union = np.count_nonzero(pred | true)
  return float(np.count_nonzero(pred & true) / union) if union else float(
      'nan')


def axis_slopes(c2w_est: np.ndarray, c2w_true: np.ndarray) -> dict:
  """{yaw, pitch, roll: {slope, r, range_deg}}: each fitted head angle
  regressed on the true one (degrees, relative to the clip's mean, after
  `pose_fit.rotation_errors_deg`'s alignment).  A slope above 1 is an
  over-rotation: the depth / rotation trade-off of a too flat shape."""
  est = transform.Rotation.from_matrix(c2w_est[:, :3, :3]).inv()
  true = transform.Rotation.from_matrix(
      pose_fit.align_rotations(c2w_est, c2w_true)).inv()
  angles = [(rot * rot.mean().inv()).as_euler('YXZ', degrees=True)
            for rot in (est, true)]
  result = {}
  for k, name in enumerate(('yaw', 'pitch', 'roll')):
    fitted, truth = angles[0][:, k], angles[1][:, k]
    result[name] = {'slope': float(np.polyfit(truth, fitted, 1)[0]),
                    'r': float(np.corrcoef(truth, fitted)[0, 1]),
                    'range_deg': float(np.ptp(truth))}
  return result


def compare(folder: str, clip: synthetic.Clip) -> dict:
  """Pose, focal and parsing figures of a processed folder against `clip`."""
  with open(os.path.join(folder, pipeline.INFO_FILE)) as f:
    info = json.load(f)
  meta = {}
  for split in ('train', 'val'):
    with open(os.path.join(folder, pipeline.TRANSFORMS[split])) as f:
      meta[split] = json.load(f)
  frames = meta['train']['frames'] + meta['val']['frames']
  c2w = np.array([fr['transform_matrix'] for fr in frames], np.float64)
  errors_deg = pose_fit.rotation_errors_deg(c2w, clip.c2w.astype(np.float64))
  crop = (info['crop']['x'], info['crop']['y'], info['crop']['side'])
  truth = crop_truth(clip.parsing, crop, info['size'])
  scheme = parsing_schemes.SCHEMES['ssp']
  pred = np.stack([parsing_schemes.parsing_ids(adnerf_folder.read_rgb(
      os.path.join(folder, 'parsing', f'{i}.png')), scheme)
                   for i in range(len(frames))])
  true_focal = clip.focal * info['scale']
  mouth_open = np.array([fr['mouth_open'] for fr in frames])
  return {
      'frames': len(frames),
      'rotation_error_deg': {
          'median': float(np.median(errors_deg)),
          'p95': float(np.percentile(errors_deg, 95)),
          'max': float(errors_deg.max())},
      'rotation_axes': axis_slopes(c2w, clip.c2w.astype(np.float64)),
      'focal': {'estimated': info['focal'], 'true': true_focal,
                'relative_error': info['focal'] / true_focal - 1},
      'parsing': {
          'miou': metrics.mean_iou(pred, truth, len(synthetic.CLASS_NAMES)),
          'mouth_iou': iou(np.isin(pred, _MOUTH), np.isin(truth, _MOUTH)),
          'class_iou': {name: iou(pred == k, truth == k) for k, name in
                        enumerate(synthetic.CLASS_NAMES)}},
      'mouth_open_r': float(np.corrcoef(mouth_open, clip.mouth_open)[0, 1]),
      'preprocess_seconds': info['seconds'],
  }


def run(size: int, duration_s: float, seed: int, out: str,
        supersample: int = 1) -> dict:
  clip = synthetic.generate_clip(size=size, duration_s=duration_s, seed=seed,
                                 supersample=supersample)
  os.makedirs(out, exist_ok=True)
  video_path = write_clip(clip, os.path.join(out, 'synthetic.mp4'))
  folder = os.path.join(out, 'processed')
  tick = time.perf_counter()
  pipeline.preprocess_video(video_path, folder, size)
  result = {'benchmark': 'preprocess', 'size': size,
            'duration_s': duration_s, 'seed': seed,
            'supersample': supersample,
            'wall_s': time.perf_counter() - tick}
  result.update(compare(folder, clip))
  return result


def define_flags():
  """Defined only when run as a program: other entry points define --out."""
  flags.DEFINE_integer('size', 256, 'Clip size (px), also the output.')
  flags.DEFINE_float('duration_s', 10.0, 'Clip length (s).')
  flags.DEFINE_integer('seed', 0, 'Synthetic clip seed.')
  flags.DEFINE_integer('supersample', 1, 'Rays per pixel side of the clip: '
                       'each pixel averages supersample^2 rays, as a camera '
                       'integrates light (1 aliases edges and texture).',
                       lower_bound=1)
  flags.DEFINE_string('out', None, 'Folder for the mp4 and the output (its '
                      'processed/ must not exist).')


def main(argv):
  cli.start(argv)
  cli.require('out')
  args = flags.FLAGS
  cli.print_json(cli.exit_on_user_error(
      lambda: run(args.size, args.duration_s, args.seed, args.out,
                  args.supersample)))


if __name__ == '__main__':
  define_flags()
  app.run(main)
