"""An AD-NeRF / SSP-NeRF / RAD-NeRF processed folder as a `ssp_portrait` source.

The folder is validated completely before TFDS writes a file."""
import dataclasses
import functools
import hashlib
import os
from typing import Any, Iterator, Optional

import numpy as np

from ssp_nerf_jax.data import adnerf_folder
from ssp_nerf_jax.data import audio_features
from ssp_nerf_jax.data import portrait_source
from ssp_nerf_jax.rendering import rigid
from ssp_nerf_jax.runtime import errors


@dataclasses.dataclass(eq=False)
class FolderConfig(portrait_source.PortraitConfig):
  """Builder config `adnerf`.

  `resolution`: longer side in px, 0 keeps the folder's; `audio_file`: '' reads
  aud.wav through `audio_feature`, else a precomputed .npy in the folder.
  """
  name: str = 'adnerf'
  description: Optional[str] = (
      'AD-NeRF/SSP-NeRF/RAD-NeRF processed-data folder.')
  path: str = ''
  images_dir: str = 'ori_imgs'
  resolution: int = 0
  audio_file: str = ''

  @classmethod
  def from_data_config(cls, data_config) -> 'FolderConfig':
    path = data_config.path
    return cls(
        path=os.path.abspath(os.path.expanduser(path)) if path else '',
        images_dir=data_config.images_dir,
        resolution=data_config.resolution,
        audio_file=data_config.audio_file,
        **cls.audio_settings(data_config))

  def speech_fingerprint(self) -> str:
    # A precomputed file needs no speech model.
    return '' if self.audio_file else super().speech_fingerprint()

  def params(self) -> dict[str, Any]:
    # audio_feature only matters for aud.wav: a precomputed file ignores it.
    audio = self.audio_params()
    if self.audio_file:
      audio['audio_feature'] = ''
    return {'path': str(self.path), 'images_dir': str(self.images_dir),
            'resolution': int(self.resolution),
            'audio_file': str(self.audio_file), **audio}

  def key(self) -> str:
    """e.g. adnerf-obama-1a2b3c4d-96px-logmel29-ctx8 (hash: path, images)."""
    digest = hashlib.sha1(
        f'{self.path}\0{self.images_dir}'.encode()).hexdigest()[:8]
    base = os.path.basename(os.path.normpath(self.path)) or 'root'
    size = f'{self.resolution}px' if self.resolution else 'fullres'
    audio = (f'{os.path.splitext(self.audio_file)[0]}{self.audio_dim}'
             f'-ctx{self.audio_context}' if self.audio_file else
             self.audio_key())
    return f'{self.name}-{base}-{digest}-{size}-{audio}'

  def source(self) -> 'FolderSource':
    return FolderSource(self)

  def validate(self) -> None:
    """Checks the values only: the folder is read by the source."""
    super().validate()
    if not self.path:
      raise errors.DatasetError('config.data.path must name the processed '
                                'folder (--config.data.path=DIR)')
    if int(self.resolution) != self.resolution or not (
        self.resolution == 0 or self.resolution >= portrait_source.MIN_SIZE):
      raise errors.DatasetError(
          f'config.data.resolution must be 0 (the folder\'s size) or an '
          f'integer >= {portrait_source.MIN_SIZE}, got {self.resolution}')
    if not self.images_dir or os.path.isabs(self.images_dir):
      raise errors.DatasetError('config.data.images_dir must be a subfolder '
                                f'name, got {self.images_dir!r}')
    if self.audio_file and (not self.audio_file.endswith('.npy') or
                            os.path.basename(self.audio_file) !=
                            self.audio_file):
      raise errors.DatasetError(
          "config.data.audio_file must be '' (aud.wav) or a .npy file name "
          f'in the folder (aud.npy, aud_ds.npy, ...), got '
          f'{self.audio_file!r}')


