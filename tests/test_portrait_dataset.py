"""TFDS builder: TF-free build + read round trip, cache keying, bad input,
crash safety, and the build CLI."""
import logging
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from adnerf_fixtures import write_folder
from configs import tiny
from data_fixtures import tiny_config
from ssp_nerf_jax.data import audio_features
from ssp_nerf_jax.data import builds
from ssp_nerf_jax.data import folder_source
from ssp_nerf_jax.data import input_pipeline
from ssp_nerf_jax.data import portrait_dataset
from ssp_nerf_jax.data import portrait_source
from ssp_nerf_jax.data import scene as scene_lib
from ssp_nerf_jax.data import synthetic_source
from ssp_nerf_jax import synthetic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small_config(data_dir, **overrides):
  """16 px, 0.4 s (10 frames): the cheapest valid build."""
  config = tiny_config(data_dir)
  config.data.size = 16
  config.data.duration_s = 0.4
  for name, value in overrides.items():
    config.data[name] = value
  return config


def test_round_trip_matches_generator_and_imports_no_tensorflow(tiny_data):
  config, builder = tiny_data
  clip = synthetic.generate_clip(size=32, duration_s=2.0,
                                 seed=config.data.synthetic_seed)
  n = len(clip.images)
  assert builder.info.splits['train'].num_examples == int(n * 10 / 11) == 45
  assert builder.info.splits['val'].num_examples == n - 45 == 5

  windows = audio_features.context_windows(
      audio_features.compute_features(clip.audio, clip.sample_rate, dim=8,
                                      num_frames=n), 8)
  for split, first in (('train', 0), ('val', 45)):
    source = builder.as_data_source(split)
    for pos in (0, len(source) - 1):
      example = input_pipeline.cast_example(source[pos])
      i = first + pos  # Records are stored in frame order.
      assert example['frame_id'] == i
      np.testing.assert_array_equal(example['image'], clip.images[i])
      np.testing.assert_array_equal(example['parsing'], clip.parsing[i])
      np.testing.assert_allclose(example['audio'], windows[i], atol=1e-6)
      np.testing.assert_allclose(example['c2w'], clip.c2w[i])
      np.testing.assert_array_equal(example['face_rect'], clip.face_rect[i])
      assert example['mouth_open'] == pytest.approx(clip.mouth_open[i])
      for key, dtype in input_pipeline.FEATURE_DTYPES.items():
        assert example[key].dtype == dtype, key
  assert source[0]['audio'].shape == (8, 16, 8)

  meta = builder.info.metadata
  np.testing.assert_array_equal(meta['background'], clip.background)
  assert meta['waveform'].shape == clip.audio.shape
  assert (meta['focal'], meta['cx'], meta['near'], meta['far']) == (
      pytest.approx(clip.focal), clip.cx, pytest.approx(clip.near),
      pytest.approx(clip.far))
  assert meta['class_names'] == list(clip.class_names)
  assert meta['num_classes'] == 11
  assert meta['params'] == portrait_dataset.config_from_data_config(
      config.data).params()
  # Per-clip data lives once in the dataset folder, not in the records.
  names = set(os.listdir(builder.data_dir))
  assert {'metadata.json', 'background.npy', 'waveform.npy'} <= names
  assert any('array_record' in name for name in names)
  assert not [m for m in sys.modules if m == 'tensorflow' or
              m.startswith('tensorflow.')]


def test_scene_info(tiny_data):
  _, builder = tiny_data
  scene = scene_lib.load_scene_info(builder)
  assert (scene.height, scene.width, scene.num_classes) == (32, 32, 11)
  assert (scene.num_train, scene.num_val, scene.fps) == (45, 5, 25.0)
  assert scene.background.dtype == np.float32
  assert scene.background.shape == (32, 32, 3)
  assert 0.0 <= scene.background.min() <= scene.background.max() <= 1.0
  assert scene.audio_context_offsets == tuple(range(-4, 4))
  assert 0 < scene.near < scene.far


def test_parameters_get_their_own_folder_and_mismatch_is_detected(tiny_data):
  config, builder = tiny_data
  root = builds.resolve_data_dir(config)
  same = builds.build_dataset(tiny_config(root))  # Reuses, no rebuild.
  assert same.data_dir == builder.data_dir
  folders = set()
  for name, value in [('size', 48), ('duration_s', 3.0), ('synthetic_seed', 1),
                      ('audio_feature', 'mfcc'), ('audio_dim', 9),
                      ('audio_context', 4)]:
    other = tiny_config(root)
    other.data[name] = value
    other_config = portrait_dataset.config_from_data_config(other.data)
    other_builder = portrait_dataset.make_builder(other_config, root)
    assert not portrait_dataset.is_prepared(other_builder)
    folders.add(other_builder.data_dir)
  assert len(folders) == 6 and builder.data_dir not in folders
  # A builder pointed straight at a folder built with other parameters
  # refuses it rather than serving the wrong data.
  wrong = synthetic_source.SyntheticConfig(size=32, duration_s=2.0,
                                           audio_dim=9)
  key_dir = os.path.join(root, builder.builder_config.key())
  with pytest.raises(portrait_dataset.DatasetError, match='built with'):
    portrait_dataset.check_params(
        portrait_dataset.SspPortrait(data_dir=key_dir, config=wrong))


