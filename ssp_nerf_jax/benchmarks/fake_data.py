"""Random scenes and batches of the right shapes, for benchmarks and tests.

They run the train step at any config's scale without building a dataset."""
import numpy as np

from ssp_nerf_jax.data import scene as scene_lib
from ssp_nerf_jax import synthetic


def random_scene(config, num_classes=11) -> scene_lib.SceneInfo:
  """A SceneInfo of config.data.size with AD-NeRF's Obama-like bounds."""
  size = config.data.size
  rng = np.random.default_rng(0)
  if num_classes == len(synthetic.CLASS_NAMES):
    class_names = synthetic.CLASS_NAMES
  else:
    class_names = tuple(f'class_{k}' for k in range(num_classes))
  reference = np.eye(4)
  reference[2, 3] = 0.87  # the mean pose of `random_batch`'s cameras
  return scene_lib.SceneInfo(
      background=rng.uniform(size=(size, size, 3)).astype(np.float32),
      height=size, width=size, focal=1100.0 * size / 450, cx=size / 2,
      cy=size / 2, near=0.57, far=1.17, fps=25.0, num_classes=num_classes,
      class_names=tuple(class_names), num_train=8, num_val=1,
      audio_feature=config.data.audio_feature,
      audio_dim=config.data.audio_dim,
      audio_context=config.data.audio_context,
      reference_c2w=tuple(reference.reshape(-1).tolist()))


def random_batch(config, scene, num_frames, seed=1):
  """Host batch of random frames with head-like poses (input_pipeline keys)."""
  rng = np.random.default_rng(seed)
  size, dim = scene.height, config.data.audio_dim
  # Cameras 0.87 units in front of the head, turned by up to 0.1 radians.
  angles = rng.uniform(-0.1, 0.1, num_frames)
  c2w = np.tile(np.eye(4, dtype=np.float32), (num_frames, 1, 1))
  c2w[:, 0, 0] = c2w[:, 2, 2] = np.cos(angles)
  c2w[:, 0, 2], c2w[:, 2, 0] = np.sin(angles), -np.sin(angles)
  c2w[:, 2, 3] = 0.87
  return {
      'image': rng.integers(0, 256, (num_frames, size, size, 3), np.uint8),
      'parsing': rng.integers(0, scene.num_classes, (num_frames, size, size),
                              np.uint8),
      'audio': rng.normal(size=(num_frames, config.data.audio_context, 16,
                                dim)).astype(np.float32),
      'c2w': c2w,
      'face_rect': np.tile(np.array([size // 4, size // 4, size // 2,
                                     size // 2], np.int32), (num_frames, 1)),
      'frame_id': np.arange(num_frames, dtype=np.int32),
      'mouth_open': np.zeros(num_frames, np.float32),
      'eye_openness': np.full(num_frames, np.nan, np.float32),
  }
