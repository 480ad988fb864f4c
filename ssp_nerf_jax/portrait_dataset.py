"""TFDS builder `ssp_portrait`: talking-portrait frames, built and read TF-free.

Two builder configs:
  synthetic   the procedural portrait (ssp_nerf_jax.synthetic), 11 classes.
  adnerf      an AD-NeRF / SSP-NeRF / RAD-NeRF processed-data folder
              (`config.data.path`; read and validated by `adnerf_folder`),
              4 or 11 classes depending on its parsing colours.

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
always *named* `synthetic` or `adnerf` (so TFDS's folder layout and
`config=` lookups stay standard), but its parameters (synthetic: size,
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
dataset no longer needs the folder.

Crash safety: TFDS 4.9.10 writes into a sibling `incomplete.XXXXXX_1.0.0/`
folder and renames it to `1.0.0/` only after every split and the metadata
are written; an exception deletes the temporary folder.  A killed build
leaves only an `incomplete.*` folder, which is never read: the next build
starts afresh (and `remove_stale_incomplete_dirs` sweeps old leftovers).
"""
import dataclasses
import hashlib
import io
import json
import os
import time
from typing import Any

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from ssp_nerf_jax import adnerf_folder
from ssp_nerf_jax import audio_features
from ssp_nerf_jax import errors

NAME = 'ssp_portrait'
DATASET_VERSION = '1.0.0'
CONFIG_NAMES = ('synthetic', 'adnerf')
MIN_SIZE = 16
TRAIN_FRACTION = (10, 11)  # AD-NeRF: train = first int(N * 10 / 11) frames.

_METADATA_FILE = 'metadata.json'  # TFDS only calls load_metadata if present.
_BACKGROUND_FILE = 'background.npy'
_WAVEFORM_FILE = 'waveform.npy'
_INCOMPLETE_PREFIX = 'incomplete.'


# Bad dataset settings or folder (defined in errors so that
# adnerf_folder's FolderError can extend it).
DatasetError = errors.DatasetError


@dataclasses.dataclass(eq=False)
class PortraitConfig(tfds.core.BuilderConfig):
  """Builder config; the parameters default to configs/synthetic.py's."""
  size: int = 96
  duration_s: float = 24.0
  seed: int = 0
  audio_feature: str = 'logmel'
  audio_dim: int = 29
  audio_context: int = 8

  def params(self) -> dict[str, Any]:
    """The parameters that determine the data (JSON-serialisable)."""
    return {'size': int(self.size), 'duration_s': float(self.duration_s),
            'seed': int(self.seed), 'audio_feature': str(self.audio_feature),
            'audio_dim': int(self.audio_dim),
            'audio_context': int(self.audio_context)}

  def key(self) -> str:
    """Folder name unique to the parameters, e.g. synthetic-96px-24s-..."""
    return (f'{self.name}-{self.size}px-{self.duration_s:g}s-seed{self.seed}'
            f'-{self.audio_feature}{self.audio_dim}-ctx{self.audio_context}')

  def validate(self) -> None:
    """Raises DatasetError (one line) for values no build can use."""
    self.validate_common()
    if int(self.size) != self.size or self.size < MIN_SIZE:
      raise DatasetError(f'config.data.size must be an integer >= {MIN_SIZE},'
                         f' got {self.size}')
    if not self.duration_s > 0:
      raise DatasetError(
          f'config.data.duration_s must be > 0, got {self.duration_s}')
    if self.duration_s * audio_features.FPS < 2:
      raise DatasetError('config.data.duration_s must cover at least 2 video '
                         f'frames (one train, one val), got {self.duration_s}')

  def validate_common(self) -> None:
    """Checks of the settings every builder config shares."""
    if self.name not in CONFIG_NAMES:
      raise DatasetError(f'unknown builder config {self.name!r} for {NAME}; '
                         f'choose one of {list(CONFIG_NAMES)}')
    if self.audio_feature not in audio_features.FEATURES:
      raise DatasetError(
          f'config.data.audio_feature must be one of '
          f'{list(audio_features.FEATURES)}, got {self.audio_feature!r}')
    if self.audio_dim < 1:
      raise DatasetError(
          f'config.data.audio_dim must be >= 1, got {self.audio_dim}')
    if self.audio_context < 1:
      raise DatasetError(
          f'config.data.audio_context must be >= 1, got {self.audio_context}')


