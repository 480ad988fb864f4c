"""Inputs of an offline job (audio, pose tracks), checked before the first
render; each problem is a one-line UserError naming the file or value."""
import json
import os
import warnings

import numpy as np

from ssp_nerf_jax.data import audio_features
from ssp_nerf_jax.data import input_pipeline
from ssp_nerf_jax.offline import trained as trained_lib
from ssp_nerf_jax.rendering import rigid
from ssp_nerf_jax.runtime import errors

_SILENCE = 1e-4


def load_waveform_file(path: str) -> np.ndarray:
  """16 kHz mono float32 [T] of an audio file, or a one-line UserError."""
  if not os.path.isfile(path):
    raise errors.UserError(f'audio file {path} not found')
  try:
    with warnings.catch_warnings():  # librosa's audioread fallback notes
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
  """UserError unless new speech gets the training clip's speech model."""
  trained_with = trained.builder.info.metadata['audio'].get('speech_model')
  if not trained_with:
    return
  from ssp_nerf_jax.data import whisper_features  # pylint: disable=g-import-not-at-top
  model_dir = whisper_features.resolve_model_dir(
      trained.config.data.speech_model)
  found = whisper_features.fingerprint_model(model_dir)
  if found != trained_with:
    raise errors.UserError(
        f'the model was trained on the features of the speech model with '
        f'fingerprint {trained_with}, but {model_dir} has {found}: install '
        'the model it was trained with')


def audio_windows(path: str, trained):
  """(windows float32 [N, A, S, C], 16 kHz waveform float32 [T] or None for
  `.npy` features) of an audio file."""
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
  """The training split's camera track, float32 [N, 4, 4] (as refined in
  training, see config.pose_refinement), read without decoding the split's
  images (costly at paper scale)."""
  return trained_lib.split_poses(trained, 'train')


def load_track(spec: str, trained) -> np.ndarray:
  """Pose track float32 [M, 4, 4] of `spec`: 'train' (the training split's),
  'static' (its first pose) or a transforms.json path."""
  if spec == 'static':
    return train_poses(trained)[:1]
  if spec == 'train':
    return train_poses(trained)
  if not os.path.isfile(spec):
    raise errors.UserError(f'--poses {spec} is not a file (nor "train" or '
                           '"static")')
  return load_transforms(spec)


def track_openness(spec: str, trained) -> np.ndarray:
  """float32 [M] eye openness of `load_track(spec)`'s frames, NaN where
  unmeasured: the train split's; 'static' NaN (held open, as no one frame
  is typical); a transforms.json's frames' 'eye_openness'."""
  if spec == 'train':
    return input_pipeline.load_feature(trained.builder, 'train',
                                       'eye_openness')
  if spec == 'static':
    return np.full(1, np.nan, np.float32)
  with open(spec) as f:  # load_track read it already
    frames = json.load(f)['frames']
  values = [fr.get('eye_openness') for fr in frames]
  return np.asarray([v if isinstance(v, (int, float)) else np.nan
                     for v in values], np.float32)


def pose_track(spec, trained, num_frames: int) -> np.ndarray:
  """float32 [num_frames, 4, 4] from a `load_track` spec or a track [M, 4, 4],
  played forward then backward when shorter."""
  track = load_track(spec, trained) if isinstance(spec, str) else spec
  return track[rigid.ping_pong_indices(num_frames, len(track))]
