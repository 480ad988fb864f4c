"""Offline rendering from a trained workdir: new audio -> mp4, val scoring.

Library behind `render_main.py`:

* `load_trained(workdir)`: the config, dataset, model and parameters of a
  training run (latest or a given checkpoint).
* `render_inputs.audio_windows` / `render_inputs.pose_track`: the audio
  windows and camera poses of a render (see that module).
* `render_frames(...)`: frames on the device mesh, one compilation.
* `render_audio(...)` / `render_val(...)`: whole jobs writing files.
"""
import collections
import json
import os
import time

from typing import Optional

from absl import logging
import imageio.v3 as iio
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import tqdm

from ssp_nerf_jax import audio_features
from ssp_nerf_jax import checkpoints
from ssp_nerf_jax import data
from ssp_nerf_jax import errors
from ssp_nerf_jax import evaluation
from ssp_nerf_jax import input_pipeline
from ssp_nerf_jax import metrics
from ssp_nerf_jax import parallel
from ssp_nerf_jax import render_inputs
from ssp_nerf_jax import train
from ssp_nerf_jax import video

Trained = collections.namedtuple(
    'Trained', ['config', 'builder', 'scene', 'model', 'params', 'step'])


# ---------------------------------------------------------------- workdir --


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config a workdir was trained with (`config.json`)."""
  if not os.path.isdir(workdir):
    raise errors.UserError(f'--workdir {workdir} does not exist')
  if not os.listdir(workdir):
    raise errors.UserError(f'--workdir {workdir} is empty (nothing trained)')
  path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(path):
    raise errors.UserError(f'{path} not found: {workdir} is not a training '
                           'workdir')
  try:
    with open(path) as f:
      return ml_collections.ConfigDict(json.load(f))
  except (OSError, ValueError) as e:
    raise errors.UserError(f'cannot read {path}: {e}') from None


def checkpoint_steps(workdir: str) -> list[int]:
  """Steps of the complete checkpoints in `<workdir>/checkpoints`."""
  if not checkpoints.checkpoint_dir(workdir).is_dir():
    return []
  return sorted(checkpoints.open_read_only(workdir).all_steps())


def pick_step(workdir: str, checkpoint_step: Optional[int]) -> int:
  """The checkpoint to load: `checkpoint_step` or the latest one."""
  steps = checkpoint_steps(workdir)
  if not steps:
    raise errors.UserError(
        f'no checkpoint in {checkpoints.checkpoint_dir(workdir)}')
  if checkpoint_step is None:
    return steps[-1]
  if checkpoint_step not in steps:
    raise errors.UserError(f'--checkpoint_step={checkpoint_step} not in '
                           f'{workdir}; available steps: {steps}')
  return checkpoint_step


def load_trained(workdir: str,
                 checkpoint_step: Optional[int] = None) -> Trained:
  """(config, builder, scene, model, params, step) of a training run.

  Args:
    workdir: a train_main workdir (config.json + checkpoints/).
    checkpoint_step: step to load; default the latest.
  Returns:
    `Trained`; params are host (unreplicated) arrays.
  Raises:
    errors.UserError: missing/empty workdir, no config.json, no checkpoint.
  """
  config = load_config(workdir)
  step = pick_step(workdir, checkpoint_step)
  train.validate_config(config)
  builder = data.build_dataset(config)
  scene = input_pipeline.load_scene_info(builder)
  model = train.make_model(config, scene)
  target = train.init_state(config, model, scene,
                            train.make_optimizer(config.train))
  state = checkpoints.open_read_only(workdir).restore(
      step, args=ocp.args.StandardRestore(target))
  return Trained(config, builder, scene, model, state.params, int(step))


def with_background(trained: Trained, path: str) -> Trained:
  """`trained` compositing over the image at `path` instead of the plate.

  An image of another size is resized (bilinear) with a warning.
  """
  try:
    image = np.asarray(iio.imread(path))
  except Exception as e:  # pylint: disable=broad-except
    raise errors.UserError(f'cannot read --background {path}: {e}') from None
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, axis=-1)
  if image.ndim != 3 or image.shape[-1] not in (3, 4):
    raise errors.UserError(f'--background {path} has shape {image.shape}, '
                           'expected an RGB(A) image')
  image = image[..., :3].astype(np.float32) / 255.0
  scene = trained.scene
  if image.shape[:2] != (scene.height, scene.width):
    logging.warning('--background %s is %dx%d, resized to the scene\'s %dx%d',
                    path, image.shape[1], image.shape[0], scene.width,
                    scene.height)
    image = np.asarray(jax.image.resize(
        image, (scene.height, scene.width, 3), 'bilinear'))
  return trained._replace(scene=scene.replace(
      background=np.clip(image, 0, 1).astype(np.float32)))


def smoothing_on(trained: Trained) -> bool:
  """Whether the checkpoint was trained past the audio-smoothing start."""
  return trained.step >= trained.config.train.audio_smoothing_start


# -------------------------------------------------------------- rendering --


BoundRenderer = collections.namedtuple('BoundRenderer',
                                       ['renderer', 'params', 'smooth'])


def make_renderer(trained: Trained, mesh=None) -> BoundRenderer:
  """A FrameRenderer and replicated params, to reuse over many videos.

  Every frame rendered through one BoundRenderer shares one compilation.
  """
  mesh = mesh or parallel.make_data_mesh()
  renderer = evaluation.FrameRenderer(trained.config, trained.model,
                                      trained.scene, mesh)
  return BoundRenderer(renderer, parallel.replicate(trained.params, mesh),
                       smoothing_on(trained))


def render_frames(trained: Trained, c2w: np.ndarray, audio: np.ndarray,
                  mesh=None, desc: str = 'render',
                  bound: Optional[BoundRenderer] = None,
                  keep_float: bool = False) -> dict[str, np.ndarray]:
  """Renders frames, each one's rays chunked and spread over the mesh.

  Args:
    trained: from `load_trained`.
    c2w: float32 [N, 4, 4] camera-to-head poses.
    audio: float32 [N, A, 16, C] audio context windows.
    mesh: ('data',) mesh; default all devices (ignored if `bound` given).
    desc: progress-bar label.
    bound: from `make_renderer`, to reuse its compilation; default a new one.
    keep_float: also return 'rgb_float' (4x the memory of 'rgb').
  Returns:
    dict: 'rgb' uint8 [N, H, W, 3], 'class_id' uint8 [N, H, W], and with
    `keep_float` 'rgb_float' float32 [N, H, W, 3] in [0, 1].
  """
  if len(c2w) != len(audio):
    raise ValueError(f'{len(c2w)} poses but {len(audio)} audio windows')
  bound = bound or make_renderer(trained, mesh)
  rgbs, floats, classes = [], [], []
  bar = tqdm.tqdm(range(len(c2w)), desc=desc, unit='frame', dynamic_ncols=True,
                  disable=not parallel.is_main_process())
  for i in bar:
    out = bound.renderer.render(bound.params, c2w[i], audio[i], bound.smooth)
    rgb = np.clip(out['rgb'], 0, 1).astype(np.float32)
    rgbs.append(evaluation.to_uint8(rgb))
    classes.append(out['class_id'].astype(np.uint8))
    if keep_float:
      floats.append(rgb)
  bar.close()
  result = {'rgb': np.stack(rgbs), 'class_id': np.stack(classes)}
  if keep_float:
    result['rgb_float'] = np.stack(floats)
  return result


def check_out_dir(out_dir: str) -> None:
  """Creates `out_dir`; UserError unless a file can really be written."""
  errors.ensure_writable_dir(out_dir, '--out')


def write_png(path: str, image: np.ndarray) -> None:
  iio.imwrite(path, image)


def render_audio(trained: Trained, audio_path: str, out_dir: str,
                 poses: str = 'train', keep_frames: bool = False,
                 parsing: bool = False, mesh=None,
                 bound: Optional[BoundRenderer] = None,
                 inputs=None) -> str:
  """Renders one audio file to `<out_dir>/<stem>.mp4` (audio muxed in).

  Args:
    trained: from `load_trained`.
    audio_path: wav (any rate/channels) or `.npy` features [N, 16, C].
    out_dir: existing, writable folder.
    poses: a `load_track` spec or a loaded track [M, 4, 4].
    keep_frames: also write `<out_dir>/<stem>/<i>.png`.
    parsing: also write `<out_dir>/<stem>_parsing.mp4`.
    mesh, bound: see `render_frames`.
    inputs: `audio_windows(audio_path, trained)` if already computed.
  Returns:
    The mp4 path.
  """
  windows, waveform = inputs or render_inputs.audio_windows(audio_path, trained)
  c2w = render_inputs.pose_track(poses, trained, len(windows))
  stem = os.path.splitext(os.path.basename(audio_path))[0]
  rendered = render_frames(trained, c2w, windows, mesh, desc=stem,
                           bound=bound)
  mp4 = os.path.join(out_dir, f'{stem}.mp4')
  if not parallel.is_main_process():
    return mp4  # Every process rendered the same frames; process 0 writes.
  fps = trained.scene.fps
  if keep_frames:
    frame_dir = os.path.join(out_dir, stem)
    os.makedirs(frame_dir, exist_ok=True)
    for i, image in enumerate(rendered['rgb']):
      write_png(os.path.join(frame_dir, f'{i:05d}.png'), image)
  if parsing:
    palette = evaluation.parsing_palette(trained.scene.num_classes)
    video.write_mp4(os.path.join(out_dir, f'{stem}_parsing.mp4'),
                    palette[rendered['class_id']], fps, waveform,
                    audio_features.SAMPLE_RATE)
  return video.write_mp4(mp4, rendered['rgb'], fps, waveform,
                         audio_features.SAMPLE_RATE)


# -------------------------------------------------------------------- val --


def mouth_area(class_ids: np.ndarray, class_names) -> Optional[np.ndarray]:
  """Pixels of the 'mouth' region (lips + mouth interior) per frame.

  Args:
    class_ids: int [N, H, W] parsing.
    class_names: the dataset's class names.
  Returns:
    float [N], or None if the parsing has no mouth classes (4-class data).
  """
  mask = metrics.region_masks(class_ids, tuple(class_names))['mouth']
  return None if mask is None else mask.sum(axis=(1, 2)).astype(np.float64)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
  """Pearson correlation of two [N] series; NaN if either is constant."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if len(a) < 2 or a.std() == 0 or b.std() == 0:
    return float('nan')
  return float(np.corrcoef(a, b)[0, 1])


