"""The eye openness as an input of the field (that it acts only near the
eyes: test_mouth_region): the region fitted on the synthetic eyes, the
openness a render gets (--blinks), and old workdirs (older builds, no eye
setting) unchanged."""
import collections
import json
import os
import shutil

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from ssp_nerf_jax.data import builds
from ssp_nerf_jax.data import input_pipeline
from ssp_nerf_jax.data import portrait_dataset
from ssp_nerf_jax.models import mouth_region
from ssp_nerf_jax.offline import blinks
from ssp_nerf_jax.offline import jobs
from ssp_nerf_jax.offline import trained as trained_lib
from ssp_nerf_jax.runtime import errors
from ssp_nerf_jax.runtime import parallel
from ssp_nerf_jax.synthetic import scene as synthetic_scene
from ssp_nerf_jax.training import experiment


def test_eye_region_and_levels_fit_the_synthetic_eyes(tiny_data):
  config, builder = tiny_data
  exp = experiment.setup(config, parallel.make_data_mesh(jax.devices()[:1]))
  poses = input_pipeline.load_poses(builder, 'train')
  parsing = input_pipeline.load_parsing(builder, 'train',
                                        np.arange(len(poses)))
  fitted = mouth_region.fit_mouth_region(
      parsing, poses, exp.scene, 0.7, mouth_region.EYE_CLASSES,
      'eye_region_radius')
  truth = synthetic_scene.EYE_CENTERS.mean(axis=0)
  # Between the eyes, on the surface the eye pixels' rays meet (32 px).
  assert np.linalg.norm(fitted['centre'][:2] - truth[:2]) < 0.006
  span = np.ptp(synthetic_scene.EYE_CENTERS[:, 0]) + 2 * (
      synthetic_scene.EYE_RADIUS)
  assert 0.5 * span < fitted['width'] < 1.5 * span
  levels = mouth_region.openness_levels(
      np.r_[np.full(97, 0.3), 0.05, 0.05, 0.06, np.nan])
  assert levels['open'] == pytest.approx(0.3)
  assert 0.05 <= levels['closed'] < 0.1
  assert mouth_region.openness_levels(np.full(5, np.nan)) is None


FakeTrained = collections.namedtuple('FakeTrained',
                                     ['model', 'params', 'scene'])


def _fake_trained(eye_condition=True):
  levels = {'open': np.float32(0.3), 'closed': np.float32(0.05)}
  return FakeTrained(
      collections.namedtuple('M', 'eye_condition')(eye_condition),
      {'params': {'eye_region': levels}},
      collections.namedtuple('S', 'fps')(25.0))


def test_render_openness_track_natural_open():
  trained = _fake_trained()
  track = np.array([0.1, 0.2, np.nan, 0.3], np.float32)
  played = blinks.render_openness('track', trained, 9, track)
  # Forward, backward, forward: as the poses are played; NaN held open.
  np.testing.assert_allclose(
      played, [0.1, 0.2, 0.3, 0.3, 0.3, 0.2, 0.1, 0.2, 0.3])
  natural = blinks.render_openness('natural', trained, 25 * 60, track)
  np.testing.assert_array_equal(
      natural, blinks.natural_openness(25 * 60, 25.0, 0.3, 0.05))
  assert natural.max() == pytest.approx(0.3)
  assert natural.min() == pytest.approx(0.05)
  np.testing.assert_allclose(
      blinks.render_openness('open', trained, 7, track), np.full(7, 0.3))
  assert blinks.render_openness('track', _fake_trained(False), 9,
                                track) is None
  with pytest.raises(errors.UserError, match='--blinks must be one of'):
    blinks.render_openness('wink', trained, 9, track)


def _build_old_version(config, monkeypatch):
  """The tiny dataset as code before eye openness built it (1.0.0)."""
  cls = portrait_dataset.SspPortrait
  with monkeypatch.context() as patch:
    patch.setattr(cls, 'VERSION', tfds.core.Version('1.0.0'))
    patch.setattr(cls, 'SUPPORTED_VERSIONS', [])
    patch.setattr(cls, '_generate_examples', lambda self, split: (
        (key, {k: v for k, v in example.items() if k != 'eye_openness'})
        for key, example in self.source.examples(split)))
    builds.build_dataset(config)


def test_old_workdir_on_an_old_build_renders_unchanged(
    tiny_workdir, tmp_path, monkeypatch):
  old = str(tmp_path / 'old_workdir')
  shutil.copytree(tiny_workdir, old)
  with open(os.path.join(old, 'config.json')) as f:
    config = json.load(f)
  for name in ('eye_condition', 'eye_freqs', 'eye_region_radius'):
    del config['model'][name]
  config['data']['data_dir'] = str(tmp_path / 'old_data')
  with open(os.path.join(old, 'config.json'), 'w') as f:
    json.dump(config, f)
  _build_old_version(trained_lib.load_config(old), monkeypatch)

  before = trained_lib.load_trained(old)
  assert str(before.builder.version) == '1.0.0'
  assert not before.model.eye_condition
  frames = input_pipeline.load_split(before.config, before.builder, 'val',
                                     [0])
  assert np.isnan(frames['eye_openness']).all()
  now = trained_lib.load_trained(tiny_workdir)
  render = lambda trained: jobs.render_to_memory(
      trained, frames['c2w'], frames['audio'])['rgb']
  np.testing.assert_array_equal(render(before), render(now))
  # A run given the eye openness builds the current version beside it.
  newer = before.config.copy_and_resolve_references()
  newer.model.eye_condition = True
  assert str(builds.build_dataset(newer).version) == (
      portrait_dataset.DATASET_VERSION)
