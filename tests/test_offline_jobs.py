"""Offline rendering: val scoring, audio -> mp4 with sound, poses, bad input,
streaming into ffmpeg, and two render_main.py processes rendering together.
"""
import json
import os
import subprocess
import time

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest
import soundfile

from configs import tiny
import processes
from ssp_nerf_jax.data import input_pipeline
from ssp_nerf_jax.evaluation import metrics as metrics_lib
from ssp_nerf_jax.evaluation import scores
from ssp_nerf_jax.offline import job_inputs
from ssp_nerf_jax.offline import jobs
from ssp_nerf_jax.offline import mp4
from ssp_nerf_jax.offline import trained as trained_lib
from ssp_nerf_jax.rendering import rigid
from ssp_nerf_jax.runtime import errors
from ssp_nerf_jax import synthetic
from ssp_nerf_jax.training import experiment


@pytest.fixture(scope='module')
def workdir(tiny_workdir):
  """The session's trained tiny workdir (configs/tiny.py, 6 steps); the
  offline jobs only read it."""
  return tiny_workdir


@pytest.fixture(scope='module')
def trained(workdir):
  return trained_lib.load_trained(workdir)


def write_sine(path, seconds, rate=44_100):
  """A stereo 440 Hz sine, [T, 2] as soundfile writes it."""
  t = np.arange(int(seconds * rate)) / rate
  tone = 0.3 * np.sin(2 * np.pi * 440 * t)
  soundfile.write(path, np.stack([tone, tone], axis=1), rate)
  return str(path)


@pytest.fixture(scope='module')
def val_here(trained, tmp_path_factory):
  """(out dir, metrics) of the val split rendered in this process."""
  out = tmp_path_factory.mktemp('val_here')
  return out, jobs.render_val(trained, str(out))


def test_val_split_writes_images_video_and_finite_metrics(trained, val_here):
  assert trained.step == tiny.get_config().train.num_steps
  tmp_path, result = val_here
  metrics = json.load(open(tmp_path / 'metrics.json'))
  assert metrics == result
  for name in ('psnr', 'ssim', 'miou'):
    assert np.isfinite(metrics[name]), name
  # The benchmarks' grouped regions, all present in 11-class parsing.
  assert set(metrics['region_psnr']) == set(metrics_lib.REGIONS)
  assert all(np.isfinite(v) for v in metrics['region_psnr'].values())
  # The untrained model's renders may show no face: the landmark metrics
  # are then null, but they are always reported.
  assert 0 <= metrics['landmark_frames'] <= trained.scene.num_val
  if metrics['landmark_frames']:
    assert metrics['lmd'] >= 0
  else:
    assert metrics['lmd'] is None and metrics['mouth_sync'] is None
  for name in ('mouth_sync', 'mouth_area_sync'):
    assert metrics[name] is None or -1 <= metrics[name] <= 1, name
  num_val = trained.scene.num_val
  pngs = [n for n in os.listdir(tmp_path) if n.endswith('.png')]
  assert len(pngs) == 2 * num_val + 1
  assert sum(n.startswith('parsing_') for n in pngs) == num_val
  # The mouths at a glance: real over rendered crops of open and shut ones.
  strip = iio.imread(tmp_path / 'mouth_strip.png')
  assert strip.ndim == 3 and strip.shape[1] > strip.shape[0]  # 2+ columns
  frames, audio_s = mp4.count_frames_and_audio(str(tmp_path / 'val.mp4'))
  assert frames == num_val
  assert audio_s == pytest.approx(num_val / trained.scene.fps, abs=0.05)


def test_wav_renders_mp4_with_sound(trained, tmp_path):
  wav = write_sine(tmp_path / 'tone.wav', 1.0)
  out = tmp_path / 'out'
  jobs.check_out_dir(str(out))
  written = jobs.render_audio(trained, wav, str(out), poses='train')
  assert written == str(out / 'tone.mp4')
  assert os.listdir(out) == ['tone.mp4']  # no .partial.mp4 left over
  frames, audio_s = mp4.count_frames_and_audio(written)
  assert frames == 25
  assert audio_s == pytest.approx(1.0, abs=0.05)