def val_segment(waveform: np.ndarray, frame_ids: np.ndarray,
                fps: float) -> np.ndarray:
  """The 16 kHz samples spanning frames frame_ids[0] .. frame_ids[-1]."""
  rate = audio_features.SAMPLE_RATE
  start = int(round(int(frame_ids[0]) / fps * rate))
  stop = int(round((int(frame_ids[-1]) + 1) / fps * rate))
  return waveform[start:stop]


def score_val(trained: Trained, frames, rendered) -> dict:
  """metrics.json payload: psnr, ssim, region_psnr, miou, mouth_sync."""
  rgb = rendered['rgb_float']
  class_names = trained.scene.class_names
  scores = evaluation.frame_scores(rgb, frames['image'], rendered['class_id'],
                                   frames['parsing'], class_names)
  rendered_area = mouth_area(rendered['class_id'], class_names)
  sync = (float('nan') if rendered_area is None else
          pearson(rendered_area, mouth_area(frames['parsing'], class_names)))
  return {
      'step': trained.step, 'num_frames': int(len(rgb)),
      'psnr': scores['psnr'], 'ssim': scores['ssim'],
      'region_psnr': scores['region_psnr'],
      'miou': scores['miou'],
      # None (null) when a mouth area is constant over the frames or the
      # parsing has no mouth classes.
      'mouth_sync': None if np.isnan(sync) else sync,
  }