class FolderSource(portrait_source.Source):
  """The frames of a `FolderConfig`'s folder."""

  def __init__(self, config: FolderConfig):
    self.config = config

  @functools.cached_property
  def folder(self) -> adnerf_folder.Folder:
    """The validated folder (raises FolderError listing every problem)."""
    return adnerf_folder.read_folder(
        self.config.path, images_dir=self.config.images_dir,
        audio_file=self.config.audio_file, audio_dim=self.config.audio_dim)

  @functools.cached_property
  def features(self) -> np.ndarray:
    """float32 [N, S, C]: one audio window per video frame (by aud_id)."""
    return adnerf_folder.load_audio_features(
        self.folder, self.config.audio_feature, self.config.audio_dim,
        self.config.speech_model)

  def frame_shape(self) -> tuple[int, int]:
    return adnerf_folder.target_size(self.folder.height, self.folder.width,
                                     self.config.resolution)

  def window_steps(self) -> int:
    shape = self.folder.audio_shape  # None: aud.wav, our 16-step windows.
    return audio_features.WINDOW_STEPS if shape is None else shape[1]

  def metadata(self) -> dict[str, Any]:
    cfg, folder, hw = self.config, self.folder, self.frame_shape()
    focal, cx, cy = adnerf_folder.scale_intrinsics(
        folder.focal, folder.cx, folder.cy, (folder.height, folder.width), hw)
    near, far = rigid.adnerf_bounds(np.stack([f.c2w for f in folder.frames()]))
    num_train, num_val = (len(folder.splits[s])
                          for s in portrait_source.SPLITS)
    return {
        'params': cfg.params(),
        'source': 'adnerf',
        'source_path': folder.root,
        'source_fingerprint': adnerf_folder.fingerprint_folder(folder.root,
                                                               cfg.audio_file),
        'parsing_scheme': folder.scheme.name,
        'height': int(hw[0]), 'width': int(hw[1]),
        'source_height': int(folder.height),
        'source_width': int(folder.width),
        'focal': float(focal), 'cx': float(cx), 'cy': float(cy),
        'near': float(near), 'far': float(far),
        'fps': audio_features.FPS,
        'class_names': list(folder.scheme.class_names),
        'num_classes': len(folder.scheme.class_names),
        'num_frames': num_train + num_val,
        'num_train': num_train, 'num_val': num_val,
        'audio': portrait_source.audio_metadata(
            cfg, (audio_features.PRECOMPUTED_PREFIX + cfg.audio_file
                  if cfg.audio_file else cfg.audio_feature),
            self.features.shape[1]),
        'background': adnerf_folder.load_background(folder, hw),
        'waveform': adnerf_folder.read_folder_waveform(folder),
    }

  def examples(self, split: str) -> Iterator[
      tuple[int, portrait_source.Example]]:
    hw, features = self.frame_shape(), self.features
    offsets = audio_features.context_offsets(self.config.audio_context)
    for position, record in enumerate(self.folder.splits[split]):
      frame = adnerf_folder.load_frame(self.folder, record, hw)
      yield position, {
          **frame,
          'audio': adnerf_folder.context_window(features, record.aud_id,
                                                offsets),
          'c2w': record.c2w,
          'frame_id': np.int32(record.img_id),
          'mouth_open': np.float32(record.mouth_open),
          'eye_openness': np.float32(record.eye_openness),
      }

  def check_built(self, metadata: dict[str, Any], built_dir: str) -> None:
    """DatasetError if the folder changed since the build (gone is fine)."""
    path, audio_file = self.config.path, self.config.audio_file
    if not os.path.isdir(path):
      return
    if metadata.get('source_fingerprint') != adnerf_folder.fingerprint_folder(
        path, audio_file):
      raise errors.DatasetError(
          f'{path} changed (transforms json or audio) since the dataset at '
          f'{built_dir} was built from it; delete that dataset folder to '
          'rebuild, or use another data_dir')