def test_pingpong_indices():
  np.testing.assert_array_equal(rigid.ping_pong_indices(9, 3),
                                [0, 1, 2, 1, 0, 1, 2, 1, 0])
  np.testing.assert_array_equal(rigid.ping_pong_indices(3, 4), [0, 1, 2])
  np.testing.assert_array_equal(rigid.ping_pong_indices(3, 1), [0, 0, 0])


def test_mouth_area_sync_is_pearson_of_mouth_area():
  truth = np.zeros((3, 4, 4), np.uint8)
  truth[1, 0, :2] = 7
  truth[2, :2, :2] = 6
  names = synthetic.CLASS_NAMES
  np.testing.assert_array_equal(scores.mouth_area(truth, names), [0, 2, 4])
  four_classes = ('background', 'head', 'neck', 'torso')
  assert scores.mouth_area(truth, four_classes) is None
  assert scores.mouth_area_sync(truth, truth, names) == pytest.approx(1.0)
  assert scores.mouth_area_sync(truth[::-1], truth,
                                names) == pytest.approx(-1.0)
  assert scores.mouth_area_sync(truth, truth, four_classes) is None
  # A constant mouth area has no correlation.
  assert scores.mouth_area_sync(np.zeros_like(truth), truth, names) is None


def test_a_perfect_render_scores_lmd_zero_and_full_sync(trained):
  """score_val's landmark metrics on the val frames themselves: the real
  frames (32 px synthetic faces) have faces, unlike the tiny renders."""
  frames = input_pipeline.load_split(trained.config, trained.builder, 'val')
  perfect = {'rgb': frames['image'], 'class_id': frames['parsing'],
             'rgb_float': frames['image'].astype(np.float32) / 255}
  result = scores.score_val(trained.step, trained.scene.class_names,
                            frames, perfect)
  assert 1 <= result['landmark_frames'] <= len(frames['image'])
  assert result['lmd'] == 0
  assert result['mouth_sync'] is None or result['mouth_sync'] == (
      pytest.approx(1.0))
  assert result['mouth_area_sync'] == pytest.approx(1.0)
  assert 'landmark_frames=' in scores.val_summary(result)


def test_missing_or_empty_workdir(tmp_path):
  with pytest.raises(errors.UserError, match='nope does not exist'):
    trained_lib.load_trained(str(tmp_path / 'nope'))
  with pytest.raises(errors.UserError, match='is empty'):
    trained_lib.load_trained(str(tmp_path))


def test_workdir_without_checkpoint(trained, tmp_path):
  del trained  # only its config.json layout matters
  (tmp_path / 'config.json').write_text(
      tiny.get_config().to_json_best_effort())
  with pytest.raises(errors.UserError, match='no checkpoint in .*checkpoints'):
    trained_lib.load_trained(str(tmp_path))


def test_audio_shorter_than_one_frame(trained, tmp_path):
  wav = write_sine(tmp_path / 'blip.wav', 0.02)
  with pytest.raises(errors.UserError,
                     match='blip.wav is 0.020 s long, shorter than one'):
    job_inputs.audio_windows(wav, trained)


def test_unreadable_audio(trained, tmp_path):
  bad = tmp_path / 'bad.wav'
  bad.write_bytes(b'not audio at all')
  with pytest.raises(errors.UserError, match='cannot read audio .*bad.wav'):
    job_inputs.audio_windows(str(bad), trained)


def test_poses_with_nan(trained, tmp_path):
  matrix = np.eye(4).tolist()
  matrix[0][3] = float('nan')
  path = tmp_path / 'transforms.json'
  path.write_text(json.dumps({'frames': [{'transform_matrix': np.eye(
      4).tolist()}, {'transform_matrix': matrix}]}))
  with pytest.raises(errors.UserError,
                     match='transforms.json: frame 1 has non-finite values'):
    job_inputs.pose_track(str(path), trained, 5)


