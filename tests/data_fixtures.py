"""The tiny TFDS dataset, built once per test session (shared by modules).

conftest.py exposes the `tiny_data` fixture to every test module:

    def test_x(tiny_data): config, builder = tiny_data

and `tiny_workdir`, configs/tiny.py trained once (checkpoints at steps 3
and 6, eval at 6), for tests that only read it or copy it.
"""
import pytest
import tensorflow_datasets as tfds

from configs import tiny
from ssp_nerf_jax.data import builds

_BUILT = {}


def tiny_config(data_dir):
  """configs/tiny.py (32 px, 2 s, 50 frames) rooted in `data_dir`."""
  config = tiny.get_config()
  config.data.data_dir = str(data_dir)
  return config


def build_tiny(tmp_path_factory):
  """(config, builder) of the tiny dataset; built on the first call only."""
  if 'tiny' not in _BUILT:
    tfds.disable_progress_bar()
    config = tiny_config(tmp_path_factory.mktemp('tfds_tiny'))
    _BUILT['tiny'] = config, builds.build_dataset(config)
  return _BUILT['tiny']


@pytest.fixture(scope='session')
def tiny_data(tmp_path_factory):
  return build_tiny(tmp_path_factory)


@pytest.fixture(scope='session')
def tiny_workdir(tiny_data, tmp_path_factory):
  """A workdir of configs/tiny.py trained in full; never modify it."""
  from ssp_nerf_jax.training import train  # pylint: disable=g-import-not-at-top
  config, _ = tiny_data
  workdir = str(tmp_path_factory.mktemp('tiny_workdir') / 'workdir')
  train.train_and_evaluate(config.copy_and_resolve_references(), workdir)
  return workdir