@dataclasses.dataclass(eq=False)
class AdnerfConfig(PortraitConfig):
  """Builder config `adnerf`: an AD-NeRF/SSP-NeRF/RAD-NeRF processed folder.

  The parameters are `path` (absolute), `images_dir`, `resolution` (longer
  side in px, 0 keeps the folder's), `audio_file` ('' = aud.wav through
  `audio_feature`, else a precomputed .npy) and the audio settings.  The
  frame size and audio window length are properties of the folder, filled
  in by `make_builder` (from the built dataset, or by validating the
  folder) because `_info` needs them; `folder` keeps the validated
  `adnerf_folder.Folder` for the build.
  """
  path: str = ''
  images_dir: str = 'ori_imgs'
  resolution: int = 0
  audio_file: str = ''
  height: int = 0
  width: int = 0
  window_steps: int = audio_features.WINDOW_STEPS
  folder: Any = None

  def params(self) -> dict[str, Any]:
    # audio_feature only matters for aud.wav: a precomputed file ignores it.
    return {'path': str(self.path), 'images_dir': str(self.images_dir),
            'resolution': int(self.resolution),
            'audio_file': str(self.audio_file),
            'audio_feature': ('' if self.audio_file else
                              str(self.audio_feature)),
            'audio_dim': int(self.audio_dim),
            'audio_context': int(self.audio_context)}

  def key(self) -> str:
    """e.g. adnerf-obama-1a2b3c4d-96px-logmel29-ctx8 (hash: path, images)."""
    digest = hashlib.sha1(
        f'{self.path}\0{self.images_dir}'.encode()).hexdigest()[:8]
    base = os.path.basename(os.path.normpath(self.path)) or 'root'
    size = f'{self.resolution}px' if self.resolution else 'fullres'
    audio = (os.path.splitext(self.audio_file)[0] if self.audio_file else
             self.audio_feature)
    return (f'{self.name}-{base}-{digest}-{size}-{audio}{self.audio_dim}'
            f'-ctx{self.audio_context}')

  def validate(self) -> None:
    """Raises DatasetError (one line) for settings no build can use.

    Only the values: the folder itself is read by `make_builder`, and only
    when the dataset is not built yet.
    """
    self.validate_common()
    if not self.path:
      raise DatasetError('config.data.path must name the processed folder '
                         '(--config.data.path=DIR)')
    if int(self.resolution) != self.resolution or not (
        self.resolution == 0 or self.resolution >= MIN_SIZE):
      raise DatasetError(f'config.data.resolution must be 0 (the folder\'s '
                         f'size) or an integer >= {MIN_SIZE}, got '
                         f'{self.resolution}')
    if not self.images_dir or os.path.isabs(self.images_dir):
      raise DatasetError('config.data.images_dir must be a subfolder name, '
                         f'got {self.images_dir!r}')
    if self.audio_file and (not self.audio_file.endswith('.npy') or
                            os.path.basename(self.audio_file) !=
                            self.audio_file):
      raise DatasetError(
          "config.data.audio_file must be '' (aud.wav) or a .npy file name "
          f'in the folder (aud.npy, aud_ds.npy, ...), got '
          f'{self.audio_file!r}')

  def read_folder(self) -> 'adnerf_folder.Folder':
    """Validates the folder (every problem in one FolderError)."""
    return adnerf_folder.read_folder(
        self.path, images_dir=self.images_dir, audio_file=self.audio_file,
        audio_dim=self.audio_dim)

  def resolve(self, builder_dir: str) -> None:
    """Fills height/width/window_steps for `_info`.

    Args:
      builder_dir: the parameter-keyed root `make_builder` uses.  A built
        dataset there supplies the sizes (the source folder may be gone by
        now); otherwise the folder is validated and kept for the build.
    """
    built = os.path.join(builder_dir, NAME, self.name, DATASET_VERSION,
                         _METADATA_FILE)
    if os.path.isfile(built):
      with open(built) as f:
        meta = json.load(f)
      self.check_unchanged(meta, os.path.dirname(built))
      self.height, self.width = int(meta['height']), int(meta['width'])
      self.window_steps = int(meta['audio']['window_steps'])
      return
    self.folder = self.read_folder()
    self.height, self.width = adnerf_folder.target_size(
        self.folder.height, self.folder.width, self.resolution)
    if self.folder.audio_shape is not None:
      self.window_steps = self.folder.audio_shape[1]

  def check_unchanged(self, meta: dict[str, Any], built_dir: str) -> None:
    """DatasetError if the source folder changed since the build.

    A folder that is gone is fine: the built dataset is self-contained.
    """
    if not os.path.isdir(self.path):
      return
    if meta.get('source_fingerprint') != adnerf_folder.fingerprint(
        self.path, self.audio_file):
      raise DatasetError(
          f'{self.path} changed (transforms json or audio) since the dataset '
          f'at {built_dir} was built from it; delete that dataset folder to '
          'rebuild, or use another data_dir')

  def frame_shape(self) -> tuple[int, int]:
    if not self.height:
      raise DatasetError('builder config adnerf was not resolved against a '
                         'folder; build it through data.build_dataset')
    return self.height, self.width