def test_train_track_is_the_train_splits_poses(trained):
  frames = input_pipeline.load_split(trained.config, trained.builder, 'train')
  np.testing.assert_array_equal(job_inputs.train_poses(trained),
                                frames['c2w'])


def test_train_track_is_rigid_and_static_is_still(trained):
  track = job_inputs.pose_track('train', trained, 3)
  job_inputs.check_rigid(track, 'train track')
  still = job_inputs.pose_track('static', trained, 3)
  np.testing.assert_array_equal(still[0], still[2])


def test_non_rigid_poses_are_rejected(trained, tmp_path):
  del trained
  scaled = (2 * np.eye(4)).tolist()
  scaled[3][3] = 1.0
  path = tmp_path / 'scaled.json'
  path.write_text(json.dumps({'frames': [{'transform_matrix': scaled}]}))
  with pytest.raises(errors.UserError, match='scaled.json: frame 0 is not '
                     'rigid'):
    job_inputs.load_transforms(str(path))


def test_four_devices_render_like_one(trained):
  import jax  # pylint: disable=g-import-not-at-top
  from ssp_nerf_jax.runtime import parallel  # pylint: disable=g-import-not-at-top
  frames = input_pipeline.load_split(
      trained.config, trained.builder, 'val', [0, 1])
  images = [jobs.render_to_memory(
      trained, frames['c2w'], frames['audio'],
      mesh=parallel.make_data_mesh(devices), keep_float=True)['rgb_float']
            for devices in (jax.devices()[:4], jax.devices()[:1])]
  np.testing.assert_allclose(images[0], images[1], atol=1e-5)


def test_background_of_other_size_is_resized(trained, tmp_path):
  path = str(tmp_path / 'plate.png')
  jobs.write_png(path, np.full((7, 9, 3), 255, np.uint8))
  swapped = jobs.with_background(trained, path)
  scene = trained.scene
  assert swapped.scene.background.shape == (scene.height, scene.width, 3)
  np.testing.assert_allclose(swapped.scene.background, 1.0, atol=1e-6)


def test_cli_renders_several_files_and_fails_in_one_line(workdir, trained,
                                                         tmp_path):
  import render_main  # pylint: disable=g-import-not-at-top
  wav = write_sine(tmp_path / 'short.wav', 0.2, rate=8000)
  np.save(tmp_path / 'feats.npy', np.zeros(
      (3, 16, trained.config.data.audio_dim), np.float32))
  out = tmp_path / 'out'
  argv = ['render_main', f'--workdir={workdir}',
          f'--audio={wav}', f'--audio={tmp_path / "feats.npy"}',
          f'--out={out}', '--poses=static']
  render_main.FLAGS.unparse_flags()
  render_main.FLAGS(argv)
  render_main.run()
  assert sorted(os.listdir(out)) == ['feats.mp4', 'short.mp4']
  assert mp4.count_frames_and_audio(str(out / 'feats.mp4')) == (3, 0.0)
  render_main.FLAGS.unparse_flags()
  render_main.FLAGS(argv[:1] + [f'--workdir={tmp_path / "none"}',
                                f'--audio={wav}', f'--out={out}'])
  with pytest.raises(SystemExit, match=r'^error: --workdir .*none does not '
                     'exist$'):
    render_main.main(['render_main'])
  render_main.FLAGS.unparse_flags()


def test_silent_audio(trained, tmp_path):
  path = str(tmp_path / 'quiet.wav')
  soundfile.write(path, np.zeros(16_000, np.float32), 16_000)
  with pytest.raises(errors.UserError, match='quiet.wav is silent'):
    job_inputs.audio_windows(path, trained)


