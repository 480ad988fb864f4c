"""The `adnerf` builder config: processed folders in, TFDS examples out.

Round trips against what the fixtures wrote (both parsing schemes, with and
without face_rect, wav and .npy audio), intrinsics under resize, one error
listing every problem of a broken folder, and a short training run.
"""
import json
import logging
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from adnerf_fixtures import adnerf_config
from adnerf_fixtures import read_json
from adnerf_fixtures import write_folder
from adnerf_fixtures import write_image
from adnerf_fixtures import write_json
from configs import adnerf as adnerf_configs
from configs import synthetic as synthetic_configs
from ssp_nerf_jax.data import adnerf_folder
from ssp_nerf_jax.data import audio_features
from ssp_nerf_jax.data import builds
from ssp_nerf_jax.data import input_pipeline
from ssp_nerf_jax.data import parsing_schemes
from ssp_nerf_jax.data import portrait_dataset
from ssp_nerf_jax.data import scene as scene_lib
from ssp_nerf_jax.runtime import errors
from ssp_nerf_jax.training import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build(path, data_dir, **kwargs):
  config = adnerf_config(path, data_dir, **kwargs)
  return config, builds.build_dataset(config)


def read_split(config, builder, split):
  return input_pipeline.load_split(config, builder, split)


def test_round_trip_4_classes_wav_face_rect(tmp_path):
  written = write_folder(tmp_path / 'clip')
  config, builder = build(tmp_path / 'clip', tmp_path / 'tfds')
  train_frames = read_split(config, builder, 'train')
  val_frames = read_split(config, builder, 'val')
  frames = {k: np.concatenate([train_frames[k], val_frames[k]])
            for k in train_frames}
  assert len(train_frames['image']) == 10 and len(val_frames['image']) == 2
  np.testing.assert_array_equal(frames['frame_id'], written['img_ids'])
  np.testing.assert_array_equal(frames['image'], written['images'])
  np.testing.assert_array_equal(frames['parsing'], written['ids'])
  np.testing.assert_allclose(frames['c2w'], written['c2w'], atol=1e-6)
  np.testing.assert_array_equal(frames['face_rect'], written['face_rect'])
  assert np.all(np.isnan(frames['mouth_open']))  # not in these jsons
  assert np.all(np.isnan(frames['eye_openness']))
  # Audio: our librosa windows of aud.wav (16-bit PCM as written) at each
  # aud_id (= img_id here).
  waveform = audio_features.load_audio(tmp_path / 'clip' / 'aud.wav')
  features = audio_features.compute_features(
      waveform, 16000, dim=8, num_frames=written['img_ids'][-1] + 1)
  expected = audio_features.context_windows(features, 8)[written['img_ids']]
  np.testing.assert_allclose(frames['audio'], expected, atol=1e-5)

  scene = scene_lib.load_scene_info(builder)
  assert scene.class_names == ('background', 'head', 'neck', 'torso')
  assert scene.num_classes == 4
  assert (scene.height, scene.width, scene.audio_window_steps) == (32, 32, 16)
  assert (scene.focal, scene.cx, scene.cy) == pytest.approx(
      (written['focal'], 16.0, 16.0))
  distance = np.linalg.norm(written['c2w'][:, :3, 3], axis=-1).mean()
  assert (scene.near, scene.far) == pytest.approx(
      (distance - 0.2, distance + 0.4))
  np.testing.assert_array_equal(builder.info.metadata['background'],
                                written['background'])
  np.testing.assert_allclose(input_pipeline.load_dataset_waveform(builder),
                             written['waveform'], atol=1e-4)


