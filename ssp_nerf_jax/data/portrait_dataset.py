"""TFDS builder `ssp_portrait`: talking-portrait frames, built and read TF-free.

The builder is a thin adapter: each builder config names a source
(`portrait_source.Source`) that supplies the frame size, the per-clip
metadata and the examples of each split.  Two builder configs:
  synthetic   `synthetic_source.SyntheticConfig`: the procedural portrait
              (ssp_nerf_jax.synthetic), 11 classes.
  adnerf      `folder_source.FolderConfig`: an AD-NeRF / SSP-NeRF /
              RAD-NeRF processed-data folder (`config.data.path`; read and
              validated by `adnerf_folder`), 4 or 11 classes depending on
              its parsing colours.

One example per video frame, self-contained for random access:

  image       uint8   [H, W, 3]
  parsing     uint8   [H, W]          class ids (K classes, see parsing_schemes)
  audio       float32 [A, S, C]       AudioAttNet context windows, A = 8:
                                      frames i-4 .. i+3 (edge-padded), see
                                      `audio_features.context_windows`;
                                      S = 16 steps (2 for HuBERT .npy)
  c2w         float32 [4, 4]          camera-to-head, OpenGL axes
  face_rect   int32   [4]             x, y, w, h
  frame_id    int32   []              index in the clip (adnerf: img_id)
  mouth_open  float32 []              mouth opening in [0, 1] (synthetic:
                                      ground truth; folders: their
                                      transforms' measured value, else NaN)

Splits (AD-NeRF): `train` = the first int(N * 10 / 11) frames, `val` = the
rest (adnerf: the frames of transforms_train.json / transforms_val.json).
Everything that is per clip, not per frame, is written once into the
dataset folder by `PortraitMetadata`: `metadata.json` (intrinsics, near/far,
fps, classes, audio settings, split sizes, build parameters),
`background.npy` (uint8 [H, W, 3] plate) and `waveform.npy` (float32 [T],
16 kHz mono, for muxing rendered video).

Features are `tfds.features.Tensor`s (zlib for the pixel tensors) and files
are array_record, so building (`download_and_prepare(file_format=
'array_record')`) and reading (`as_data_source`) never import TensorFlow.

Keeping builds for different parameters apart.  The builder config is
always *named* `synthetic` or `adnerf` (so TFDS's folder layout stays
standard), but its parameters (synthetic: size,
duration_s, seed = synthetic_seed; adnerf: path, images_dir, resolution,
audio_file; both: audio_feature, audio_dim, audio_context) come from
`config.data` (`config_from_data_config`).  Two mechanisms keep different
parameters from sharing a cache:
  1. `make_builder` roots each parameter set in its own folder,
     `<data_dir>/<key>/ssp_portrait/synthetic/1.0.0/`, with a readable key
     such as `synthetic-96px-24s-seed0-logmel29-ctx8`.
     (adnerf: `adnerf-<folder name>-<hash of its path>-96px-logmel29-ctx8`.)
  2. The build parameters are recorded in `metadata.json`, and
     `make_builder` / `check_params` raise `DatasetError` when a folder
     holds a dataset built with other parameters instead of serving it
     (guards a hand-picked data_dir).

An adnerf folder is validated completely (`adnerf_folder.read_folder`,
every problem in one error) before TFDS creates any file; once built, the
dataset no longer needs the folder (a built dataset's own metadata gives
the feature shapes), but is refused if the folder changed since.

Crash safety: TFDS 4.9.10 writes into a sibling `incomplete.XXXXXX_1.0.0/`
folder and renames it to `1.0.0/` only after every split and the metadata
are written; an exception deletes the temporary folder.  A killed build
leaves only an `incomplete.*` folder, which is never read: the next build
starts afresh (and `remove_stale_incomplete_dirs` sweeps old leftovers).
"""
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
DATASET_VERSION = '1.0.0'
# config.data.builder_config -> its builder config class.
CONFIG_CLASSES = {'synthetic': synthetic_source.SyntheticConfig,
                  'adnerf': folder_source.FolderConfig}
CONFIG_NAMES = tuple(CONFIG_CLASSES)
MIN_SIZE = portrait_source.MIN_SIZE
split_sizes = portrait_source.split_sizes

_METADATA_FILE = 'metadata.json'  # TFDS only calls load_metadata if present.
_BACKGROUND_FILE = 'background.npy'
_WAVEFORM_FILE = 'waveform.npy'
_INCOMPLETE_PREFIX = 'incomplete.'


