"""The project measured on one accelerator, in one process, into one JSON.

  python -m ssp_nerf_jax.benchmarks.accelerator_check --out=DIR [--clip=DIR]
  python -m ssp_nerf_jax.benchmarks.accelerator_check --out=DIR --smoke

Parts, each added to DIR/accelerator_check.json as soon as it ends (a run
cut short keeps the parts before): the device and its peak FLOP rates; the
paper-scale train step (`throughput.measure`) in float32 and bfloat16,
torso warp off and on; with --clip, a processed folder with precomputed
audio (benchmarks/accelerator/prepare.sh makes one) trained for
--train_minutes and scored on its val split (`scores.score_val`), then its
frames rendered at --render_size with and without occupancy grids
(`render_speed.measure_workdir`).  --smoke: the same parts at toy sizes.
"""
import datetime
import importlib.metadata
import os
import signal
import subprocess
import threading
import time

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np

from ssp_nerf_jax import cli
from ssp_nerf_jax.benchmarks import render_speed
from ssp_nerf_jax.benchmarks import throughput
from ssp_nerf_jax.data import builds
from ssp_nerf_jax.data import input_pipeline
from ssp_nerf_jax.evaluation import scores
from ssp_nerf_jax.offline import jobs
from ssp_nerf_jax.offline import trained as trained_lib
from ssp_nerf_jax.preprocess import landmarks
from ssp_nerf_jax.runtime import errors
from ssp_nerf_jax.runtime import files
from ssp_nerf_jax.runtime import preemption
from ssp_nerf_jax.training import train

RESULT_FILE = 'accelerator_check.json'

# Dense (no sparsity) peaks in TFLOP/s from the vendors' data sheets, by a
# part of jax's device_kind, most specific first.  'float32' is the CUDA-core
# rate, 'tf32' the tensor-core rate XLA may use for float32 matmuls; TPUs
# publish no float32 rate, so theirs is measured.
CHIP_PEAKS = (
    ('H100 PCIe', {'bfloat16': 756.0, 'tf32': 378.0, 'float32': 51.2}),
    ('H100 NVL', {'bfloat16': 835.5, 'tf32': 417.5, 'float32': 60.0}),
    ('H200 NVL', {'bfloat16': 835.5, 'tf32': 417.5, 'float32': 60.0}),
    ('H100', {'bfloat16': 989.4, 'tf32': 494.7, 'float32': 66.9}),
    ('H200', {'bfloat16': 989.4, 'tf32': 494.7, 'float32': 66.9}),
    ('A100', {'bfloat16': 312.0, 'tf32': 156.0, 'float32': 19.5}),
    ('TPU v4', {'bfloat16': 275.0}),
    ('TPU v5 lite', {'bfloat16': 197.0}),
    ('TPU v5e', {'bfloat16': 197.0}),
    ('TPU v5p', {'bfloat16': 459.0}),
    ('TPU v5', {'bfloat16': 459.0}),
)
# Peaks a float32 / bfloat16 step is compared with.
COMPARED_PEAKS = {'float32': ('float32', 'tf32'), 'bfloat16': ('bfloat16',)}
# (model.dtype, model.torso_warp) of the measured train steps; --smoke
# compiles two, which still take each dtype and each warp setting.
STEP_VARIANTS = tuple((dtype, warp) for dtype in ('bfloat16', 'float32')
                      for warp in (False, True))
SMOKE_STEP_VARIANTS = (('bfloat16', True), ('float32', False))
# --smoke: toy sizes for every config (configs/tiny.py's model and rays).
SMOKE_SETTINGS = {
    'data.size': 32, 'model.xyz_freqs': 4, 'model.dir_freqs': 2,
    'model.depth': 2, 'model.width': 32, 'model.skip_layer': 1,
    'model.view_width': 16, 'model.audio_code_dim': 8,
    'model.warp_width': 16, 'render.num_coarse': 8, 'render.num_fine': 8,
    'render.chunk': 1024, 'train.rays_per_frame': 64, 'train.ray_chunk': 32,
    'occupancy.resolution': 16, 'occupancy.march_steps': 32,
}
SMOKE_MATMUL_SHAPES = ((256, 256, 256),)
SMOKE_CLIP_RESOLUTION = 32
SMOKE_RENDER_SIZE = 40
SMOKE_TRAIN_MINUTES = 0.05
# The clip run's settings that its figures depend on, recorded with them.
CLIP_SETTINGS = ('data.resolution', 'data.audio_feature', 'data.audio_file',
                 'data.audio_dim', 'model.depth', 'model.width', 'model.dtype',
                 'model.torso_warp', 'render.num_coarse', 'render.num_fine',
                 'train.rays_per_frame', 'sampling.strategy')


