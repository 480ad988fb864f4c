"""Video preprocessing end to end: a synthetic clip with exact ground truth
-> mp4 with audio -> processed folder, checked against the truth; every bad
input; configs/video.py training on a preprocessed clip.
"""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import soundfile

from configs import tiny
import test_offline_jobs
from configs import video as video_configs
from ssp_nerf_jax.benchmarks import full_frame_seam
from ssp_nerf_jax.benchmarks import preprocess as benchmark
from ssp_nerf_jax.data import adnerf_folder
from ssp_nerf_jax.data import builds
from ssp_nerf_jax.data import input_pipeline
from ssp_nerf_jax.data import portrait_dataset
from ssp_nerf_jax.models import mouth_readout
from ssp_nerf_jax.offline import job_inputs
from ssp_nerf_jax.offline import jobs
from ssp_nerf_jax.offline import mp4
from ssp_nerf_jax.offline import trained
from ssp_nerf_jax.preprocess import decode
from ssp_nerf_jax.preprocess import pipeline
from ssp_nerf_jax.rendering import rigid
from ssp_nerf_jax.runtime import errors
from ssp_nerf_jax import synthetic
from ssp_nerf_jax.training import experiment
from ssp_nerf_jax.training import train

SIZE = 128
DURATION_S = 4.0
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def clip():
  return synthetic.generate_clip(size=SIZE, duration_s=DURATION_S, seed=1)


@pytest.fixture(scope='module')
def clip_mp4(clip, tmp_path_factory):
  return benchmark.write_clip(
      clip, str(tmp_path_factory.mktemp('clip') / 'clip.mp4'))


@pytest.fixture(scope='module')
def processed(clip_mp4, tmp_path_factory):
  out = str(tmp_path_factory.mktemp('processed') / 'folder')
  summary = pipeline.preprocess_video(clip_mp4, out, SIZE)
  return out, summary


def test_folder_is_read_by_the_adnerf_reader(processed):
  out, summary = processed
  folder = adnerf_folder.read_folder(out)
  assert folder.scheme.name == 'ssp'
  assert len(folder.frames()) == summary.num_frames == round(DURATION_S * 25)
  assert (folder.height, folder.width) == (SIZE, SIZE)
  assert folder.wav_path is not None
  lms = np.load(os.path.join(out, pipeline.LANDMARKS_FILE))
  assert lms.shape == (summary.num_frames, 478, 3)
  with open(os.path.join(out, 'transforms_train.json')) as f:
    frame = json.load(f)['frames'][0]
  assert 0.0 < frame['eye_openness'] < 1.0
  records = folder.frames()
  mouth = np.array([r.mouth_open for r in records])
  assert np.all((mouth >= 0) & (mouth <= 1)) and mouth.max() == 1.0
  eyes = np.array([r.eye_openness for r in records])
  assert np.all((eyes > 0) & (eyes < 1))
  assert len(frame['face_rect']) == 4
  line = summary.line()
  assert f'{summary.num_frames} frames (25.00 -> 25 fps)' in line
  assert f'-> {SIZE} px' in line and 'focal' in line


def test_matches_ground_truth(processed, clip):
  out, _ = processed
  result = benchmark.compare(out, clip)
  # Loose bounds at 128 px; benchmarks.preprocess reports the figures.
  assert result['rotation_error_deg']['median'] < 3.0
  assert result['rotation_error_deg']['p95'] < 6.0
  assert abs(result['focal']['relative_error']) < 0.5
  assert result['parsing']['miou'] > 0.5
  assert result['parsing']['mouth_iou'] > 0.4
  assert result['mouth_open_r'] > 0.6


def test_crop_maps_source_pixels(processed):
  out, _ = processed
  with open(os.path.join(out, pipeline.INFO_FILE)) as f:
    info = json.load(f)
  crop = info['crop']
  assert 0 <= crop['x'] and crop['x'] + crop['side'] <= SIZE
  assert 0 <= crop['y'] and crop['y'] + crop['side'] <= SIZE
  assert info['scale'] == pytest.approx(SIZE / crop['side'])
  assert info['source_size'] == [SIZE, SIZE]


