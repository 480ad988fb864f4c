"""Training's periodic evaluation: a few val frames rendered, scored and
recorded (`eval_metrics.json`, `eval_history.jsonl`, side-by-side PNGs)."""
import json
import os

import imageio.v3 as iio
import numpy as np

from ssp_nerf_jax.data import input_pipeline
from ssp_nerf_jax.data import parsing_schemes
from ssp_nerf_jax.evaluation import scores
from ssp_nerf_jax.rendering import frame_renderer
from ssp_nerf_jax.rendering import pose_correction
from ssp_nerf_jax.runtime import files
from ssp_nerf_jax.runtime import parallel
from ssp_nerf_jax.training import train_step


def read_history(workdir):
  """The records of every evaluation of a run (`eval_history.jsonl`)."""
  with open(os.path.join(workdir, 'eval_history.jsonl')) as f:
    return [json.loads(line) for line in f if line.strip()]


def evenly_spaced(count, total):
  """`count` indices spread over range(total), first and last included."""
  return sorted(set(np.linspace(0, total - 1, min(count, total)).round()
                    .astype(int).tolist()))


class Evaluator:
  """Renders a few val frames, scores them and writes images + metrics."""

  def __init__(self, config, model, scene, builder, mesh):
    self.config = config
    self.scene = scene
    self.renderer = frame_renderer.FrameRenderer(config, model, scene, mesh)
    self.picks = evenly_spaced(config.train.eval_frames, scene.num_val)
    self.frames = input_pipeline.load_split(config, builder, 'val',
                                            self.picks)
    self.palette = parsing_schemes.palette(scene.num_classes)

  def evaluate(self, params, step, workdir, extra=None, val_poses=None):
    """Renders and scores the eval frames at `step`: PNGs, eval_metrics.json, a
    line of eval_history.jsonl; returns that record (with `extra`).

    `val_poses`: corrections [V, 6] of the val split's poses (rows in split
    order, see `training.pose_refinement`); then the frames are scored with
    corrected poses, and 'fitted_poses' holds the scores with the fitted."""
    image_dir = os.path.join(workdir, 'eval', f'step_{step:07d}')
    is_main = parallel.is_main_process()
    if is_main:
      os.makedirs(image_dir, exist_ok=True)
    c2w = self.frames['c2w']
    result = {'step': int(step)}
    if val_poses is not None:
      result['fitted_poses'] = self.render_and_score(params, step, c2w)
      c2w = np.asarray(pose_correction.apply_correction(
          c2w, np.asarray(val_poses)[self.picks]))
    result.update(self.render_and_score(params, step, c2w, image_dir),
                  **(extra or {}))
    if is_main:
      files.write_json(os.path.join(workdir, 'eval_metrics.json'), result)
      with open(os.path.join(workdir, 'eval_history.jsonl'), 'a') as f:
        f.write(json.dumps(result) + '\n')
    return result

  def render_and_score(self, params, step, c2w, image_dir=None):
    """`scores.frame_scores` of the eval frames rendered from c2w [n, 4, 4]
    (with `image_dir`, their side-by-side PNGs written there)."""
    smooth = train_step.is_smoothing_on(step, self.config.train)
    rgbs, preds = [], []
    for i, frame_id in enumerate(self.frames['frame_id']):
      out = self.renderer.render(params, c2w[i], self.frames['audio'][i],
                                 smooth, eyes=self.frames['eye_openness'][i])
      rgbs.append(np.clip(out['rgb'], 0, 1))
      preds.append(out['class_id'])
      if image_dir and parallel.is_main_process():
        iio.imwrite(os.path.join(image_dir, f'frame_{int(frame_id):05d}.png'),
                    self.side_by_side(out, i))
    return scores.frame_scores(np.stack(rgbs), self.frames['image'],
                               np.stack(preds), self.frames['parsing'],
                               self.scene.class_names)

  def side_by_side(self, out, i):
    """uint8 [H, 4W, 3]: truth | render | rendered parsing | true parsing."""
    return np.concatenate([
        self.frames['image'][i], frame_renderer.to_uint8(out['rgb']),
        self.palette[out['class_id']],
        self.palette[self.frames['parsing'][i]]], axis=1)