def test_unwritable_out_dir(tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('')
  with pytest.raises(errors.UserError, match='a_file/out is not writable'):
    jobs.check_out_dir(str(blocker / 'out'))


def test_failed_mp4_write_leaves_no_file(tmp_path):
  path = tmp_path / 'clip.mp4'
  frames = np.zeros((2, 4, 4, 3), np.uint8)
  # ffmpeg rejects a frame rate of 0: write_mp4 must clean up after it.
  with pytest.raises(errors.UserError, match='clip.mp4'):
    mp4.write_mp4(str(path), frames, fps=0.0)
  assert not os.listdir(tmp_path)


def gray_frames(count, height, width):
  """uint8 [count, H, W, 3], frame i uniformly 10 + 15 i: easy to recognise
  after lossy encoding."""
  levels = 10 + 15 * np.arange(count, dtype=np.uint8)
  return np.broadcast_to(levels[:, None, None, None],
                         (count, height, width, 3)).copy()


def decode_rgb(path, height, width):
  """uint8 [N, height, width, 3]: the frames of a video, decoded by ffmpeg.

  (Not imageio_ffmpeg.read_frames: its Popen preexec_fn makes JAX warn
  about fork() in a multithreaded process.)
  """
  result = subprocess.run(
      [imageio_ffmpeg.get_ffmpeg_exe(), '-loglevel', 'error', '-i', str(path),
       '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'],
      capture_output=True, check=True)
  return np.frombuffer(result.stdout, np.uint8).reshape(-1, height, width, 3)


def test_streaming_writer_makes_n_frames_with_the_audio_duration(tmp_path):
  path = tmp_path / 'clip.mp4'
  frames = gray_frames(13, 9, 16)  # odd height: padded to 10
  rate = 16_000
  # 0.3 s of audio under 13 / 25 = 0.52 s of video: padded with silence.
  tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(0.3 * rate)) / rate)
  with mp4.Mp4Writer(str(path), 16, 9, 25.0, tone, rate,
                     num_frames=len(frames)) as writer:
    for frame in frames:
      writer.write(frame)
    assert not path.exists()  # nothing under the final name until the end
  assert os.listdir(tmp_path) == ['clip.mp4']
  num_frames, audio_s = mp4.count_frames_and_audio(str(path))
  assert num_frames == 13
  assert audio_s == pytest.approx(13 / 25, abs=0.05)
  decoded = decode_rgb(path, 10, 16)
  # Every frame arrived once, in order.
  np.testing.assert_allclose(decoded[:, :9].mean(axis=(1, 2, 3)),
                             frames.mean(axis=(1, 2, 3)), atol=2)


def test_exception_mid_stream_leaves_no_file(tmp_path):
  path = tmp_path / 'clip.mp4'
  partial = tmp_path / 'clip.mp4.partial.mp4'
  with pytest.raises(RuntimeError, match='renderer failed'):
    with mp4.Mp4Writer(str(path), 16, 16, 25.0,
                       num_frames=10) as writer:
      for frame in gray_frames(3, 16, 16):
        writer.write(frame)
      # ffmpeg has started the file: the clean-up below has work to do.
      deadline = time.monotonic() + 30
      while not partial.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
      assert partial.exists()
      raise RuntimeError('renderer failed')
  assert not os.listdir(tmp_path)


def test_writer_refuses_fewer_frames_than_announced(tmp_path):
  path = tmp_path / 'clip.mp4'
  with pytest.raises(ValueError, match='2 frames written, 3 announced'):
    with mp4.Mp4Writer(str(path), 16, 16, 25.0, np.zeros(100), 16_000,
                       num_frames=3) as writer:
      for frame in gray_frames(2, 16, 16):
        writer.write(frame)
  assert not os.listdir(tmp_path)


def read_pngs(folder):
  """{name: uint8 image} of the PNGs in `folder`."""
  return {name: iio.imread(os.path.join(folder, name))
          for name in sorted(os.listdir(folder)) if name.endswith('.png')}