# ------------------------------------------------------------ bad input --


def write(path, frames, audio, rate=16_000):
  return mp4.write_mp4(str(path), frames, 25.0, audio, rate)


def bad_clips(clip, tmp):
  """{name: (video path, message regex)} of unusable inputs."""
  frames, audio = clip.images, clip.audio
  two_faces = np.concatenate([frames, frames], axis=2)
  lost = frames.copy()
  lost[25:65] = clip.background  # 1.6 s without a face
  blank = np.broadcast_to(clip.background, frames.shape)
  short = int(1.5 * 25)
  garbage = tmp / 'garbage.mp4'
  garbage.write_bytes(np.random.default_rng(0).bytes(5000))
  return {
      'no_face': (write(tmp / 'no_face.mp4', blank, audio), 'no face found'),
      'several': (write(tmp / 'several.mp4', two_faces, audio),
                  'several faces'),
      'lost': (write(tmp / 'lost.mp4', lost, audio), 'lost for'),
      'no_audio': (write(tmp / 'no_audio.mp4', frames, None), 'audio'),
      'silent': (write(tmp / 'silent.mp4', frames, np.zeros_like(audio)),
                 'silent'),
      'short': (write(tmp / 'short.mp4', frames[:short],
                      audio[:short * 640]), 'at least 2 s'),
      'unreadable': (str(garbage), 'garbage.mp4'),
      'missing': (str(tmp / 'nothing.mp4'), 'nothing.mp4'),
  }


def test_each_bad_video_is_one_clear_error(clip, tmp_path):
  for name, (path, message) in bad_clips(clip, tmp_path).items():
    out = tmp_path / f'out_{name}'
    with pytest.raises(errors.UserError, match=message) as info:
      pipeline.preprocess_video(path, str(out), 64)
    text = str(info.value)
    assert '\n' not in text, name
    assert os.path.basename(path) in text, (name, text)
    assert not out.exists(), name
  leftovers = [p for p in os.listdir(tmp_path) if '.partial-' in p]
  assert not leftovers


def test_bad_output_folder(clip_mp4, tmp_path):
  taken = tmp_path / 'taken'
  taken.mkdir()
  (taken / 'x').write_text('x')
  with pytest.raises(errors.UserError, match='already exists'):
    pipeline.preprocess_video(clip_mp4, str(taken), 64)
  not_a_dir = tmp_path / 'file'
  not_a_dir.write_text('x')
  with pytest.raises(errors.UserError, match='not writable'):
    pipeline.preprocess_video(clip_mp4, str(not_a_dir / 'out'), 64)


def test_command_line_error_is_one_line(tmp_path):
  result = subprocess.run(
      [sys.executable, '-m', 'ssp_nerf_jax.preprocess',
       f'--video={tmp_path / "absent.mp4"}', f'--out={tmp_path / "out"}'],
      capture_output=True, text=True, cwd=REPO, check=False)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1].startswith('error: ')
  assert 'absent.mp4' in result.stderr
  assert 'Traceback' not in result.stderr
  assert not (tmp_path / 'out').exists()


# --------------------------------------------------------- video config --


def test_video_configs_pass_validation():
  for variant in ('', 'cpu'):
    experiment.validate_config(video_configs.get_config(variant))
  config = video_configs.get_config('cpu')
  config.train.rays_per_frame = 480  # not whole chunks of 64 rays
  with pytest.raises(errors.UserError, match='ray_chunk=64'):
    experiment.validate_config(config)


