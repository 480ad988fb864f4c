"""Full-frame rendering on the device mesh, and the periodic val evaluation.

A frame's rays are rendered in fixed-size chunks by one compiled function;
each chunk is split over every device of the mesh, so eval compiles once and
uses all devices.
"""
import functools
import json
import os

import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np

from ssp_nerf_jax import files
from ssp_nerf_jax import input_pipeline
from ssp_nerf_jax import metrics as metrics_lib
from ssp_nerf_jax import parallel
from ssp_nerf_jax import parsing_schemes
from ssp_nerf_jax import rays as rays_lib
from ssp_nerf_jax import render
from ssp_nerf_jax import train_step

P = jax.sharding.PartitionSpec


def parsing_palette(num_classes):
  """uint8 [K, 3] colours for class ids: the parsing maps' own colours for
  SSP-NeRF's 11 and AD-NeRF's 4 classes, else random (background white)."""
  scheme = parsing_schemes.scheme_for_classes(num_classes)
  if scheme is not None:
    return scheme.colors.copy()
  rng = np.random.default_rng(0)
  palette = rng.integers(0, 256, (num_classes, 3), dtype=np.uint8)
  palette[0] = 255  # background white, as in the parsing maps on disk
  return palette


def chunk_size(config, num_rays):
  """Global rays per chunk: config.render.chunk per device, never more
  than one frame needs, always a multiple of the device count."""
  devices = jax.device_count()
  per_device = min(config.render.chunk, -(-num_rays // devices))
  return per_device * devices


class FrameRenderer:
  """Renders whole frames [H, W] in chunks over the mesh."""

  def __init__(self, config, model, scene, mesh):
    self.scene = scene
    self.num_rays = scene.height * scene.width
    self.chunk = chunk_size(config, self.num_rays)
    self.num_chunks = -(-self.num_rays // self.chunk)
    self._rays_sharding = jax.sharding.NamedSharding(
        mesh, P(None, parallel.DATA_AXIS))
    # Inputs and outputs are replicated: every process passes the same host
    # rays and reads the whole chunk back (a global array split over
    # several processes' devices cannot be read by any one of them).  The
    # rays are split over the devices inside.
    replicated = parallel.replicated(mesh)
    self._render_chunk = jax.jit(
        functools.partial(self._apply, model),
        in_shardings=(replicated,) * 5, out_shardings=replicated)

  def _apply(self, model, params, rays, audio, c2w, smooth):
    rays = jax.lax.with_sharding_constraint(rays, self._rays_sharding)
    out = model.apply(params, rays, audio, smooth_audio=smooth,
                      c2w=c2w)['fine']
    return {'rgb': out['rgb'], 'acc': out['acc'], 'depth': out['depth'],
            'semantics': out['semantics']}

  def frame_chunks(self, c2w):
    """The rays of a frame as `num_chunks` host chunks of [1, chunk] rays
    (the last one padded by repeating its final ray)."""
    scene = self.scene
    rays = rays_lib.frame_rays(jnp.asarray(c2w), scene.height, scene.width,
                               scene.focal, scene.cx, scene.cy)
    padded = self.num_chunks * self.chunk
    # Host (numpy) inputs: identical on every process, placed by jit.
    flat = jax.tree.map(
        lambda x: np.pad(np.asarray(x).reshape(-1, 3),
                         ((0, padded - self.num_rays), (0, 0)), mode='edge'),
        rays)
    return [jax.tree.map(lambda x: x[None, i * self.chunk:(i + 1) * self.chunk],
                         flat) for i in range(self.num_chunks)]

  def render_chunk(self, params, chunk, c2w, audio, smooth):
    """Renders one chunk of `frame_chunks` (asynchronously: jax arrays)."""
    return self._render_chunk(params, chunk,
                              np.asarray(audio, np.float32)[None],
                              np.asarray(c2w, np.float32)[None],
                              np.asarray(smooth))

  def render(self, params, c2w, audio, smooth):
    """Renders one frame.

    Args:
      params: replicated model parameters.
      c2w: [4, 4] camera-to-head.
      audio: [8, 16, C] audio context windows of the frame.
      smooth: bool, whether audio smoothing is on.
    Returns:
      dict of numpy arrays: 'rgb' [H, W, 3] composited over the background,
      'acc' and 'depth' [H, W], 'semantics' [H, W, K], 'class_id' [H, W].
    """
    scene = self.scene
    pieces = [self.render_chunk(params, chunk, c2w, audio, smooth)
              for chunk in self.frame_chunks(c2w)]
    pieces = jax.device_get(pieces)  # one wait, after every chunk is queued
    out = {k: np.concatenate([p[k][0] for p in pieces])[:self.num_rays]
           for k in pieces[0]}
    out = {k: v.reshape(scene.height, scene.width, *v.shape[1:])
           for k, v in out.items()}
    out['rgb'] = np.asarray(render.composite(out['rgb'], out['acc'],
                                             scene.background))
    out['class_id'] = np.argmax(out['semantics'], axis=-1)
    return out


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
    self.renderer = FrameRenderer(config, model, scene, mesh)
    picks = evenly_spaced(config.train.eval_frames, scene.num_val)
    self.frames = input_pipeline.load_split(config, builder, 'val', picks)
    self.palette = parsing_palette(scene.num_classes)

  def evaluate(self, params, step, workdir, extra=None):
    """Scores the eval frames at `step`; writes PNGs and the metrics.

    Writes `eval_metrics.json` (this evaluation) and appends the same record
    to `eval_history.jsonl` (one JSON object per line and evaluation).

    Args:
      params: replicated parameters.
      step: training step (names the image folder).
      workdir: the run's workdir.
      extra: more fields for the record (e.g. the train step time).
    Returns:
      The record: 'step', 'psnr', 'ssim', 'region_psnr', 'miou' (over the
      eval frames) and `extra`.
    """
    smooth = train_step.smoothing_on(step, self.config.train)
    rgbs, preds = [], []
    image_dir = os.path.join(workdir, 'eval', f'step_{step:07d}')
    is_main = jax.process_index() == 0
    if is_main:
      os.makedirs(image_dir, exist_ok=True)
    for i, frame_id in enumerate(self.frames['frame_id']):
      out = self.renderer.render(params, self.frames['c2w'][i],
                                 self.frames['audio'][i], smooth)
      rgbs.append(np.clip(out['rgb'], 0, 1))
      preds.append(out['class_id'])
      if is_main:
        iio.imwrite(os.path.join(image_dir, f'frame_{int(frame_id):05d}.png'),
                    self.side_by_side(out, i))
    result = {'step': int(step),
              **frame_scores(np.stack(rgbs), self.frames['image'],
                             np.stack(preds), self.frames['parsing'],
                             self.scene.class_names),
              **(extra or {})}
    if is_main:
      files.write_json(os.path.join(workdir, 'eval_metrics.json'), result)
      with open(os.path.join(workdir, 'eval_history.jsonl'), 'a') as f:
        f.write(json.dumps(result) + '\n')
    return result

  def side_by_side(self, out, i):
    """uint8 [H, 4W, 3]: truth | render | rendered parsing | true parsing."""
    return np.concatenate([
        self.frames['image'][i], to_uint8(out['rgb']),
        self.palette[out['class_id']],
        self.palette[self.frames['parsing'][i]]], axis=1)


def frame_scores(rgb, images, pred_ids, true_ids, class_names):
  """Mean PSNR and SSIM over frames, PSNR per region, parsing mIoU.

  Args:
    rgb: float [N, H, W, 3] renders in [0, 1].
    images: uint8 [N, H, W, 3] ground truth.
    pred_ids, true_ids: int [N, H, W] rendered / true class ids.
    class_names: the K class names.
  Returns:
    {'psnr': dB, 'ssim': x, 'region_psnr': {region: dB or None},
     'miou': x}.
  """
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


def to_uint8(image):
  """float [..., 3] in [0, 1] -> uint8, rounded."""
  return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)

