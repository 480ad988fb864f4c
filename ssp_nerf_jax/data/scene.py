"""The constants of a dataset's scene, read once from its built metadata."""
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
  # Defaults let tests build a SceneInfo by hand.
  audio_feature: str = flax.struct.field(pytree_node=False, default='logmel')
  audio_dim: int = flax.struct.field(pytree_node=False, default=29)
  audio_context: int = flax.struct.field(pytree_node=False, default=8)
  audio_window_steps: int = flax.struct.field(pytree_node=False, default=16)
  audio_context_offsets: tuple[int, ...] = flax.struct.field(
      pytree_node=False, default=(-4, -3, -2, -1, 0, 1, 2, 3))
  # Torso warp reference: mean training pose, row-major 4x4 (or None).
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