@pytest.fixture(scope='module')
def video_run(clip_mp4, tmp_path_factory):
  """(config, workdir) of configs/tiny.py trained 2 steps on the clip as a
  video config (as configs/video.py: mouth region, Whisper features)."""
  tmp_path = tmp_path_factory.mktemp('video_run')
  config = tiny.get_config()
  config.data.builder_config = 'video'
  config.data.video = clip_mp4
  config.data.video_size = 64
  config.data.resolution = 32
  config.model.mouth_condition = True  # as configs/video.py
  config.model.mouth_region_radius = 0.6
  config.model.audio_in_mouth_region = True
  config.sampling.mouth_share = 0.25
  config.data.audio_feature = 'whisper'  # the installed model's features
  config.data.audio_dim = 384
  config.data.data_dir = str(tmp_path / 'data')
  config.train.num_steps = 2
  config.train.eval_every = 2
  config.train.checkpoint_every = 2
  workdir = tmp_path / 'workdir'
  train.train_and_evaluate(config.copy_and_resolve_references(), str(workdir))
  return config, workdir


def test_video_config_trains_end_to_end(clip_mp4, video_run, tmp_path):
  config, workdir = video_run
  config = config.copy_and_resolve_references()
  with open(workdir / 'config.json') as f:
    saved = json.load(f)['data']
  assert saved['builder_config'] == 'adnerf'
  assert saved['video'] == clip_mp4
  assert os.path.isdir(saved['path'])
  assert (workdir / 'eval_metrics.json').is_file()
  # The read-out fitted on the measured openings, unchanged by training.
  run = trained.load_trained(str(workdir))
  fitted = mouth_readout.fit_readout(
      input_pipeline.load_feature(run.builder, 'train', 'audio'),
      input_pipeline.load_feature(run.builder, 'train', 'mouth_open'),
      run.model.mouth_quantile_knots)
  assert fitted['r_cv'] > 0.3 and np.any(fitted['weights'] != 0)
  for name, value in run.params['params']['mouth_readout'].items():
    np.testing.assert_array_equal(value, fitted[name])
  # So is where the opening acts: around the lips of the preprocessed
  # parsing (the clip's head is 0.12 head units tall).
  region = run.params['params']['mouth_region']
  refitted = experiment.setup(run.config).mouth_region(region)
  for name, value in region.items():
    np.testing.assert_array_equal(value, refitted[name])
  assert 0.005 < region['radius'] < 0.05
  # Renders read a given opening (render_main --mouth=measured); without
  # one, the read-out's prediction from the frame's audio.
  val = input_pipeline.load_split(run.config, run.builder, 'val')
  # Two steps leave the field empty: give it density so that it shows.
  dense = jax.tree_util.tree_map_with_path(
      lambda path, x: x + 3.0 if 'sigma' in jax.tree_util.keystr(path) and
      'bias' in jax.tree_util.keystr(path) else x, run.params)
  bound = jobs.make_renderer(run._replace(params=dense))
  bound = bound._replace(occupancy=False)
  c2w, audio = val['c2w'][0], val['audio'][0]
  shut, wide, predicted = (
      jobs.render_one(bound, c2w, audio, mouth)['semantics']
      for mouth in (0.0, 1.0, None))
  assert np.abs(shut - wide).max() > 1e-4
  opening = run.model.apply(dense, audio[None],
                            method=run.model.mouth_opening)[0]
  np.testing.assert_allclose(
      jobs.render_one(bound, c2w, audio,
                      float(opening))['semantics'], predicted,
      atol=1e-7)
  # New speech is encoded by the same speech model at render time; another
  # model (other weights) is refused before anything is rendered.
  speech = tmp_path / 'speech.wav'
  soundfile.write(speech, np.sin(np.arange(16000) / 5.0) * 0.3, 16000)
  windows, _ = job_inputs.audio_windows(str(speech), run)
  assert windows.shape == (25, config.data.audio_context, 16, 384)
  other = tmp_path / 'other_model'
  other.mkdir()
  (other / 'model.bin').write_bytes(b'other weights')
  run.config.data.speech_model = str(other)
  with pytest.raises(errors.UserError, match='speech model'):
    job_inputs.audio_windows(str(speech), run)
  # The cache: the same video (any name) is not preprocessed again.
  copy = tmp_path / 'renamed.mp4'
  copy.write_bytes(open(clip_mp4, 'rb').read())
  config.data.video = str(copy)
  assert builds.resolve_video(config).data.path == saved['path']