class Report:
  """The JSON being filled: rewritten whole (atomically) after each part."""

  def __init__(self, path, header):
    self.path = path
    self.start = time.perf_counter()
    self.record = dict(header)
    self.save()

  def set(self, key, value):
    """Sets `key` (`json_safe`) and rewrites the file with the time spent
    so far."""
    self.record[key] = json_safe(value)
    self.save()

  def save(self):
    self.record['elapsed_s'] = time.perf_counter() - self.start
    files.write_json(self.path, self.record)

  def part(self, key, measure, *args):
    """`measure(*args)` stored as `key`; its failure is stored instead, so
    that one part's error leaves the others' figures."""
    try:
      self.set(key, measure(*args))
    except Exception as e:  # pylint: disable=broad-except
      logging.exception('part %s failed', key)
      self.set(key, {'error': f'{type(e).__name__}: {e}'})


def json_safe(value):
  """`value` with NaN and infinite floats as None (null): strict JSON
  readers reject Infinity, which identical renders' PSNR is."""
  if isinstance(value, dict):
    return {k: json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_safe(v) for v in value]
  if isinstance(value, (float, np.floating)):
    return float(value) if np.isfinite(value) else None
  return value


def with_settings(config, settings):
  """A copy of `config` with dotted `settings` ({'model.width': 32})."""
  config = config.copy_and_resolve_references()
  for name, value in settings.items():
    section, field = name.split('.')
    config[section][field] = value
  return config


