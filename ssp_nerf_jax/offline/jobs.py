"""Offline jobs on a trained workdir: new audio -> mp4, the val split rendered
and scored.  Frames stream into ffmpeg as they are rendered, and every frame
of a job shares one compilation."""
import collections
import contextlib
import os
import time
from typing import Optional

from absl import logging
import imageio.v3 as iio
import jax
import numpy as np
import tqdm

from ssp_nerf_jax.data import audio_features
from ssp_nerf_jax.data import input_pipeline
from ssp_nerf_jax.data import parsing_schemes
from ssp_nerf_jax.evaluation import mouth_strip
from ssp_nerf_jax.evaluation import scores
from ssp_nerf_jax.offline import full_frame
from ssp_nerf_jax.offline import job_inputs
from ssp_nerf_jax.offline import mp4
from ssp_nerf_jax.offline import trained as trained_lib
from ssp_nerf_jax.rendering import frame_renderer
from ssp_nerf_jax.runtime import errors
from ssp_nerf_jax.runtime import files
from ssp_nerf_jax.runtime import parallel

Trained = trained_lib.Trained

def with_background(trained: Trained, path: str) -> Trained:
  """`trained` compositing over the image at `path` (resized with a warning)."""
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


BoundRenderer = collections.namedtuple('BoundRenderer',
                                       ['renderer', 'params', 'smooth',
                                        'occupancy'])


def make_renderer(trained: Trained, mesh=None) -> BoundRenderer:
  """A FrameRenderer and replicated params, one compilation for many videos;
  with config.occupancy.enabled each frame gets its own occupancy grid."""
  mesh = mesh or parallel.make_data_mesh()
  renderer = frame_renderer.FrameRenderer(trained.config, trained.model,
                                          trained.scene, mesh)
  return BoundRenderer(renderer, parallel.replicate(trained.params, mesh),
                       trained_lib.uses_audio_smoothing(trained),
                       bool(trained.config.occupancy.enabled))


def render_one(bound: BoundRenderer, c2w, audio, mouth=None, eyes=None):
  """`FrameRenderer.render`'s outputs for c2w [4, 4], audio [A, 16, C], a
  mouth opening (None: predicted from the audio) and eye openness (None:
  no eye input)."""
  grid = (bound.renderer.frame_grid(bound.params, c2w, audio, bound.smooth,
                                    mouth, eyes)
          if bound.occupancy else None)
  return bound.renderer.render(bound.params, c2w, audio, bound.smooth, grid,
                               mouth, eyes)


def stream_frames(bound: BoundRenderer, c2w: np.ndarray, audio: np.ndarray,
                  desc: str = 'render', keep_float: bool = False,
                  mouth: Optional[np.ndarray] = None,
                  eyes: Optional[np.ndarray] = None):
  """Yields frames one at a time, each one's rays chunked over the mesh.

  Every process of a multi-process job must consume it to the end: each
  chunk's rays are split over all processes' devices.  c2w float32
  [N, 4, 4], audio [N, A, 16, C], mouth [N] or None (predicted), eyes [N]
  eye openness or None (no eye input).  Yields
  'rgb' uint8 [H, W, 3], 'class_id' uint8 [H, W] and, with keep_float,
  'rgb_float' float32 [H, W, 3].
  """
  if len(c2w) != len(audio):
    raise ValueError(f'{len(c2w)} poses but {len(audio)} audio windows')
  bar = tqdm.tqdm(range(len(c2w)), desc=desc, unit='frame', dynamic_ncols=True,
                  disable=not parallel.is_main_process())
  try:
    for i in bar:
      out = render_one(bound, c2w[i], audio[i],
                       *(None if v is None else v[i] for v in (mouth, eyes)))
      rgb = np.clip(out['rgb'], 0, 1).astype(np.float32)
      frame = {'rgb': frame_renderer.to_uint8(rgb),
               'class_id': out['class_id'].astype(np.uint8)}
      if keep_float:
        frame['rgb_float'] = rgb
      yield frame
  finally:
    bar.close()


