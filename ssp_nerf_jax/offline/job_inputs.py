"""Inputs of an offline job: audio files and camera pose tracks.

Everything is read and validated before the first (slow) render, and every
problem is a one-line `UserError` naming the file or value.  `trained` is
`trained.load_trained`'s result (config, builder, scene, ...).
"""
import json
import os
import warnings

import numpy as np

from ssp_nerf_jax.data import audio_features
from ssp_nerf_jax.data import input_pipeline
from ssp_nerf_jax.rendering import rigid
from ssp_nerf_jax.runtime import errors

_SILENCE = 1e-4  # Peak amplitude below which audio counts as silent.


# ------------------------------------------------------------------ audio --


def load_waveform_file(path: str) -> np.ndarray:
  """16 kHz mono float32 [T] of an audio file, or a one-line UserError."""
  if not os.path.isfile(path):
    raise errors.UserError(f'audio file {path} not found')
  try:
    with warnings.catch_warnings():  # librosa's soundfile -> audioread notes
      warnings.simplefilter('ignore')
      waveform = audio_features.load_audio(path)
  except Exception as e:  # pylint: disable=broad-except
    # librosa raises soundfile/audioread/ValueError types alike.
    raise errors.UserError(f'cannot read audio {path}: '
                           f'{type(e).__name__}: {e}') from None
  if not np.all(np.isfinite(waveform)):
    raise errors.UserError(f'audio {path} contains non-finite samples')
  return waveform


def check_audio_length(path: str, waveform: np.ndarray, fps: float) -> int:
  """Frames the audio covers; UserError if fewer than one or silent."""
  num_frames = audio_features.num_video_frames(len(waveform), fps)
  seconds = len(waveform) / audio_features.SAMPLE_RATE
  if num_frames < 1:
    raise errors.UserError(f'audio {path} is {seconds:.3f} s long, shorter '
                           f'than one video frame (1/{fps:g} s)')
  if np.max(np.abs(waveform)) < _SILENCE:
    raise errors.UserError(f'audio {path} is silent (peak amplitude below '
                           f'{_SILENCE:g})')
  return num_frames


def load_feature_file(path: str, scene) -> np.ndarray:
  """Precomputed features float32 [N, 16, C] from a `.npy` file."""
  try:
    features = np.load(path)
  except (OSError, ValueError) as e:
    raise errors.UserError(f'cannot read features {path}: {e}') from None
  want = (scene.audio_window_steps, scene.audio_dim)
  if features.ndim != 3 or features.shape[1:] != want or not len(features):
    raise errors.UserError(f'features {path} have shape {features.shape}, '
                           f'expected [N>0, {want[0]}, {want[1]}]')
  if not np.all(np.isfinite(features)):
    raise errors.UserError(f'features {path} contain non-finite values')
  return features.astype(np.float32)


def check_speech_model(trained) -> None:
  """UserError unless new speech would be encoded by the same pretrained
  speech model (weights) as the training clip, if its features need one."""
  trained_with = trained.builder.info.metadata['audio'].get('speech_model')
  if not trained_with:
    return
  from ssp_nerf_jax.data import whisper_features  # pylint: disable=g-import-not-at-top
  model_dir = whisper_features.resolve_model_dir(
      trained.config.data.get('speech_model', ''))
  found = whisper_features.fingerprint(model_dir)
  if found != trained_with:
    raise errors.UserError(
        f'the model was trained on the features of the speech model with '
        f'fingerprint {trained_with}, but {model_dir} has {found}: install '
        'the model it was trained with')


