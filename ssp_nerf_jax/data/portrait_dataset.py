"""TFDS builder `ssp_portrait`: talking-portrait frames, built and read TF-free.

One self-contained example per video frame, from a `portrait_source.Source`."""
import functools
import io
import json
import os
import time

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from ssp_nerf_jax.data import folder_source
from ssp_nerf_jax.data import portrait_source
from ssp_nerf_jax.data import synthetic_source
from ssp_nerf_jax.runtime import errors

NAME = 'ssp_portrait'
# 1.1.0 adds each frame's eye_openness.  Builds of older versions still
# load (`make_builder`): they are the same data without the newer features.
DATASET_VERSION = '1.1.0'
OLDER_VERSIONS = ('1.0.0',)
EYE_VERSION = '1.1.0'  # the first with eye_openness
CONFIG_CLASSES = {'synthetic': synthetic_source.SyntheticConfig,
                  'adnerf': folder_source.FolderConfig}
CONFIG_NAMES = tuple(CONFIG_CLASSES)
MIN_SIZE = portrait_source.MIN_SIZE
split_sizes = portrait_source.split_sizes

_METADATA_FILE = 'metadata.json'  # TFDS only calls load_metadata if present.
_BACKGROUND_FILE = 'background.npy'
_WAVEFORM_FILE = 'waveform.npy'
_INCOMPLETE_PREFIX = 'incomplete.'


# In errors so that adnerf_folder's FolderError can extend it.
DatasetError = errors.DatasetError


def config_from_data_config(
    data_config) -> portrait_source.PortraitConfig:
  """The builder config for `config.data` (validated, no file access)."""
  if data_config.name != NAME:
    raise DatasetError(f'config.data.name must be {NAME!r}, got '
                       f'{data_config.name!r}')
  config_class = CONFIG_CLASSES.get(data_config.builder_config)
  if config_class is None:
    raise DatasetError(
        f'unknown builder config {data_config.builder_config!r} for {NAME}; '
        f'choose one of {list(CONFIG_NAMES)}')
  builder_config = config_class.from_data_config(data_config)
  builder_config.validate()
  return builder_config


class PortraitMetadata(tfds.core.Metadata):
  """Per-clip metadata.json, background [H, W, 3] and waveform [T] .npy."""
  _ARRAYS = {'background': _BACKGROUND_FILE, 'waveform': _WAVEFORM_FILE}

  def save_metadata(self, data_dir):
    data_dir = epath.Path(data_dir)
    scalars = {k: v for k, v in self.items() if k not in self._ARRAYS}
    (data_dir / _METADATA_FILE).write_text(json.dumps(scalars, indent=2))
    for key, filename in self._ARRAYS.items():
      if key in self:
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(self[key]), allow_pickle=False)
        (data_dir / filename).write_bytes(buffer.getvalue())

  def load_metadata(self, data_dir):
    data_dir = epath.Path(data_dir)
    self.clear()
    self.update(json.loads((data_dir / _METADATA_FILE).read_text()))
    for key, filename in self._ARRAYS.items():
      path = data_dir / filename
      if path.exists():
        self[key] = np.load(io.BytesIO(path.read_bytes()), allow_pickle=False)