def render_val(trained: Trained, out_dir: str, mesh=None,
               bound: Optional[BoundRenderer] = None) -> dict:
  """Renders and scores the val split into `out_dir`.

  Writes `<frame_id>.png`, `parsing_<frame_id>.png`, `val.mp4` (with the
  clip's audio over those frames) and `metrics.json`.
  Returns:
    The metrics dict.
  """
  frames = input_pipeline.load_split(trained.config, trained.builder, 'val')
  if not len(frames['frame_id']):
    raise errors.UserError('the dataset has no val frames')
  tick = time.perf_counter()
  rendered = render_frames(trained, frames['c2w'], frames['audio'], mesh,
                           desc='val', bound=bound, keep_float=True)
  seconds = time.perf_counter() - tick
  result = score_val(trained, frames, rendered)
  result['seconds_per_frame'] = seconds / len(frames['frame_id'])
  if not parallel.is_main_process():
    return result  # Every process rendered the same frames; process 0 writes.
  palette = evaluation.parsing_palette(trained.scene.num_classes)
  for i, frame_id in enumerate(frames['frame_id']):
    write_png(os.path.join(out_dir, f'{int(frame_id):05d}.png'),
              rendered['rgb'][i])
    write_png(os.path.join(out_dir, f'parsing_{int(frame_id):05d}.png'),
              palette[rendered['class_id'][i]])
  waveform = val_segment(input_pipeline.load_waveform(trained.builder),
                         frames['frame_id'], trained.scene.fps)
  video.write_mp4(os.path.join(out_dir, 'val.mp4'), rendered['rgb'],
                  trained.scene.fps, waveform, audio_features.SAMPLE_RATE)
  evaluation.write_json_atomic(os.path.join(out_dir, 'metrics.json'), result)
  return result