# Bad dataset settings or folder (defined in errors so that
# adnerf_folder's FolderError can extend it).
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
  """Per-clip data, saved once: metadata.json + background/waveform .npy.

  Keys: 'params' (build parameters), 'height', 'width', 'focal', 'cx', 'cy',
  'near', 'far', 'fps', 'class_names', 'num_classes', 'num_frames',
  'num_train', 'num_val', 'audio' (feature settings), plus the arrays
  'background' uint8 [H, W, 3] and 'waveform' float32 [T] (16 kHz).
  """
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
  RELEASE_NOTES = {DATASET_VERSION: 'Initial release: synthetic portraits.'}
  # Each config's default parameters; builds take theirs from config.data.
  BUILDER_CONFIGS = [cls() for cls in CONFIG_CLASSES.values()]
  # TFDS 4.9.10's `code_path` evaluates `importlib_resources.abc` (a
  # backport it only installs on Python < 3.9) for builders outside its own
  # package, so download_and_prepare dies with ModuleNotFoundError.  The
  # path only locates an optional checksums file beside this module.
  code_path = epath.Path(__file__)

  def __init__(self, *, config=None, **kwargs):
    """TFDS's constructor; `config` may be any `PortraitConfig`.

    (Or a registered config's name, for its default parameters.)  TFDS
    warns on every construction with a config instance it has not
    registered ("Using custom data configuration"), yet every build's
    config is such an instance: its parameters come from config.data.  So
    an instance becomes this builder's only config, which TFDS then takes
    as the default: `get_default_builder_config` reads the instance's
    BUILDER_CONFIGS, for builders whose configs are not fixed in the class.
    """
    if isinstance(config, portrait_source.PortraitConfig):
      config.validate()
      self.BUILDER_CONFIGS = [config]  # pylint: disable=invalid-name
      config = None
    super().__init__(config=config, **kwargs)

  def __getstate__(self):
    # TFDS pickles the constructor's arguments, which (see __init__) lack
    # the config instance.
    return {'config': self.builder_config, 'version': str(self.version),
            'data_dir': os.fspath(self.data_dir_root)}

  def __setstate__(self, state):
    self.__init__(**state)

  @functools.cached_property
  def source(self) -> portrait_source.Source:
    """Where the frames come from (read on first use, then kept)."""
    return self.builder_config.source()

  def _info(self) -> tfds.core.DatasetInfo:
    size, steps = self._feature_shapes()
    cfg = self.builder_config
    zlib = tfds.features.Encoding.ZLIB
    tensor = tfds.features.Tensor
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__.split('\n\n')[0],
        features=tfds.features.FeaturesDict({
            'image': tensor(shape=(*size, 3), dtype=np.uint8, encoding=zlib),
            'parsing': tensor(shape=size, dtype=np.uint8, encoding=zlib),
            # Floats barely compress; zlib would only cost decode time.
            'audio': tensor(shape=(cfg.audio_context, steps,
                                   cfg.audio_dim), dtype=np.float32),
            'c2w': tensor(shape=(4, 4), dtype=np.float32),
            'face_rect': tensor(shape=(4,), dtype=np.int32),
            'frame_id': tensor(shape=(), dtype=np.int32),
            'mouth_open': tensor(shape=(), dtype=np.float32),
        }),
        metadata=PortraitMetadata(),
        # Keep records in frame order (TFDS otherwise shuffles them by key
        # hash): `ds[i]` is then frame i of the split, val renders as a
        # continuous video, and grain does the training shuffle.
        disable_shuffling=True,
        homepage='https://arxiv.org/abs/2201.07786',
    )

  def _feature_shapes(self) -> tuple[tuple[int, int], int]:
    """Frame (height, width) and audio window steps of the features.

    A built dataset's metadata says (its source, such as a folder, may be
    gone by now); otherwise the source does.
    """
    path = os.path.join(self.data_dir, _METADATA_FILE)
    if os.path.isfile(path):
      with open(path) as f:
        meta = json.load(f)
      return ((int(meta['height']), int(meta['width'])),
              int(meta['audio']['window_steps']))
    return self.source.frame_shape(), self.source.window_steps()

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: generated or read locally.
    self.info.metadata.update(self.source.metadata())
    return {split: self._generate_examples(split)
            for split in portrait_source.SPLITS}

  def _generate_examples(self, split):
    return self.source.examples(split)


def make_builder(builder_config: portrait_source.PortraitConfig,
                 data_dir: str) -> SspPortrait:
  """The builder for `builder_config`, rooted in its parameter-keyed folder.

  Args:
    builder_config: validated `PortraitConfig`.
    data_dir: root of all builds; this build lives in
      `data_dir/<builder_config.key()>/ssp_portrait/<name>/1.0.0`.

  Returns:
    The builder (prepared or not).

  Raises:
    DatasetError: the folder holds a dataset built with other parameters
      or from a source that changed since, or (not built yet) the source
      is unusable, e.g. an adnerf folder: then nothing has been written.
  """
  builder = SspPortrait(data_dir=os.path.join(data_dir, builder_config.key()),
                        config=builder_config)
  check_params(builder)
  return builder


def is_prepared(builder: SspPortrait) -> bool:
  """Whether the (complete, renamed) dataset folder exists."""
  return (builder.data_path / 'dataset_info.json').exists()


def check_params(builder: SspPortrait) -> None:
  """Raises DatasetError if the data on disk was built with other params
  (or from a source that has changed since)."""
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
  """Deletes `incomplete.*` folders left by killed builds of this dataset.

  Only folders untouched for `older_than_s` go, so a build running right
  now in another process keeps its own.

  Returns:
    The deleted paths.
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
          # The default (True) asks GCS whether a prebuilt copy exists:
          # a network call, and there is none for this dataset.
          try_download_gcs=False))