def test_round_trip_11_classes_npy_no_face_rect_resized(tmp_path):
  # 64 px source, trained at 32 px: every 2x2 block of the id map is one
  # class, so nearest resizing must give the 32 px ids back exactly.
  written = write_folder(tmp_path / 'clip', size=32, scheme='ssp',
                         face_rect=False, audio='npy', image_ext='.jpg')
  for k, img_id in enumerate(written['img_ids']):
    big = np.kron(written['ids'][k], np.ones((2, 2), np.uint8))
    write_image(str(tmp_path / 'clip' / 'parsing' / f'{img_id}.png'),
                parsing_schemes.SCHEMES['ssp'].colors[big])
    write_image(str(tmp_path / 'clip' / 'ori_imgs' / f'{img_id}.jpg'),
                np.kron(written['images'][k], np.ones((2, 2, 1), np.uint8)))
  write_image(str(tmp_path / 'clip' / 'bc.png'),
              np.kron(written['background'], np.ones((2, 2, 1), np.uint8)))
  focal, c = 80.0, 32.0  # at 64 px
  # The last val frame's aud_id runs past the features: clamps to the last.
  for split in ('train', 'val'):
    path = tmp_path / 'clip' / f'transforms_{split}.json'
    meta = read_json(path)
    meta.update(focal_len=focal, cx=c, cy=c)
    if split == 'val':
      meta['frames'][-1]['aud_id'] = len(written['features']) + 1
    write_json(path, meta)

  config = adnerf_config(tmp_path / 'clip', tmp_path / 'tfds',
                         audio_file='aud.npy', audio_dim=29)
  config.data.resolution = 32
  builder = builds.build_dataset(config)
  frames = read_split(config, builder, 'val')
  np.testing.assert_array_equal(frames['parsing'], written['ids'][10:])
  # JPEG and bicubic resizing: close to the 32 px original, not exact.
  assert np.abs(frames['image'].astype(int) -
                written['images'][10:]).mean() < 3
  scene = scene_lib.load_scene_info(builder)
  assert scene.num_classes == 11 and scene.class_names[7] == 'lips'
  # Pixel centres at integer coordinates: u -> (u + 0.5) / 2 - 0.5.
  assert (scene.focal, scene.cx, scene.cy) == pytest.approx(
      (focal / 2, (c + 0.5) / 2 - 0.5, (c + 0.5) / 2 - 0.5))
  # face_rect absent: the head classes' box, computed at 64 px and halved.
  head = np.isin(written['ids'][10:],
                 parsing_schemes.SCHEMES['ssp'].head_classes)
  for rect, mask in zip(frames['face_rect'], head):
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    np.testing.assert_array_equal(
        rect, [cols[0], rows[0], cols[-1] - cols[0] + 1,
               rows[-1] - rows[0] + 1])
  features = written['features']
  offsets = np.arange(8) - 4
  first = np.clip(written['img_ids'][10] + offsets, 0, len(features) - 1)
  np.testing.assert_array_equal(frames['audio'][0], features[first])
  last = np.clip(len(features) + 1 + offsets, 0, len(features) - 1)
  assert last[-1] == len(features) - 1
  np.testing.assert_array_equal(frames['audio'][1], features[last])
  # No aud.wav: nothing to mux into val videos.
  assert input_pipeline.load_dataset_waveform(builder).shape == (0,)


def test_hubert_layout_keeps_two_steps_per_frame(tmp_path):
  written = write_folder(tmp_path / 'clip', audio='hubert')
  config, builder = build(tmp_path / 'clip', tmp_path / 'tfds',
                          audio_file='aud_hu.npy', audio_dim=8)
  frame = read_split(config, builder, 'train')['audio'][3]
  # ER-NeRF feeds its AudioNet the frame's [2, 1024] HuBERT steps.
  np.testing.assert_array_equal(
      frame, written['features'][written['img_ids'][3] + np.arange(8) - 4])
  scene = scene_lib.load_scene_info(builder)
  assert (scene.audio_window_steps, scene.audio_dim) == (2, 8)
  assert scene.audio_feature == 'precomputed:aud_hu.npy'