def config_from_data_config(data_config) -> PortraitConfig:
  """The builder config for `config.data` (validated, no file access)."""
  if data_config.name != NAME:
    raise DatasetError(f'config.data.name must be {NAME!r}, got '
                       f'{data_config.name!r}')
  if data_config.builder_config == 'adnerf':
    path = data_config.get('path', '')
    builder_config = AdnerfConfig(
        name='adnerf',
        description='AD-NeRF/SSP-NeRF/RAD-NeRF processed-data folder.',
        path=os.path.abspath(os.path.expanduser(path)) if path else '',
        images_dir=data_config.get('images_dir', 'ori_imgs'),
        resolution=data_config.get('resolution', 0),
        audio_file=data_config.get('audio_file', ''),
        audio_feature=data_config.audio_feature,
        audio_dim=data_config.audio_dim,
        audio_context=data_config.audio_context)
    builder_config.validate()
    return builder_config
  builder_config = PortraitConfig(
      name=data_config.builder_config,
      description='Procedural talking portrait (ssp_nerf_jax.synthetic).',
      size=data_config.size,
      duration_s=data_config.duration_s,
      seed=data_config.synthetic_seed,
      audio_feature=data_config.audio_feature,
      audio_dim=data_config.audio_dim,
      audio_context=data_config.audio_context)
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


def split_sizes(num_frames: int) -> tuple[int, int]:
  """(num_train, num_val): AD-NeRF's first int(N*10/11) frames train."""
  num_train = num_frames * TRAIN_FRACTION[0] // TRAIN_FRACTION[1]
  return num_train, num_frames - num_train