def audio_windows(path: str, trained):
  """Per-frame model audio inputs of a wav/`.npy` file, and its waveform.

  Returns:
    (float32 [N, A, S, C] context windows, float32 [T] 16 kHz waveform or
    None for a feature file).
  """
  scene = trained.scene
  prefix = audio_features.PRECOMPUTED_PREFIX
  if scene.audio_feature.startswith(prefix) and not path.endswith('.npy'):
    # We cannot compute DeepSpeech/HuBERT features ourselves.
    raise errors.UserError(
        f'the model was trained on precomputed '
        f'{scene.audio_feature[len(prefix):]} features; pass the new audio '
        f'as the same kind of features (.npy), not {path}')
  if path.endswith('.npy'):
    features, waveform = load_feature_file(path, scene), None
  else:
    waveform = load_waveform_file(path)
    num_frames = check_audio_length(path, waveform, scene.fps)
    data = trained.config.data
    check_speech_model(trained)
    features = audio_features.compute_features(
        waveform, audio_features.SAMPLE_RATE, feature=data.audio_feature,
        dim=data.audio_dim, num_frames=num_frames, fps=scene.fps,
        speech_model=data.get('speech_model', ''))
  windows = audio_features.context_windows(features,
                                           trained.config.data.audio_context)
  return windows, waveform


# ------------------------------------------------------------------ poses --


def pose_track_pingpong(num_poses: int, num_frames: int) -> np.ndarray:
  """Indices 0, 1, .., n-1, n-2, .., 1, 0, 1, ... of length `num_frames`.

  Returns:
    int64 [num_frames] indices into a track of `num_poses` poses.
  """
  if num_poses < 1:
    raise ValueError(f'num_poses must be >= 1, got {num_poses}')
  if num_poses == 1:
    return np.zeros(num_frames, np.int64)
  period = 2 * (num_poses - 1)
  phase = np.arange(num_frames) % period
  return np.where(phase < num_poses, phase, period - phase)


def check_rigid(c2w: np.ndarray, source: str) -> None:
  """UserError unless every [4, 4] matrix is finite and rigid."""
  if c2w.ndim != 3 or c2w.shape[1:] != (4, 4) or not len(c2w):
    raise errors.UserError(f'{source}: expected 4x4 matrices, got shape '
                           f'{c2w.shape}')
  problems = rigid.pose_problems(c2w)
  if problems:
    index, reason = problems[0]
    raise errors.UserError(f'{source}: frame {index} {reason}')


def load_transforms(path: str) -> np.ndarray:
  """float32 [N, 4, 4] from a transforms.json's frames[].transform_matrix."""
  try:
    with open(path) as f:
      # NaN/Infinity literals are accepted so that they are reported below.
      frames = json.load(f)['frames']
    c2w = np.asarray([fr['transform_matrix'] for fr in frames], np.float32)
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise errors.UserError(f'cannot read poses {path}: {type(e).__name__}: '
                           f'{e}') from None
  check_rigid(c2w, f'poses {path}')
  return c2w


def train_poses(trained) -> np.ndarray:
  """The training split's camera track, float32 [N, 4, 4].

  Only the poses are read: decoding the split's images and parsing maps
  would cost seconds and gigabytes at paper scale.
  """
  return input_pipeline.load_poses(trained.builder, 'train')


def load_track(spec: str, trained) -> np.ndarray:
  """The pose track float32 [M, 4, 4] that `spec` names.

  Args:
    spec: 'train' (training split's track), 'static' (its first pose), or a
      transforms.json path.
    trained: from `load_trained`.
  """
  if spec == 'static':
    return train_poses(trained)[:1]
  if spec == 'train':
    return train_poses(trained)
  if not os.path.isfile(spec):
    raise errors.UserError(f'--poses {spec} is not a file (nor "train" or '
                           '"static")')
  return load_transforms(spec)


def pose_track(spec, trained, num_frames: int) -> np.ndarray:
  """Camera poses float32 [num_frames, 4, 4] for a render.

  Args:
    spec: a `load_track` spec, or an already loaded track [M, 4, 4]; a
      track shorter than `num_frames` plays forward then backward.
    trained: from `load_trained`.
    num_frames: frames to render.
  """
  track = load_track(spec, trained) if isinstance(spec, str) else spec
  return track[pose_track_pingpong(len(track), num_frames)]