def test_two_processes_render_val_like_one(workdir, val_here, tmp_path):
  """render_main.py as 2 processes x 2 devices (gloo over 127.0.0.1) writes
  what this process (1 x 4 devices) wrote; only process 0 writes."""
  here_dir, here = val_here
  outs = [tmp_path / 'out', tmp_path / 'out_of_process_1']
  port = processes.free_port()
  # Process 1 gets an --out of its own, as if on another host's disk: it
  # must stay empty (render_main only creates it, checking it is writable).
  runs = [processes.Run(
      processes.render_command(workdir, outs[i], '--split=val',
                               *processes.distributed_flags(port, 2, i)),
      num_devices=2, log_path=tmp_path / f'process_{i}.log')
          for i in range(2)]
  for run in runs:
    assert run.wait(300) == 0, run.output()[-3000:]
  assert 'val: psnr=' in runs[0].output()
  assert ' lmd=' in runs[0].output()
  assert 'val: psnr=' not in runs[1].output()
  assert not os.listdir(outs[1])
  pngs, pngs_here = read_pngs(outs[0]), read_pngs(here_dir)
  assert sorted(pngs) == sorted(pngs_here)
  assert len(pngs) == 2 * here['num_frames'] + 1  # and mouth_strip.png
  for name, image in pngs.items():
    diff = np.abs(image.astype(int) - pngs_here[name].astype(int)).max()
    assert diff <= 1, name
  with open(outs[0] / 'metrics.json') as f:
    metrics = json.load(f)
  assert set(metrics) == set(here)
  for name in ('psnr', 'ssim', 'miou'):
    np.testing.assert_allclose(metrics[name], here[name], rtol=1e-4)
  for region, value in here['region_psnr'].items():
    np.testing.assert_allclose(metrics['region_psnr'][region], value,
                               rtol=1e-4)
  frames, _ = mp4.count_frames_and_audio(str(outs[0] / 'val.mp4'))
  assert frames == here['num_frames']


class FailingRenderer:
  """A FrameRenderer that fails at frame `fail_at`, once the mp4 being
  written has started (ffmpeg has its first frames: the render streams)."""

  def __init__(self, renderer, fail_at, partial):
    self.renderer, self.fail_at, self.partial = renderer, fail_at, partial
    self.calls = 0

  def render(self, *args):
    if self.calls == self.fail_at:
      deadline = time.monotonic() + 30
      while not self.partial.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
      assert self.partial.exists(), 'no frame reached ffmpeg while rendering'
      raise RuntimeError('device lost')
    self.calls += 1
    return self.renderer.render(*args)

  def frame_grid(self, *args):
    return self.renderer.frame_grid(*args)


def test_failure_mid_render_leaves_no_mp4(trained, tmp_path):
  wav = write_sine(tmp_path / 'tone.wav', 0.4)  # 10 frames
  out = tmp_path / 'out'
  out.mkdir()
  bound = jobs.make_renderer(trained)
  failing = FailingRenderer(bound.renderer, 4, out / 'tone.mp4.partial.mp4')
  with pytest.raises(RuntimeError, match='device lost'):
    jobs.render_audio(trained, wav, str(out), poses='static',
                      parsing=True, bound=bound._replace(renderer=failing))
  assert failing.calls == 4
  assert not os.listdir(out)  # neither mp4 nor a .partial file


def test_config_of_an_older_workdir_gains_the_settings_added_since(tmp_path):
  config = tiny.get_config()
  added = ['mouth_share', 'error_map_decay', 'unbiased']
  for name in added:
    del config.sampling[name]
  del config.model.mouth_quantile_knots
  del config.occupancy  # a whole section added later
  (tmp_path / 'config.json').write_text(config.to_json())
  loaded = trained_lib.load_config(str(tmp_path))
  experiment.validate_config(loaded)  # no KeyError: every setting is there
  defaults = trained_lib.default_config()
  for name in added:
    assert loaded.sampling[name] == defaults.sampling[name]
  assert loaded.occupancy.to_dict() == defaults.occupancy.to_dict()
  # Parameters trained without quantile knots have none.
  assert loaded.model.mouth_quantile_knots == 0 != defaults.model.mouth_quantile_knots