def test_scale_rect_and_target_size():
  assert adnerf_folder.target_size(450, 450, 96) == (96, 96)
  assert adnerf_folder.target_size(450, 300, 90) == (90, 60)
  assert adnerf_folder.target_size(450, 300, 0) == (450, 300)
  np.testing.assert_array_equal(
      adnerf_folder.scale_rect(np.array([10, 20, 30, 41]), (64, 64),
                               (32, 32)), [5, 10, 15, 21])


def test_antialiased_parsing_snaps_with_a_warning(tmp_path, caplog):
  written = write_folder(tmp_path / 'clip')
  path = tmp_path / 'clip' / 'parsing' / f'{written["img_ids"][0]}.png'
  rgb = np.asarray(Image.open(path)).copy()
  rgb[0, 0] = (250, 250, 250)  # near white: background
  rgb[-1, 0] = (200, 10, 20)  # near red: torso
  write_image(str(path), rgb)
  with caplog.at_level(logging.WARNING):
    config, builder = build(tmp_path / 'clip', tmp_path / 'tfds')
  assert 'snapped to the nearest class colour' in caplog.text
  parsing = read_split(config, builder, 'train')['parsing'][0]
  np.testing.assert_array_equal(parsing, written['ids'][0])


# --- validation: every problem at once, a line per file, nothing written --


def drop(name):
  def mutate(root, written):
    del written
    os.remove(os.path.join(root, name))
  return mutate


def edit_json(split, change):
  def mutate(root, written):
    del written
    path = os.path.join(root, f'transforms_{split}.json')
    meta = read_json(path)
    change(meta)
    write_json(path, meta)
  return mutate


def set_matrix(meta, value):
  meta['frames'][0]['transform_matrix'] = value


def resize_frame(root, written):
  image = np.zeros((40, 32, 3), np.uint8)
  write_image(os.path.join(root, 'ori_imgs', f'{written["img_ids"][2]}.png'),
              image)


def paint_parsing(root, written):
  rng = np.random.default_rng(0)
  noise = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
  write_image(os.path.join(root, 'parsing', f'{written["img_ids"][1]}.png'),
              noise)


def shorten_wav(root, written):
  import soundfile  # pylint: disable=g-import-not-at-top
  soundfile.write(os.path.join(root, 'aud.wav'),
                  written['waveform'][:16000], 16000)  # 25 of 112 frames


@pytest.mark.parametrize('mutate, line', [
    (drop('bc.png'), 'bc.jpg|png: missing (background plate)'),
    (drop('transforms_val.json'), 'transforms_val.json: missing'),
    (drop('aud.wav'), 'aud.wav: missing'),
    (drop('ori_imgs/103.png'),
     'ori_imgs/103.jpg|png: listed in transforms_train.json but absent'),
    (drop('parsing/111.png'),
     'parsing/111.png: listed in transforms_val.json but absent'),
    (resize_frame, 'ori_imgs/102.png: 32x40 px, unlike the other images '
     '(32x32)'),
    (paint_parsing, 'parsing/101.png: '),
    (shorten_wav, 'aud.wav: 25 video frames (1.00 s), fewer than the frames '
     'listed (aud_id up to 111)'),
    (edit_json('train', lambda m: set_matrix(m, [[float('nan')] * 4] * 4)),
     'transforms_train.json: img_id 100: transform_matrix has non-finite'),
    (edit_json('train', lambda m: set_matrix(m, (2 * np.eye(4)).tolist())),
     'transforms_train.json: img_id 100: transform_matrix is not rigid'),
    (edit_json('val', lambda m: m.update(frames=[])),
     'transforms_val.json: no frames (empty val split)'),
    (edit_json('val', lambda m: m.update(focal_len=1.0)),
     'transforms_val.json: focal_len, cx, cy'),
    (edit_json('train', lambda m: m['frames'][0].update(mouth_open=3.0)),
     'transforms_train.json: frame 0: mouth_open must be a number in '
     '[0, 1], got 3.0'),
    (edit_json('train', lambda m: m['frames'][0].update(eye_openness='x')),
     "transforms_train.json: frame 0: eye_openness must be a number >= 0 "
     "(lid gap over eye width), got 'x'"),
], ids=['background', 'json', 'wav', 'frame', 'parsing', 'size', 'colours',
        'short_wav', 'nan_pose', 'non_rigid', 'empty_split', 'intrinsics',
        'mouth_open', 'eye_openness'])