def stack_frames(frames: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  """`stream_frames`' dicts of [H, W, ...] -> one dict of [N, H, W, ...]."""
  return {k: np.stack([f[k] for f in frames]) for k in frames[0]}


def render_to_memory(trained: Trained, c2w: np.ndarray, audio: np.ndarray,
                     mesh=None, desc: str = 'render',
                     bound: Optional[BoundRenderer] = None,
                     keep_float: bool = False) -> dict[str, np.ndarray]:
  """`stream_frames`' outputs stacked to [N, ...]; N >= 1.  `bound` reuses a
  compilation, else one is made on `mesh` (default all devices)."""
  bound = bound or make_renderer(trained, mesh)
  return stack_frames(list(stream_frames(bound, c2w, audio, desc, keep_float)))


def video_writer(trained: Trained, path: str, num_frames: int,
                 waveform: Optional[np.ndarray]) -> mp4.Mp4Writer:
  """An mp4 writer at the scene's size and fps, with 16 kHz `waveform`."""
  scene = trained.scene
  return mp4.Mp4Writer(path, scene.width, scene.height, scene.fps, waveform,
                       audio_features.SAMPLE_RATE, num_frames=num_frames)


def consume(frames) -> None:
  """Renders and drops every frame (the processes that do not write)."""
  for _ in frames:
    pass


def check_out_dir(out_dir: str) -> None:
  """Creates `out_dir`; UserError unless a file can really be written."""
  errors.ensure_writable_dir(out_dir, '--out')


def write_png(path: str, image: np.ndarray) -> None:
  iio.imwrite(path, image)


def render_audio(trained: Trained, audio_path: str, out_dir: str,
                 poses: str = 'train', keep_frames: bool = False,
                 parsing: bool = False, mesh=None,
                 bound: Optional[BoundRenderer] = None,
                 inputs=None,
                 source: Optional[full_frame.Source] = None,
                 eyes: Optional[np.ndarray] = None) -> str:
  """Renders one audio file to `<out_dir>/<stem>.mp4`; returns its path.

  audio_path: wav or `.npy` features [N, 16, C]; poses: a `load_track` spec
  or a track [M, 4, 4]; keep_frames, parsing: also PNGs, a parsing mp4;
  inputs: `audio_windows(audio_path, trained)` if computed; source: also
  `<stem>_full_frame.mp4`, the renders pasted into the frames of the source
  video the training track came from (poses must be 'train'); eyes: [N]
  eye openness (`blinks.render_openness`; None: no eye input).  Process 0
  writes.
  """
  windows, waveform = inputs or job_inputs.audio_windows(audio_path, trained)
  c2w = job_inputs.pose_track(poses, trained, len(windows))
  stem = os.path.splitext(os.path.basename(audio_path))[0]
  video_path = os.path.join(out_dir, f'{stem}.mp4')
  frames = stream_frames(bound or make_renderer(trained, mesh), c2w, windows,
                         desc=stem, eyes=eyes)
  if not parallel.is_main_process():
    consume(frames)
    return video_path
  with contextlib.ExitStack() as stack:
    # On any failure every writer removes its partial file.
    sinks = audio_sinks(stack, trained, os.path.join(out_dir, stem),
                        len(windows), waveform, keep_frames, parsing, source)
    for i, frame in enumerate(frames):
      for sink in sinks:
        sink(i, frame)
  return video_path


def audio_sinks(stack: contextlib.ExitStack, trained: Trained, prefix: str,
                num_frames: int, waveform: Optional[np.ndarray],
                keep_frames: bool, parsing: bool,
                source: Optional[full_frame.Source]) -> list:
  """Callables (index, frame) writing `stream_frames`' frames to
  `<prefix>.mp4` and the outputs asked for; writers close with `stack`."""
  writer = stack.enter_context(
      video_writer(trained, prefix + '.mp4', num_frames, waveform))
  sinks = [lambda i, frame: writer.write(frame['rgb'])]
  if parsing:
    palette = parsing_schemes.palette(trained.scene.num_classes)
    parsing_writer = stack.enter_context(video_writer(
        trained, prefix + '_parsing.mp4', num_frames, waveform))
    sinks.append(lambda i, frame: parsing_writer.write(
        palette[frame['class_id']]))
  if keep_frames:
    os.makedirs(prefix, exist_ok=True)
    sinks.append(lambda i, frame: write_png(
        os.path.join(prefix, f'{i:05d}.png'), frame['rgb']))
  if source is not None:
    sinks.append(full_frame_sink(
        stack, trained, source, prefix + '_full_frame.mp4',
        full_frame.track_frame_ids(trained, num_frames), waveform))
  return sinks


def full_frame_sink(stack: contextlib.ExitStack, trained: Trained,
                    source: full_frame.Source, path: str,
                    frame_ids: np.ndarray, waveform: Optional[np.ndarray]):
  """A callable (index, frame) pasting each render into source frame
  frame_ids[index] and writing it to the mp4 at `path` (source size)."""
  writer = stack.enter_context(mp4.Mp4Writer(
      path, source.width, source.height, trained.scene.fps, waveform,
      audio_features.SAMPLE_RATE, num_frames=len(frame_ids)))
  backdrops = stack.enter_context(contextlib.closing(
      full_frame.frames_in_order(source.path, frame_ids, source.fps)))

  def sink(i, frame):
    del i  # frames come in order
    writer.write(full_frame.composite(next(backdrops), frame['rgb'],
                                      frame['class_id'], source.box))
  return sink


def val_segment(waveform: np.ndarray, frame_ids: np.ndarray,
                fps: float) -> np.ndarray:
  """The 16 kHz samples spanning frames frame_ids[0] .. frame_ids[-1]."""
  rate = audio_features.SAMPLE_RATE
  start = int(round(int(frame_ids[0]) / fps * rate))
  stop = int(round((int(frame_ids[-1]) + 1) / fps * rate))
  return waveform[start:stop]


def render_val(trained: Trained, out_dir: str, mesh=None,
               bound: Optional[BoundRenderer] = None,
               mouth: str = 'audio', poses: str = 'refined',
               source: Optional[full_frame.Source] = None) -> dict:
  """Renders and scores the val split into `out_dir`; returns the metrics.

  Process 0 writes PNGs, val.mp4, metrics.json and mouth_strip.png, and with
  a `source` video val_full_frame.mp4.  `mouth` is the opening a
  mouth-conditioned model gets: 'audio' (predicted, as for new audio) or
  'measured' (the frames' own: drawing apart from prediction).  `poses`:
  'refined' (corrected against the val frames after training, with
  config.pose_refinement) or 'fitted' (the preprocessed ones).
  """
  frames = input_pipeline.load_split(trained.config, trained.builder, 'val')
  if not len(frames['frame_id']):
    raise errors.UserError('the dataset has no val frames')
  tick = time.perf_counter()
  if mouth not in ('audio', 'measured'):
    raise errors.UserError(f"the val frames' mouth opening comes from "
                           f"'audio' or 'measured', not {mouth!r}")
  if poses not in ('refined', 'fitted'):
    raise errors.UserError(f"val poses are 'refined' or 'fitted', not "
                           f'{poses!r}')
  frames['c2w'] = trained_lib.split_poses(trained, 'val',
                                          corrected=poses == 'refined')
  openings = frames['mouth_open'] if mouth == 'measured' else None
  stream = stream_frames(bound or make_renderer(trained, mesh), frames['c2w'],
                         frames['audio'], desc='val', keep_float=True,
                         mouth=openings, eyes=frames['eye_openness'])
  if parallel.is_main_process():
    rendered = write_val_frames(trained, out_dir, frames['frame_id'], stream)
    if source is not None:
      write_val_full_frame(trained, out_dir, frames['frame_id'], rendered,
                           source)
  else:
    rendered = list(stream)  # kept for the metrics this process returns
  seconds = time.perf_counter() - tick
  rendered = stack_frames(rendered)
  result = scores.score_val(trained.step, trained.scene.class_names, frames,
                            rendered)
  result['seconds_per_frame'] = seconds / len(frames['frame_id'])
  result['mouth'] = mouth
  if trained.config.pose_refinement.enabled:
    result['val_poses'] = poses
  if parallel.is_main_process():
    strip = mouth_strip.mouth_strip(frames['image'], rendered['rgb'],
                                    frames['parsing'],
                                    trained.scene.class_names,
                                    frames['mouth_open'])
    if strip is not None:
      write_png(os.path.join(out_dir, 'mouth_strip.png'), strip)
    files.write_json(os.path.join(out_dir, 'metrics.json'), result)
  return result


def write_val_frames(trained: Trained, out_dir: str, frame_ids: np.ndarray,
                     stream) -> list[dict[str, np.ndarray]]:
  """Writes `stream`'s val frames (PNGs, val.mp4) as they come; returns them."""
  palette = parsing_schemes.palette(trained.scene.num_classes)
  waveform = val_segment(input_pipeline.load_dataset_waveform(trained.builder),
                         frame_ids, trained.scene.fps)
  rendered = []
  with video_writer(trained, os.path.join(out_dir, 'val.mp4'),
                    len(frame_ids), waveform) as writer:
    for i, frame in enumerate(stream):
      frame_id = int(frame_ids[i])
      write_png(os.path.join(out_dir, f'{frame_id:05d}.png'), frame['rgb'])
      write_png(os.path.join(out_dir, f'parsing_{frame_id:05d}.png'),
                palette[frame['class_id']])
      writer.write(frame['rgb'])
      rendered.append(frame)
  return rendered


def write_val_full_frame(trained: Trained, out_dir: str,
                         frame_ids: np.ndarray, rendered: list,
                         source: full_frame.Source) -> None:
  """val_full_frame.mp4: the val renders pasted into their source frames."""
  waveform = val_segment(input_pipeline.load_dataset_waveform(trained.builder),
                         frame_ids, trained.scene.fps)
  with contextlib.ExitStack() as stack:
    sink = full_frame_sink(stack, trained, source,
                           os.path.join(out_dir, 'val_full_frame.mp4'),
                           frame_ids, waveform)
    for i, frame in enumerate(rendered):
      sink(i, frame)