def source_commit(given):
  """`given` (the commit prepare.sh recorded), else this checkout's HEAD,
  else None: git may be absent where the check runs."""
  if given:
    return given
  try:
    return subprocess.run(
        ['git', 'rev-parse', 'HEAD'], capture_output=True, text=True,
        check=True, timeout=10,
        cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None


def device_info():
  """The first device, how many there are, and the JAX versions."""
  device = jax.devices()[0]
  try:
    jaxlib_version = importlib.metadata.version('jaxlib')
  except importlib.metadata.PackageNotFoundError:
    jaxlib_version = None
  return {'platform': device.platform, 'device_kind': device.device_kind,
          'device_count': jax.device_count(), 'jax_version': jax.__version__,
          'jaxlib_version': jaxlib_version,
          'memory_stats_available': device_memory() is not None}


def device_memory():
  """The first device's bytes in use, their high-water mark since the
  process started, and its limit; None where the backend keeps no stats."""
  stats = jax.devices()[0].memory_stats()
  if not stats:
    return None
  return {k: stats.get(k) for k in ('bytes_in_use', 'peak_bytes_in_use',
                                    'bytes_limit')}


def chip_peaks(device_kind, matmul_shapes):
  """{dtype: {'tflops', 'source'}}: CHIP_PEAKS' entry for `device_kind`,
  bfloat16 and float32 matmuls measured where it has none."""
  table = next((peaks for name, peaks in CHIP_PEAKS if name in device_kind),
               {})
  peaks = {dtype: {'tflops': value, 'source': 'table'}
           for dtype, value in table.items()}
  for dtype in ('bfloat16', 'float32'):
    if dtype not in peaks:
      gflops = throughput.matmul_peak_gflops(dtype=jnp.dtype(dtype),
                                             shapes=matmul_shapes)
      peaks[dtype] = {'tflops': gflops / 1e3, 'source': 'measured matmul'}
  return peaks


def train_step_figures(config, peaks, steps, warmup):
  """`throughput.measure` of `config`, its share of each compared peak and
  the device memory after it."""
  result = throughput.measure(config, steps, warmup)
  achieved = result['achieved_gflops'] / 1e3
  result.update(
      torso_warp=bool(config.model.torso_warp), achieved_tflops=achieved,
      share_of_peak={name: achieved / peaks[name]['tflops']
                     for name in COMPARED_PEAKS[config.model.dtype]
                     if name in peaks},
      device_memory=device_memory())
  return result


def measure_train_steps(report, config, peaks, steps, warmup, variants):
  """`train_step_figures` of each (dtype, torso warp) of `variants` into
  report['train_step'], the file rewritten after each."""
  results = []
  for dtype, warp in variants:
    variant = with_settings(config, {'model.dtype': dtype,
                                     'model.torso_warp': warp})
    try:
      results.append(train_step_figures(variant, peaks, steps, warmup))
    except Exception as e:  # pylint: disable=broad-except
      logging.exception('train step %s, torso warp %s failed', dtype, warp)
      results.append({'dtype': dtype, 'torso_warp': warp,
                      'error': f'{type(e).__name__}: {e}'})
    report.set('train_step', results)
  return results


def clip_config(config, clip, audio_file, resolution, data_dir):
  """`config` (configs/video.py's model) on the processed folder `clip`,
  whose precomputed `audio_file` fixes the audio width: no audio model or
  librosa is needed to build its dataset."""
  path = os.path.join(clip, audio_file)
  if not os.path.isfile(path):
    raise errors.UserError(f'--clip {clip} has no {audio_file} (precomputed '
                           'audio; benchmarks/accelerator/prepare.sh makes '
                           'one)')
  audio_dim = int(np.load(path, mmap_mode='r').shape[-1])
  return with_settings(config, {
      'data.builder_config': 'adnerf', 'data.video': '', 'data.path': clip,
      'data.audio_file': audio_file, 'data.audio_dim': audio_dim,
      'data.resolution': resolution, 'data.data_dir': data_dir})


def train_for(config, workdir, minutes):
  """(steps reached, wall seconds): `train.train_and_evaluate` stopped after
  `minutes` by a SIGTERM to this process, which its preemption watcher turns
  into a saved checkpoint, as on a preempted host."""
  timer = threading.Timer(minutes * 60, os.kill,
                          (os.getpid(), signal.SIGTERM))
  tick = time.perf_counter()
  timer.start()
  try:
    train.train_and_evaluate(config, workdir)
    step = config.train.num_steps
  except preemption.Preempted as e:
    step = e.step
  finally:
    timer.cancel()
  return step, time.perf_counter() - tick


def landmark_note(result):
  """Why the val split has no landmark scores, or None if it has them."""
  if result['lmd'] is not None:
    return None
  try:
    with landmarks.FaceMesh(tracking=False):
      pass
  except errors.UserError as e:
    return f'no face mesh: {e}'
  return ('the face mesh found no face in a rendered and a real frame alike '
          f'({result["landmark_frames"]} of {result["num_frames"]} frames)')


def score_val_split(workdir):
  """`scores.score_val` of a workdir's val split rendered in memory (as
  `jobs.render_val`, without its mp4), with the render time per frame."""
  trained = trained_lib.load_trained(workdir)
  frames = input_pipeline.load_split(trained.config, trained.builder, 'val')
  tick = time.perf_counter()
  # The val poses as refined after training (the fitted ones when the
  # time limit stopped training before its last step).
  frames['c2w'] = trained_lib.split_poses(trained, 'val')
  rendered = jobs.render_to_memory(trained, frames['c2w'], frames['audio'],
                                   desc='val', keep_float=True)
  seconds = time.perf_counter() - tick
  result = scores.score_val(trained.step, trained.scene.class_names, frames,
                            rendered)
  result.update(seconds_per_val_frame=seconds / len(frames['frame_id']),
                frame_size=trained.scene.height,
                landmark_note=landmark_note(result))
  return result


def real_clip(report, config, workdir, minutes):
  """The clip's dataset built, `train_for` `minutes`, the val split scored;
  report['real_clip'] filled stage by stage."""
  record = {'minutes': minutes, 'settings': {
      name: config[name.split('.')[0]][name.split('.')[1]]
      for name in CLIP_SETTINGS}}
  tick = time.perf_counter()
  builder = builds.build_dataset(config)
  record.update(dataset=builds.summary(builder),
                dataset_build_s=time.perf_counter() - tick)
  report.set('real_clip', record)
  steps, seconds = train_for(config, workdir, minutes)
  record.update(steps=steps, train_wall_s=seconds,
                device_memory=device_memory())
  report.set('real_clip', record)
  record['val'] = score_val_split(workdir)
  return record


def render_frames(workdir, size, count):
  """`render_speed.measure_workdir` with frames per second added."""
  result = render_speed.measure_workdir(workdir, size, count, {})
  result.update(
      fps_full=1 / result['seconds_per_frame_full'],
      fps_occupancy=1 / result['seconds_per_frame_occupancy'],
      device_memory=device_memory())
  return result


def run(f, out):
  """The check with flags `f`, written to `out`; returns the record."""
  smoke = f.smoke
  settings = SMOKE_SETTINGS if smoke else {}
  if smoke:  # toy programs: compiling them costs more than running them
    jax.config.update('jax_disable_most_optimizations', True)
  report = Report(os.path.join(out, RESULT_FILE), {
      'commit': source_commit(f.commit), 'smoke': smoke,
      'started': datetime.datetime.now(datetime.timezone.utc).isoformat()})
  clip = None
  if f.clip:  # a bad --clip stops the check before anything is measured
    clip = clip_config(
        with_settings(f.clip_config, settings), os.path.abspath(f.clip),
        f.audio_file, SMOKE_CLIP_RESOLUTION if smoke else f.clip_resolution,
        os.path.join(out, 'data'))
  report.set('device', device_info())
  peaks = chip_peaks(report.record['device']['device_kind'],
                     SMOKE_MATMUL_SHAPES if smoke else
                     throughput.MATMUL_SHAPES)
  report.set('peak_tflops', peaks)
  measure_train_steps(report, with_settings(f.config, settings), peaks,
                      f.steps, f.warmup,
                      SMOKE_STEP_VARIANTS if smoke else STEP_VARIANTS)
  if clip is None:
    report.set('real_clip', {'skipped': 'no --clip given'})
    report.set('render', {'skipped': 'renders the --clip run: none given'})
    return report.record
  workdir = os.path.join(out, 'clip_workdir')
  report.part('real_clip', real_clip, report, clip, workdir,
              SMOKE_TRAIN_MINUTES if smoke else f.train_minutes)
  report.part('render', render_frames, workdir,
              SMOKE_RENDER_SIZE if smoke else f.render_size, f.render_frames)
  return report.record


def check_flags(f):
  """UserError naming the first flag no run can use."""
  for name in ('train_minutes', 'render_size', 'render_frames', 'steps'):
    if f[name].value <= 0:
      raise errors.UserError(f'--{name} must be positive, got '
                             f'{f[name].value}')
  if f.clip and not os.path.isdir(f.clip):
    raise errors.UserError(f'--clip {f.clip} is not a folder')


def main(argv):
  cli.start(argv)
  cli.require('out', example='--out=/tmp/accelerator_check')
  f = flags.FLAGS

  def check():
    check_flags(f)
    errors.ensure_writable_dir(f.out, '--out')
    return run(f, f.out)
  cli.print_json(cli.exit_on_user_error(check))


def define_flags():
  config_flags.DEFINE_config_file('config', 'configs/default.py',
                                  'Config of the measured train step.')
  config_flags.DEFINE_config_file('clip_config', 'configs/video.py',
                                  'Config the --clip trains with.')
  flags.DEFINE_string('out', None, 'Folder for the JSON, the dataset build '
                      'and the clip run.')
  flags.DEFINE_boolean('smoke', False, 'Toy sizes: checks every part runs.')
  flags.DEFINE_string('clip', None, 'A processed folder with precomputed '
                      'audio (prepare.sh); none: no real training, no render.')
  flags.DEFINE_string('audio_file', 'aud_whisper.npy', "The --clip's audio "
                      'features [N, S, C].')
  flags.DEFINE_integer('clip_resolution', 0, 'Frame size the clip trains at '
                       "(0: the folder's).")
  flags.DEFINE_float('train_minutes', 2.5, 'Wall minutes of clip training '
                     '(set up and compile included).')
  flags.DEFINE_integer('render_size', 450, 'Frame size of the render part.')
  flags.DEFINE_integer('render_frames', 2, 'Val frames of the render part.')
  flags.DEFINE_integer('steps', 20, 'Timed train steps per variant (the '
                       'median is reported).')
  flags.DEFINE_integer('warmup', 3, 'Untimed steps after compilation.')
  flags.DEFINE_string('commit', '', 'The source commit (prepare.sh records '
                      "it); default this checkout's git HEAD.")


if __name__ == '__main__':
  define_flags()
  app.run(main)