def test_full_frame_seam_benchmark_on_the_folders_own_frames(processed):
  """The folder's frames pasted back: feathered box sides show less of a
  step than a hard paste's."""
  out, summary = processed
  result = full_frame_seam.measure(out, None, 32, None)
  assert result['box'] == tuple(summary.crop)
  assert result['feathered']['box_sides'] < result['hard_paste']['box_sides']


def run_render_main(*args):
  import render_main  # pylint: disable=g-import-not-at-top
  render_main.FLAGS.unparse_flags()
  render_main.FLAGS(['render_main', *args])
  try:
    render_main.main(['render_main'])
  finally:
    render_main.FLAGS.unparse_flags()


def test_render_main_pastes_renders_into_the_source_frames(
    clip_mp4, video_run, tmp_path):
  """--full_frame: the source frames of the train track at the source size,
  with the crop rendered; val gets val_full_frame.mp4."""
  _, workdir = video_run
  speech = tmp_path / 'speech.wav'
  seconds = 1.2  # test_full_frame checks the track's order for long audio
  soundfile.write(speech, 0.3 * np.sin(np.arange(int(seconds * 16000)) / 5.0),
                  16000)
  run_render_main(f'--workdir={workdir}', f'--audio={speech}',
                  f'--out={tmp_path / "out"}', '--full_frame', '--nooccupancy')
  path = str(tmp_path / 'out' / 'speech_full_frame.mp4')
  num_frames = round(seconds * 25)
  assert mp4.count_frames_and_audio(path)[0] == num_frames
  written = test_offline_jobs.decode_rgb(path, SIZE, SIZE)
  source = np.stack(list(decode.read_frames(clip_mp4)))
  assert written.shape == (num_frames, SIZE, SIZE, 3)
  with open(os.path.join(trained.load_config(str(workdir)).data.path,
                         pipeline.INFO_FILE)) as f:
    crop = json.load(f)['crop']
  x, y, side = crop['x'], crop['y'], crop['side']
  num_train, num_val = portrait_dataset.split_sizes(len(source))
  ids = rigid.ping_pong_indices(num_frames, num_train)
  out_of_box = np.ones((SIZE, SIZE), bool)
  out_of_box[y:y + side, x:x + side] = False
  # H.264 twice (the source, the output): close, not equal, off the crop.
  error = np.abs(written.astype(float) - source[ids])
  assert error[:, out_of_box].mean() < 2.0
  assert error[:, ~out_of_box].mean() > error[:, out_of_box].mean()
  run_render_main(f'--workdir={workdir}', '--split=val',
                  f'--out={tmp_path / "val"}', '--nooccupancy')
  val = str(tmp_path / 'val' / 'val_full_frame.mp4')
  assert mp4.count_frames_and_audio(val)[0] == num_val
  with pytest.raises(SystemExit, match=r'^error: --source_video .*absent'
                     r'.mp4: no such file$'):
    run_render_main(f'--workdir={workdir}', f'--audio={speech}',
                    f'--out={tmp_path / "out2"}', '--full_frame',
                    f'--source_video={tmp_path / "absent.mp4"}')
  assert not (tmp_path / 'out2').exists()


def test_mediapipe_and_tfds_share_one_protobuf():
  """The install pins protobuf 6: mediapipe breaks on 7, TFDS on 5."""
  import google.protobuf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets.core  # pylint: disable=g-import-not-at-top,unused-import
  from ssp_nerf_jax.preprocess import landmarks  # pylint: disable=g-import-not-at-top
  assert google.protobuf.__version__.startswith('6.'), (
      f'protobuf {google.protobuf.__version__}: reinstall with '
      "pip install -e . (it pins protobuf>=6.33.5,<7)")
  with landmarks.FaceMesh(tracking=False) as mesh:
    assert mesh(np.zeros((64, 64, 3), np.uint8)) is None