class SspPortrait(tfds.core.GeneratorBasedBuilder):
  """Talking-portrait frames with parsing, pose and audio windows."""

  VERSION = tfds.core.Version(DATASET_VERSION)
  SUPPORTED_VERSIONS = [tfds.core.Version(v) for v in OLDER_VERSIONS]
  RELEASE_NOTES = {'1.0.0': 'Initial release: synthetic portraits.',
                   EYE_VERSION: "Each frame's eye openness."}
  BUILDER_CONFIGS = [cls() for cls in CONFIG_CLASSES.values()]
  # TFDS's default needs importlib_resources.abc (ModuleNotFoundError) for
  # builders outside its package; the path only locates a checksums file.
  code_path = epath.Path(__file__)

  def __init__(self, *, config=None, **kwargs):
    """TFDS's constructor; `config` may be any `PortraitConfig` or a name.

    An instance becomes the only (default) config: TFDS warns about
    unregistered instances on every construction."""
    if isinstance(config, portrait_source.PortraitConfig):
      config.validate()
      self.BUILDER_CONFIGS = [config]  # pylint: disable=invalid-name
      config = None
    super().__init__(config=config, **kwargs)

  def __getstate__(self):
    # TFDS pickles the constructor's arguments, which lack the instance.
    return {'config': self.builder_config, 'version': str(self.version),
            'data_dir': os.fspath(self.data_dir_root)}

  def __setstate__(self, state):
    self.__init__(**state)

  @functools.cached_property
  def source(self) -> portrait_source.Source:
    """Where the frames come from (read on first use)."""
    return self.builder_config.source()

  def _info(self) -> tfds.core.DatasetInfo:
    size, steps = self._feature_shapes()
    cfg = self.builder_config
    zlib = tfds.features.Encoding.ZLIB
    tensor = tfds.features.Tensor
    newer = ({'eye_openness': tensor(shape=(), dtype=np.float32)}
             if self.version >= EYE_VERSION else {})
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__.split('\n\n')[0],
        features=tfds.features.FeaturesDict({
            **newer,
            'image': tensor(shape=(*size, 3), dtype=np.uint8, encoding=zlib),
            'parsing': tensor(shape=size, dtype=np.uint8, encoding=zlib),
            # [context, steps, dim] windows of frames i-4 .. i+3; no zlib:
            # floats barely compress.
            'audio': tensor(shape=(cfg.audio_context, steps,
                                   cfg.audio_dim), dtype=np.float32),
            'c2w': tensor(shape=(4, 4), dtype=np.float32),  # OpenGL axes
            'face_rect': tensor(shape=(4,), dtype=np.int32),
            'frame_id': tensor(shape=(), dtype=np.int32),
            'mouth_open': tensor(shape=(), dtype=np.float32),
        }),
        metadata=PortraitMetadata(),
        # Frame order: `ds[i]` is frame i; grain does the training shuffle.
        disable_shuffling=True,
        homepage='https://arxiv.org/abs/2201.07786',
    )

  def _feature_shapes(self) -> tuple[tuple[int, int], int]:
    """(H, W) and audio window steps; built metadata first (source may go)."""
    path = os.path.join(self.data_dir, _METADATA_FILE)
    if os.path.isfile(path):
      with open(path) as f:
        meta = json.load(f)
      return ((int(meta['height']), int(meta['width'])),
              int(meta['audio']['window_steps']))
    return self.source.frame_shape(), self.source.window_steps()

  def _split_generators(self, dl_manager):
    del dl_manager
    self.info.metadata.update(self.source.metadata())
    return {split: self._generate_examples(split)
            for split in portrait_source.SPLITS}

  def _generate_examples(self, split):
    return self.source.examples(split)


def make_builder(builder_config: portrait_source.PortraitConfig,
                 data_dir: str, older: bool = False) -> SspPortrait:
  """The builder (prepared or not) in data_dir/<builder_config.key()>/.

  DATASET_VERSION's; with `older`, a prepared build of an OLDER_VERSIONS
  one when DATASET_VERSION's is not (what runs that need no newer feature
  read, so that their data is not built again).  Raises DatasetError if
  the folder holds a build of other parameters or of a changed source, or
  the source is unusable (nothing is written then).
  """
  root = os.path.join(data_dir, builder_config.key())
  builder = SspPortrait(data_dir=root, config=builder_config)
  for version in OLDER_VERSIONS if older else ():
    if is_prepared(builder):
      break
    built = SspPortrait(data_dir=root, config=builder_config, version=version)
    builder = built if is_prepared(built) else builder
  check_params(builder)
  return builder


def is_prepared(builder: SspPortrait) -> bool:
  """Whether the (complete, renamed) dataset folder exists."""
  return (builder.data_path / 'dataset_info.json').exists()


def check_params(builder: SspPortrait) -> None:
  """DatasetError if the build on disk has other params or a changed source."""
  if not is_prepared(builder):
    return
  metadata = builder.info.metadata or {}
  builder.source.check_built(metadata, builder.data_dir)
  stored = metadata.get('params')
  wanted = builder.builder_config.params()
  if stored != wanted:
    raise DatasetError(
        f'the dataset at {builder.data_dir} was built with parameters '
        f'{stored}, not {wanted}; use another data_dir or delete that folder')


def remove_stale_incomplete_dirs(builder: SspPortrait,
                                 older_than_s: float = 3600.0) -> list[str]:
  """Deletes and returns `incomplete.*` folders of killed builds.

  Only folders untouched for `older_than_s` go: a running build keeps its own.
  """
  parent = builder.data_path.parent
  if not parent.exists():
    return []
  removed = []
  now = time.time()
  for path in parent.glob(f'{_INCOMPLETE_PREFIX}*'):
    if path.is_dir() and now - os.path.getmtime(path) > older_than_s:
      path.rmtree()
      removed.append(os.fspath(path))
  return removed


def prepare(builder: SspPortrait) -> None:
  """Builds the dataset as array_record unless it is already there."""
  builder.download_and_prepare(
      file_format='array_record',
      download_config=tfds.download.DownloadConfig(
          # True asks GCS (a network call) for a prebuilt copy: none exists.
          try_download_gcs=False))