def test_each_problem_is_reported_and_nothing_written(tmp_path, mutate, line):
  root = str(tmp_path / 'clip')
  written = write_folder(root)
  mutate(root, written)
  config = adnerf_config(root, tmp_path / 'tfds')
  with pytest.raises(portrait_dataset.DatasetError) as info:
    builds.build_dataset(config)
  message = str(info.value)
  assert message.startswith(f'{root} is not a usable AD-NeRF/SSP-NeRF/'
                            'RAD-NeRF folder (1 problem):\n')
  assert f'\n  {line}' in message
  if 'colours' in line or line.startswith('parsing/101'):
    assert 'outside the AD-NeRF/RAD-NeRF 4-class parsing scheme' in message
  assert not (tmp_path / 'tfds').exists()


def test_npy_audio_problems(tmp_path):
  root = str(tmp_path / 'clip')
  written = write_folder(root, audio='npy')
  np.save(os.path.join(root, 'aud.npy'), written['features'][:50])
  with pytest.raises(portrait_dataset.DatasetError) as info:
    builds.build_dataset(adnerf_config(root, tmp_path / 'tfds',
                                       audio_file='aud.npy', audio_dim=8))
  lines = str(info.value).splitlines()[1:]
  assert lines == [
      '  aud.npy: 29 features per step but config.data.audio_dim=8; set '
      '--config.data.audio_dim=29',
      '  aud.npy: 50 feature frames, fewer than the frames listed (aud_id up '
      'to 111)']


def test_all_problems_in_one_report(tmp_path):
  root = str(tmp_path / 'clip')
  written = write_folder(root)
  for mutate in (drop('bc.png'), drop('ori_imgs/103.png'), paint_parsing,
                 resize_frame, shorten_wav):
    mutate(root, written)
  with pytest.raises(portrait_dataset.DatasetError) as info:
    builds.build_dataset(adnerf_config(root, tmp_path / 'tfds'))
  lines = str(info.value).splitlines()
  assert '(5 problems)' in lines[0] and len(lines) == 6
  for name in ('bc.jpg|png', 'ori_imgs/103', 'parsing/101.png',
               'ori_imgs/102.png', 'aud.wav'):
    assert sum(line.startswith(f'  {name}') for line in lines) == 1, name


def test_not_a_folder_and_bad_settings(tmp_path):
  with pytest.raises(portrait_dataset.DatasetError, match='not a folder'):
    builds.build_dataset(adnerf_config(tmp_path / 'nope', tmp_path / 'tfds'))
  config = adnerf_config(tmp_path, tmp_path / 'tfds')
  config.data.path = ''
  with pytest.raises(portrait_dataset.DatasetError,
                     match='config.data.path must name'):
    builds.build_dataset(config)
  config = adnerf_config(tmp_path, tmp_path / 'tfds', audio_file='aud.wav')
  with pytest.raises(portrait_dataset.DatasetError,
                     match='audio_file must be'):
    builds.build_dataset(config)
  assert not (tmp_path / 'tfds').exists()


