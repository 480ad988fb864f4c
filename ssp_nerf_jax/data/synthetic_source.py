"""The procedural talking portrait (`synthetic.generate_clip`) as a source."""
import dataclasses
import functools
from typing import Any, Iterator, Optional

import numpy as np

from ssp_nerf_jax.data import audio_features
from ssp_nerf_jax.data import portrait_source
from ssp_nerf_jax.runtime import errors


@dataclasses.dataclass(eq=False)
class SyntheticConfig(portrait_source.PortraitConfig):
  """Builder config `synthetic`; the defaults are configs/synthetic.py's."""
  name: str = 'synthetic'
  description: Optional[str] = (
      'Procedural talking portrait (ssp_nerf_jax.synthetic).')
  size: int = 96
  duration_s: float = 24.0
  seed: int = 0

  @classmethod
  def from_data_config(cls, data_config) -> 'SyntheticConfig':
    return cls(size=data_config.size, duration_s=data_config.duration_s,
               seed=data_config.synthetic_seed,
               **cls.audio_settings(data_config))

  def params(self) -> dict[str, Any]:
    return {'size': int(self.size), 'duration_s': float(self.duration_s),
            'seed': int(self.seed), **self.audio_params()}

  def key(self) -> str:
    return (f'{self.name}-{self.size}px-{self.duration_s:g}s-seed{self.seed}'
            f'-{self.audio_key()}')

  def source(self) -> 'SyntheticSource':
    return SyntheticSource(self)

  def validate(self) -> None:
    super().validate()
    if int(self.size) != self.size or self.size < portrait_source.MIN_SIZE:
      raise errors.DatasetError(
          f'config.data.size must be an integer >= '
          f'{portrait_source.MIN_SIZE}, got {self.size}')
    if not self.duration_s > 0:
      raise errors.DatasetError(
          f'config.data.duration_s must be > 0, got {self.duration_s}')
    if self.duration_s * audio_features.FPS < 2:
      raise errors.DatasetError(
          'config.data.duration_s must cover at least 2 video frames (one '
          f'train, one val), got {self.duration_s}')


class SyntheticSource(portrait_source.Source):
  """The clip of a `SyntheticConfig`, generated on first use."""

  def __init__(self, config: SyntheticConfig):
    self.config = config

  def frame_shape(self) -> tuple[int, int]:
    return self.config.size, self.config.size

  def window_steps(self) -> int:
    return audio_features.WINDOW_STEPS

  @functools.cached_property
  def clip(self):
    """The generated `synthetic.Clip`."""
    # Reading a built dataset must not need the generator's dependencies.
    from ssp_nerf_jax import synthetic  # pylint: disable=g-import-not-at-top
    return synthetic.generate_clip(size=self.config.size,
                                   duration_s=self.config.duration_s,
                                   seed=self.config.seed)

  @functools.cached_property
  def windows(self) -> np.ndarray:
    """float32 [N, A, S, C]: every frame's audio context windows."""
    cfg, clip = self.config, self.clip
    features = audio_features.compute_features(
        clip.audio, clip.sample_rate, feature=cfg.audio_feature,
        dim=cfg.audio_dim, num_frames=len(clip.images), fps=clip.fps,
        speech_model=cfg.speech_model)
    return audio_features.context_windows(features, cfg.audio_context)

  def frame_ids(self) -> dict[str, range]:
    """The frames of each split."""
    num_frames = len(self.clip.images)
    num_train, _ = portrait_source.split_sizes(num_frames)
    return {'train': range(num_train), 'val': range(num_train, num_frames)}

  def metadata(self) -> dict[str, Any]:
    clip = self.clip
    height, width = clip.images.shape[1:3]
    num_train, num_val = (len(ids) for ids in self.frame_ids().values())
    return {
        'params': self.config.params(),
        'source': 'synthetic',
        'height': int(height), 'width': int(width),
        'focal': float(clip.focal), 'cx': float(clip.cx),
        'cy': float(clip.cy),
        'near': float(clip.near), 'far': float(clip.far),
        'fps': float(clip.fps),
        'class_names': [str(n) for n in clip.class_names],
        'num_classes': len(clip.class_names),
        'num_frames': num_train + num_val,
        'num_train': num_train, 'num_val': num_val,
        'audio': portrait_source.audio_metadata(
            self.config, self.config.audio_feature,
            audio_features.WINDOW_STEPS),
        'background': np.asarray(clip.background, np.uint8),
        'waveform': audio_features.to_16k_mono(clip.audio, clip.sample_rate),
    }

  def examples(self, split: str) -> Iterator[
      tuple[int, portrait_source.Example]]:
    clip, windows = self.clip, self.windows
    for i in self.frame_ids()[split]:
      yield i, {
          'image': clip.images[i],
          'parsing': clip.parsing[i],
          'audio': windows[i],
          'c2w': np.asarray(clip.c2w[i], np.float32),
          'face_rect': np.asarray(clip.face_rect[i], np.int32),
          'frame_id': np.int32(i),
          'mouth_open': np.float32(clip.mouth_open[i]),
          'eye_openness': np.float32(np.nan),  # the synthetic eyes never move
      }