class SspPortrait(tfds.core.GeneratorBasedBuilder):
  """Talking-portrait frames with parsing, pose and audio windows."""

  VERSION = tfds.core.Version(DATASET_VERSION)
  RELEASE_NOTES = {DATASET_VERSION: 'Initial release: synthetic portraits.'}
  BUILDER_CONFIGS = [
      PortraitConfig(
          name='synthetic',
          description='Procedural talking portrait (ssp_nerf_jax.synthetic).'),
      AdnerfConfig(
          name='adnerf',
          description='AD-NeRF/SSP-NeRF/RAD-NeRF processed-data folder.'),
  ]
  # TFDS 4.9.10's `code_path` evaluates `importlib_resources.abc` (a
  # backport it only installs on Python < 3.9) for builders outside its own
  # package, so download_and_prepare dies with ModuleNotFoundError.  The
  # path only locates an optional checksums file beside this module.
  code_path = epath.Path(__file__)

  def _create_builder_config(self, builder_config, version):
    # TFDS rejects a config *instance* named like a registered one ("Cannot
    # name a custom BuilderConfig the same as an available BuilderConfig").
    # Our registered name is a family whose parameters come from
    # config.data, so accept our own parameterised instances.
    if (isinstance(builder_config, PortraitConfig) and
        builder_config.name in CONFIG_NAMES):
      builder_config.validate()
      return builder_config
    if isinstance(builder_config, str) and builder_config not in CONFIG_NAMES:
      raise DatasetError(f'unknown builder config {builder_config!r} for '
                         f'{NAME}; choose one of {list(CONFIG_NAMES)}')
    return super()._create_builder_config(builder_config, version)

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    if isinstance(cfg, AdnerfConfig):
      size, steps = cfg.frame_shape(), cfg.window_steps
    else:
      size, steps = (cfg.size, cfg.size), audio_features.WINDOW_STEPS
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

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: generated or read locally.
    if isinstance(self.builder_config, AdnerfConfig):
      return self._folder_splits()
    return self._synthetic_splits()

  def _synthetic_splits(self):
    cfg = self.builder_config
    # Imported here so that reading a built dataset never needs the
    # generator (or its dependencies).
    from ssp_nerf_jax import synthetic  # pylint: disable=g-import-not-at-top
    clip = synthetic.generate_clip(size=cfg.size, duration_s=cfg.duration_s,
                                   seed=cfg.seed)
    num_frames = len(clip.images)
    windows = audio_features.context_windows(
        audio_features.compute_features(
            clip.audio, clip.sample_rate, feature=cfg.audio_feature,
            dim=cfg.audio_dim, num_frames=num_frames, fps=clip.fps),
        cfg.audio_context)
    num_train, num_val = split_sizes(num_frames)
    self.info.metadata.update(
        clip_metadata(clip, cfg, num_train=num_train, num_val=num_val))
    return {
        'train': self._generate_examples(clip, windows, range(num_train)),
        'val': self._generate_examples(clip, windows,
                                       range(num_train, num_frames)),
    }

  def _folder_splits(self):
    cfg = self.builder_config
    folder = cfg.folder or cfg.read_folder()
    hw = cfg.frame_shape()
    features = adnerf_folder.load_audio_features(folder, cfg.audio_feature,
                                                 cfg.audio_dim)
    self.info.metadata.update(folder_metadata(folder, cfg, hw,
                                              features.shape[1]))
    return {split: self._folder_examples(folder, features, records, hw)
            for split, records in folder.splits.items()}

  def _folder_examples(self, folder, features, records, hw):
    offsets = audio_features.context_offsets(self.builder_config.audio_context)
    for position, record in enumerate(records):
      frame = adnerf_folder.load_frame(folder, record, hw)
      yield position, {
          **frame,
          'audio': adnerf_folder.context_window(features, record.aud_id,
                                                offsets),
          'c2w': record.c2w,
          'frame_id': np.int32(record.img_id),
          'mouth_open': np.float32(record.mouth_open),
      }

  def _generate_examples(self, clip, windows, frame_ids):
    for i in frame_ids:
      yield i, {
          'image': clip.images[i],
          'parsing': clip.parsing[i],
          'audio': windows[i],
          'c2w': np.asarray(clip.c2w[i], np.float32),
          'face_rect': np.asarray(clip.face_rect[i], np.int32),
          'frame_id': np.int32(i),
          'mouth_open': np.float32(clip.mouth_open[i]),
      }


