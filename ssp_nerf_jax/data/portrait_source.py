"""Sources of `ssp_portrait` builds: the interface, the shared config base."""
import abc
import dataclasses
from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds

from ssp_nerf_jax.data import audio_features
from ssp_nerf_jax.runtime import errors

SPLITS = ('train', 'val')
MIN_SIZE = 16
TRAIN_FRACTION = (10, 11)

Example = dict[str, np.ndarray]


def split_sizes(num_frames: int) -> tuple[int, int]:
  """(num_train, num_val): AD-NeRF's first int(N*10/11) frames train."""
  num_train = num_frames * TRAIN_FRACTION[0] // TRAIN_FRACTION[1]
  return num_train, num_frames - num_train


class Source(abc.ABC):
  """The frames of one build, as the TFDS builder needs them."""

  @abc.abstractmethod
  def frame_shape(self) -> tuple[int, int]:
    """(height, width) of the stored frames."""

  @abc.abstractmethod
  def window_steps(self) -> int:
    """Feature steps per audio window (S of the `audio` feature)."""

  @abc.abstractmethod
  def metadata(self) -> dict[str, Any]:
    """The per-clip metadata (`portrait_dataset.PortraitMetadata` keys)."""

  @abc.abstractmethod
  def examples(self, split: str) -> Iterator[tuple[int, Example]]:
    """(key, example) of `split` (one of SPLITS), in frame order."""

  def check_built(self, metadata: dict[str, Any], built_dir: str) -> None:
    """DatasetError if the build at `built_dir` no longer matches the source."""
    del metadata, built_dir


@dataclasses.dataclass(eq=False)
class PortraitConfig(tfds.core.BuilderConfig, abc.ABC):
  """Builder-config base: the audio settings every source shares."""
  audio_feature: str = 'logmel'
  audio_dim: int = 29
  audio_context: int = 8
  speech_model: str = ''

  @classmethod
  @abc.abstractmethod
  def from_data_config(cls, data_config) -> 'PortraitConfig':
    """The config for `config.data` (not validated yet)."""

  @abc.abstractmethod
  def params(self) -> dict[str, Any]:
    """The parameters that determine the data (JSON-serialisable)."""

  @abc.abstractmethod
  def key(self) -> str:
    """Folder name unique to the parameters, e.g. synthetic-96px-24s-..."""

  @abc.abstractmethod
  def source(self) -> Source:
    """The source that builds the data (touches no file yet)."""

  @staticmethod
  def audio_settings(data_config) -> dict[str, Any]:
    """The shared fields' values in `config.data`."""
    return {'audio_feature': data_config.audio_feature,
            'audio_dim': data_config.audio_dim,
            'audio_context': data_config.audio_context,
            'speech_model': data_config.speech_model}

  def speech_fingerprint(self) -> str:
    """The speech model's `whisper_features.fingerprint_model`; '' for
    librosa's."""
    if self.audio_feature not in audio_features.SPEECH_MODEL_FEATURES:
      return ''
    from ssp_nerf_jax.data import whisper_features  # pylint: disable=g-import-not-at-top
    try:
      model_dir = whisper_features.resolve_model_dir(self.speech_model)
    except errors.UserError as e:
      raise errors.DatasetError(str(e)) from None
    return whisper_features.fingerprint_model(model_dir)

  def audio_params(self) -> dict[str, Any]:
    """Audio settings that determine the data (incl. the speech model's)."""
    fingerprint = self.speech_fingerprint()
    return {'audio_feature': str(self.audio_feature),
            'audio_dim': int(self.audio_dim),
            'audio_context': int(self.audio_context),
            **({'speech_model': fingerprint} if fingerprint else {})}

  def audio_key(self) -> str:
    """The audio settings in a cache folder name, e.g. 'mfcc29-ctx8'."""
    fingerprint = self.speech_fingerprint()
    return (f'{self.audio_feature}{self.audio_dim}'
            f'{"-" + fingerprint[:8] if fingerprint else ""}'
            f'-ctx{self.audio_context}')

  def validate(self) -> None:
    """DatasetError for values no build can use (incl. a missing model)."""
    if self.audio_feature not in audio_features.FEATURES:
      raise errors.DatasetError(
          f'config.data.audio_feature must be one of '
          f'{list(audio_features.FEATURES)}, got {self.audio_feature!r}')
    if self.audio_dim < 1:
      raise errors.DatasetError(
          f'config.data.audio_dim must be >= 1, got {self.audio_dim}')
    if self.audio_context < 1:
      raise errors.DatasetError(
          f'config.data.audio_context must be >= 1, got {self.audio_context}')
    self.speech_fingerprint()


def audio_metadata(config: PortraitConfig, feature: str,
                   window_steps: int) -> dict[str, Any]:
  """The metadata's 'audio' entry: how the `audio` windows were made."""
  fingerprint = (config.speech_fingerprint()
                 if feature in audio_features.SPEECH_MODEL_FEATURES else '')
  return {
      'feature': feature, 'dim': config.audio_dim,
      **({'speech_model': fingerprint} if fingerprint else {}),
      'context': config.audio_context,
      'context_offsets': audio_features.context_offsets(
          config.audio_context).tolist(),
      'window_steps': int(window_steps),
      'window_centre': int(window_steps) // 2,
      'step_s': audio_features.STEP_S,
      'sample_rate': audio_features.SAMPLE_RATE,
  }
