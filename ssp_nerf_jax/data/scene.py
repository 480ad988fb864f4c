"""The constants of a dataset's scene: frame size, intrinsics, bounds,
classes, audio settings, background plate and the torso warp's reference
pose, read once from a built dataset's metadata."""
import flax
import numpy as np

from ssp_nerf_jax.data import input_pipeline
from ssp_nerf_jax.rendering import rigid


@flax.struct.dataclass
class SceneInfo:
  """Per-dataset constants (everything but `background` is static)."""
  background: np.ndarray  # float32 [H, W, 3] in [0, 1].
  height: int = flax.struct.field(pytree_node=False)
  width: int = flax.struct.field(pytree_node=False)
  focal: float = flax.struct.field(pytree_node=False)
  cx: float = flax.struct.field(pytree_node=False)
  cy: float = flax.struct.field(pytree_node=False)
  near: float = flax.struct.field(pytree_node=False)
  far: float = flax.struct.field(pytree_node=False)
  fps: float = flax.struct.field(pytree_node=False)
  num_classes: int = flax.struct.field(pytree_node=False)
  class_names: tuple[str, ...] = flax.struct.field(pytree_node=False)
  num_train: int = flax.struct.field(pytree_node=False)
  num_val: int = flax.struct.field(pytree_node=False)
  # Audio settings (defaults: configs/default.py) so that tests can build a
  # SceneInfo by hand without them.
  audio_feature: str = flax.struct.field(pytree_node=False, default='logmel')
  audio_dim: int = flax.struct.field(pytree_node=False, default=29)
  audio_context: int = flax.struct.field(pytree_node=False, default=8)
  # Feature steps per frame window: 16 (ours, DeepSpeech), 2 (HuBERT).
  audio_window_steps: int = flax.struct.field(pytree_node=False, default=16)
  # Frame offsets of the context windows: frame i sees i-4 .. i+3.
  audio_context_offsets: tuple[int, ...] = flax.struct.field(
      pytree_node=False, default=(-4, -3, -2, -1, 0, 1, 2, 3))
  # The torso warp's reference pose: the mean training pose as 16 floats
  # (row-major 4x4); None for hand-built scenes without poses.
  reference_c2w: tuple[float, ...] | None = flax.struct.field(
      pytree_node=False, default=None)


def load_scene_info(builder) -> SceneInfo:
  """SceneInfo from a prepared builder's metadata."""
  meta = builder.info.metadata
  audio = meta['audio']
  return SceneInfo(
      background=np.asarray(meta['background'], np.float32) / 255.0,
      height=int(meta['height']), width=int(meta['width']),
      focal=float(meta['focal']), cx=float(meta['cx']), cy=float(meta['cy']),
      near=float(meta['near']), far=float(meta['far']),
      fps=float(meta['fps']),
      num_classes=int(meta['num_classes']),
      class_names=tuple(meta['class_names']),
      num_train=int(meta['num_train']), num_val=int(meta['num_val']),
      audio_feature=str(audio['feature']), audio_dim=int(audio['dim']),
      audio_context=int(audio['context']),
      audio_window_steps=int(audio['window_steps']),
      audio_context_offsets=tuple(int(o) for o in audio['context_offsets']),
      reference_c2w=tuple(
          rigid.mean_pose(input_pipeline.load_poses(builder, 'train'))
          .reshape(-1).tolist()))