def test_each_source_config_goes_through_the_constructor_silently(
    tmp_path, caplog):
  # TFDS warns on config instances it has not registered; ours are all
  # such instances, so the builder must take them without that warning.
  write_folder(tmp_path / 'clip', size=16)
  configs = [synthetic_source.SyntheticConfig(size=16, duration_s=0.4),
             folder_source.FolderConfig(path=str(tmp_path / 'clip'))]
  with caplog.at_level(logging.WARNING):
    for config in configs:
      builder = portrait_dataset.SspPortrait(
          data_dir=str(tmp_path / config.key()), config=config)
      assert builder.builder_config is config
      assert isinstance(builder.source, portrait_source.Source)
      assert builder.info.features['image'].shape == (16, 16, 3)
      assert builder.data_path.parts[-3:] == (
          'ssp_portrait', config.name, portrait_dataset.DATASET_VERSION)
      copy = pickle.loads(pickle.dumps(builder))
      assert copy.builder_config.params() == config.params()
      assert copy.data_dir == builder.data_dir
  assert not caplog.records, caplog.text


@pytest.mark.parametrize('name,value,message', [
    ('size', 8, 'size must be an integer >= 16'),
    ('duration_s', 0.0, 'duration_s must be > 0'),
    ('duration_s', -2.0, 'duration_s must be > 0'),
    ('builder_config', 'obama', "unknown builder config 'obama'"),
    ('audio_feature', 'deepspeech', 'audio_feature must be one of'),
    ('audio_dim', 0, 'audio_dim must be >= 1'),
])
def test_invalid_config_is_one_line_error(tmp_path, name, value, message):
  config = small_config(tmp_path)
  config.data[name] = value
  with pytest.raises(portrait_dataset.DatasetError, match=message) as info:
    builds.build_dataset(config)
  assert '\n' not in str(info.value)
  assert not os.listdir(tmp_path)  # Nothing was written.


def test_unwritable_data_dir_is_one_line_error(tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a folder')
  with pytest.raises(portrait_dataset.DatasetError,
                     match='not writable') as info:
    builds.build_dataset(small_config(blocker / 'tfds'))
  assert '\n' not in str(info.value)


def test_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
  real = portrait_dataset.SspPortrait._generate_examples

  def failing(self, *args):
    for n, item in enumerate(real(self, *args)):
      if n == 3:
        raise RuntimeError('disk on fire')
      yield item

  monkeypatch.setattr(portrait_dataset.SspPortrait, '_generate_examples',
                      failing)
  config = small_config(tmp_path)
  with pytest.raises(RuntimeError, match='disk on fire'):
    builds.build_dataset(config)
  builder = portrait_dataset.make_builder(
      portrait_dataset.config_from_data_config(config.data), str(tmp_path))
  assert not portrait_dataset.is_prepared(builder)
  parent = builder.data_path.parent
  assert not [p for p in os.listdir(parent) if p != '.config']


_KILLED_BUILD = textwrap.dedent("""
    import os, signal, sys
    from configs import tiny
    from ssp_nerf_jax.data import builds
    from ssp_nerf_jax.data import portrait_dataset

    real = portrait_dataset.SspPortrait._generate_examples
    def dying(self, *args):
      for n, item in enumerate(real(self, *args)):
        if n == 3:
          os.kill(os.getpid(), signal.SIGKILL)  # No cleanup can run.
        yield item
    portrait_dataset.SspPortrait._generate_examples = dying
    config = tiny.get_config()
    config.data.update(data_dir=sys.argv[1], size=16, duration_s=0.4)
    builds.build_dataset(config)
""")


def test_killed_build_is_not_trusted_and_is_rebuilt(tmp_path):
  result = subprocess.run([sys.executable, '-c', _KILLED_BUILD, str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True,
                          check=False)
  assert result.returncode == -9, result.stderr[-2000:]
  config = small_config(tmp_path)
  builder_config = portrait_dataset.config_from_data_config(config.data)
  builder = portrait_dataset.make_builder(builder_config, str(tmp_path))
  assert not portrait_dataset.is_prepared(builder)
  leftovers = [p for p in os.listdir(builder.data_path.parent)
               if p.startswith('incomplete.')]
  assert len(leftovers) == 1

  rebuilt = builds.build_dataset(config)
  assert portrait_dataset.is_prepared(rebuilt)
  assert len(rebuilt.as_data_source('train')) == 9
  assert len(rebuilt.as_data_source('val')) == 1
  # Recent leftovers may belong to a live build elsewhere, old ones go.
  assert portrait_dataset.remove_stale_incomplete_dirs(rebuilt) == []
  removed = portrait_dataset.remove_stale_incomplete_dirs(rebuilt,
                                                          older_than_s=-1)
  assert [os.path.basename(p.rstrip('/')) for p in removed] == leftovers


def run_cli(*args):
  return subprocess.run(
      [sys.executable, '-m', 'ssp_nerf_jax.data', '--config=configs/tiny.py',
       *args], cwd=REPO, capture_output=True, text=True, check=False)


def test_cli_summary_and_one_line_error(tiny_data):
  config, builder = tiny_data
  result = run_cli(f'--data_dir={config.data.data_dir}')
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().splitlines()[-1] == (
      f'ssp_portrait/synthetic: frames train 45, val 5; 32x32 px; '
      f'{builder.data_dir}')

  result = run_cli(f'--data_dir={config.data.data_dir}',
                   '--config.data.size=8')
  assert result.returncode == 1
  assert result.stderr.strip() == (
      'error: config.data.size must be an integer >= 16, got 8')


def test_resolve_data_dir(monkeypatch, tmp_path):
  config = tiny.get_config()
  monkeypatch.delenv(builds.DATA_DIR_ENV, raising=False)
  assert builds.resolve_data_dir(config) == os.path.expanduser(
      '~/.cache/ssp_nerf_jax/tensorflow_datasets')
  monkeypatch.setenv(builds.DATA_DIR_ENV, str(tmp_path / 'env'))
  assert builds.resolve_data_dir(config) == str(tmp_path / 'env')
  config.data.data_dir = str(tmp_path / 'cfg')
  assert builds.resolve_data_dir(config) == str(tmp_path / 'cfg')
