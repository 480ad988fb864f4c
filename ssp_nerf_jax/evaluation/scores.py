"""Scores of rendered frames against the truth; `score_val` for a val split."""
from typing import Optional

import numpy as np

from ssp_nerf_jax.evaluation import lipsync
from ssp_nerf_jax.evaluation import metrics as metrics_lib


def frame_scores(rgb, images, pred_ids, true_ids, class_names):
  """{'psnr', 'ssim' (frame means), 'region_psnr', 'miou'} of rgb float
  [N, H, W, 3] vs uint8 images; pred_ids, true_ids int [N, H, W]."""
  truth = images.astype(np.float32) / 255
  return {
      'psnr': float(np.mean([metrics_lib.psnr(r, t)
                             for r, t in zip(rgb, truth)])),
      'ssim': float(np.mean([metrics_lib.ssim(r, t)
                             for r, t in zip(rgb, truth)])),
      'region_psnr': metrics_lib.region_psnr(rgb, truth, true_ids,
                                             class_names),
      'miou': metrics_lib.mean_iou(pred_ids, true_ids, len(class_names)),
  }


def mouth_area(class_ids: np.ndarray, class_names) -> Optional[np.ndarray]:
  """float [N] mouth pixels of [N, H, W] class ids; None: no mouth classes."""
  mask = metrics_lib.region_masks(class_ids, tuple(class_names))['mouth']
  return None if mask is None else mask.sum(axis=(1, 2)).astype(np.float64)


def mouth_area_sync(pred_ids: np.ndarray, true_ids: np.ndarray,
                    class_names) -> Optional[float]:
  """Pearson r of rendered vs true mouth area over frames (needs true parsing);
  None without mouth classes or for a constant area."""
  rendered = mouth_area(pred_ids, class_names)
  if rendered is None:
    return None
  sync = lipsync.correlate(rendered, mouth_area(true_ids, class_names))
  return None if np.isnan(sync) else sync


def score_val(step: int, class_names, frames, rendered) -> dict:
  """metrics.json payload of the val split: `frame_scores`, `lipsync.score` and
  `mouth_area_sync`; frames from `input_pipeline.load_split`."""
  rgb = rendered['rgb_float']
  scores = frame_scores(rgb, frames['image'], rendered['class_id'],
                        frames['parsing'], class_names)
  return {
      'step': int(step), 'num_frames': int(len(rgb)),
      'psnr': scores['psnr'], 'ssim': scores['ssim'],
      'region_psnr': scores['region_psnr'],
      'miou': scores['miou'],
      # Landmarks of the uint8 frames that val.mp4 shows, as a viewer sees.
      **lipsync.score(rendered['rgb'], frames['image']),
      'mouth_area_sync': mouth_area_sync(rendered['class_id'],
                                         frames['parsing'], class_names),
  }


def val_summary(result: dict) -> str:
  """One line of `score_val`'s main figures (null ones as 'n/a')."""
  def figure(name, spec):
    value = result[name]
    return f'{name}=' + ('n/a' if value is None else format(value, spec))
  return ' '.join([
      figure('psnr', '.2f'), figure('ssim', '.4f'), figure('miou', '.4f'),
      figure('lmd', '.3f'), figure('mouth_sync', '.3f'),
      figure('eye_sync', '.3f'),
      f'landmark_frames={result["landmark_frames"]}/{result["num_frames"]}',
      figure('mouth_area_sync', '.3f')])