def clip_metadata(clip, cfg: PortraitConfig, *, num_train: int,
                  num_val: int) -> dict[str, Any]:
  """The per-clip metadata dict written beside the records."""
  height, width = clip.images.shape[1:3]
  return {
      'params': cfg.params(),
      'source': 'synthetic',
      'height': int(height), 'width': int(width),
      'focal': float(clip.focal), 'cx': float(clip.cx), 'cy': float(clip.cy),
      'near': float(clip.near), 'far': float(clip.far),
      'fps': float(clip.fps),
      'class_names': [str(n) for n in clip.class_names],
      'num_classes': len(clip.class_names),
      'num_frames': num_train + num_val,
      'num_train': num_train, 'num_val': num_val,
      'audio': {
          'feature': cfg.audio_feature, 'dim': cfg.audio_dim,
          'context': cfg.audio_context,
          'context_offsets': audio_features.context_offsets(
              cfg.audio_context).tolist(),
          'window_steps': audio_features.WINDOW_STEPS,
          'window_centre': audio_features.WINDOW_CENTRE,
          'step_s': audio_features.STEP_S,
          'sample_rate': audio_features.SAMPLE_RATE,
      },
      'background': np.asarray(clip.background, np.uint8),
      'waveform': audio_features.to_16k_mono(clip.audio, clip.sample_rate),
  }


def folder_metadata(folder, cfg: AdnerfConfig, hw: tuple[int, int],
                    window_steps: int) -> dict[str, Any]:
  """The per-clip metadata dict of a processed folder at size `hw`."""
  focal, cx, cy = adnerf_folder.scale_intrinsics(
      folder.focal, folder.cx, folder.cy, (folder.height, folder.width), hw)
  near, far = adnerf_folder.near_far(folder)
  num_train, num_val = (len(folder.splits[s]) for s in ('train', 'val'))
  scheme = folder.scheme
  return {
      'params': cfg.params(),
      'source': 'adnerf',
      'source_path': folder.root,
      'source_fingerprint': adnerf_folder.fingerprint(folder.root,
                                                      cfg.audio_file),
      'parsing_scheme': scheme.name,
      'height': int(hw[0]), 'width': int(hw[1]),
      'source_height': int(folder.height), 'source_width': int(folder.width),
      'focal': float(focal), 'cx': float(cx), 'cy': float(cy),
      'near': float(near), 'far': float(far),
      'fps': audio_features.FPS,
      'class_names': list(scheme.class_names),
      'num_classes': len(scheme.class_names),
      'num_frames': num_train + num_val,
      'num_train': num_train, 'num_val': num_val,
      'audio': {
          'feature': (audio_features.PRECOMPUTED_PREFIX + cfg.audio_file
                      if cfg.audio_file else cfg.audio_feature),
          'dim': cfg.audio_dim,
          'context': cfg.audio_context,
          'context_offsets': audio_features.context_offsets(
              cfg.audio_context).tolist(),
          'window_steps': int(window_steps),
          'window_centre': int(window_steps) // 2,
          'step_s': audio_features.STEP_S,
          'sample_rate': audio_features.SAMPLE_RATE,
      },
      'background': adnerf_folder.load_background(folder, hw),
      'waveform': adnerf_folder.load_waveform(folder),
  }


def make_builder(builder_config: PortraitConfig,
                 data_dir: str) -> SspPortrait:
  """The builder for `builder_config`, rooted in its parameter-keyed folder.

  Args:
    builder_config: validated `PortraitConfig`.
    data_dir: root of all builds; this build lives in
      `data_dir/<builder_config.key()>/ssp_portrait/<name>/1.0.0`.

  Returns:
    The builder (prepared or not).

  Raises:
    DatasetError: the folder holds a dataset built with other parameters,
      or (adnerf, not built yet) the source folder is unusable: then
      nothing has been written.
  """
  builder_dir = os.path.join(data_dir, builder_config.key())
  if isinstance(builder_config, AdnerfConfig):
    builder_config.resolve(builder_dir)
  builder = SspPortrait(data_dir=builder_dir, config=builder_config)
  check_params(builder)
  return builder


def is_prepared(builder: SspPortrait) -> bool:
  """Whether the (complete, renamed) dataset folder exists."""
  return (builder.data_path / 'dataset_info.json').exists()


def check_params(builder: SspPortrait) -> None:
  """Raises DatasetError if the data on disk was built with other params."""
  if not is_prepared(builder):
    return
  metadata = builder.info.metadata or {}
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