def test_folder_broken_during_build_leaves_no_dataset(tmp_path):
  root = str(tmp_path / 'clip')
  written = write_folder(root)
  config = adnerf_config(root, tmp_path / 'tfds')
  builder_config = portrait_dataset.config_from_data_config(config.data)
  builder = portrait_dataset.make_builder(builder_config,
                                          str(tmp_path / 'tfds'))  # validates
  os.remove(os.path.join(root, 'ori_imgs', f'{written["img_ids"][5]}.png'))
  with pytest.raises(FileNotFoundError):
    portrait_dataset.prepare(builder)
  assert not portrait_dataset.is_prepared(builder)
  assert not [p for p in os.listdir(builder.data_path.parent)
              if p != '.config']
  # The next run validates again rather than trusting a partial build.
  with pytest.raises(portrait_dataset.DatasetError, match='ori_imgs/105'):
    builds.build_dataset(config)


def test_built_dataset_is_reused_never_stale(tmp_path):
  root = tmp_path / 'clip'
  write_folder(root)
  config, builder = build(root, tmp_path / 'tfds')
  # Re-processed folder (new poses): the old build is refused, not served.
  edit_json('val', lambda m: m['frames'].pop())(str(root), None)
  with pytest.raises(portrait_dataset.DatasetError,
                     match='changed .* since the dataset'):
    builds.build_dataset(config)
  # Once built, the dataset no longer needs its folder.
  os.rename(root, tmp_path / 'moved')
  again = builds.build_dataset(config)
  assert again.data_dir == builder.data_dir
  assert scene_lib.load_scene_info(again).num_classes == 4


# ------------------------------------------------------ configs, training --


def test_cpu_variant_matches_the_synthetic_demo_budget():
  cpu = adnerf_configs.get_config('cpu')
  demo = synthetic_configs.get_config()
  assert cpu.model.to_dict() == demo.model.to_dict()
  assert cpu.train.to_dict() == demo.train.to_dict()
  assert cpu.render.to_dict() == demo.render.to_dict()
  assert (cpu.data.builder_config, cpu.data.resolution) == ('adnerf', 96)
  accelerator = adnerf_configs.get_config()
  assert accelerator.model.width == 256 and accelerator.data.resolution == 0
  with pytest.raises(ValueError, match="takes '' or ':cpu'"):
    adnerf_configs.get_config('gpu')


def test_short_training_run_end_to_end(tmp_path):
  write_folder(tmp_path / 'clip', scheme='ssp', face_rect=False)
  config = adnerf_config(tmp_path / 'clip', tmp_path / 'tfds')
  config.train.num_steps = 2
  config.train.checkpoint_every = 2
  config.train.eval_every = 2
  train.train_and_evaluate(config, str(tmp_path / 'work'))
  with open(tmp_path / 'work' / 'eval_metrics.json') as f:
    metrics = json.load(f)
  assert metrics['step'] == 2 and np.isfinite(metrics['psnr'])
  assert 0 <= metrics['miou'] <= 1


def test_audio_dim_mismatch_is_caught_before_training(tmp_path):
  write_folder(tmp_path / 'clip', audio='npy')
  config = adnerf_config(tmp_path / 'clip', tmp_path / 'tfds',
                         audio_file='aud.npy')  # tiny.py: audio_dim 8
  with pytest.raises(errors.UserError, match='audio_dim=29'):
    train.train_and_evaluate(config, str(tmp_path / 'work'))


def test_train_main_prints_one_error_block(tmp_path):
  root = str(tmp_path / 'clip')
  written = write_folder(root)
  drop('bc.png')(root, written)
  drop('parsing/104.png')(root, written)
  result = subprocess.run(
      [sys.executable, 'train_main.py', '--config=configs/adnerf.py:cpu',
       f'--config.data.path={root}',
       f'--config.data.data_dir={tmp_path / "tfds"}',
       f'--workdir={tmp_path / "work"}'],
      cwd=REPO, capture_output=True, text=True, check=False, timeout=300)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      f'error: {root} is not a usable AD-NeRF/SSP-NeRF/RAD-NeRF folder '
      '(2 problems):',
      '  parsing/104.png: listed in transforms_train.json but absent',
      '  bc.jpg|png: missing (background plate)']
