"""Pinhole camera rays, OpenGL axes: x right, y up, looking along -z.

Pixel centres at integer (row, col); directions have camera z = -1, so t is
the depth."""
import flax
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class Rays:
  """Rays [...]: origins, directions (camera z = -1), unit viewdirs [..., 3]."""
  origins: jax.Array
  directions: jax.Array
  viewdirs: jax.Array

  @property
  def shape(self) -> tuple[int, ...]:
    """The leading shape [...]."""
    return self.origins.shape[:-1]

  def reshape(self, *shape: int) -> 'Rays':
    """Reshapes the leading dims of every field to `shape`."""
    return jax.tree_util.tree_map(
        lambda x: x.reshape(tuple(shape) + x.shape[-1:]), self)


def camera_directions(pixels, focal, cx, cy):
  """[..., 2] (row, col) pixels -> [..., 3] ((col-cx)/f, -(row-cy)/f, -1)."""
  pixels = jnp.asarray(pixels, jnp.float32)
  row, col = pixels[..., 0], pixels[..., 1]
  return jnp.stack(
      [(col - cx) / focal, -(row - cy) / focal, -jnp.ones_like(row)], axis=-1)


def pixel_rays(c2w, pixels, focal, cx, cy) -> Rays:
  """Rays through [..., 2] (row, col) pixels; c2w [..., 4, 4] broadcasts."""
  c2w = jnp.asarray(c2w, jnp.float32)
  dirs_cam = camera_directions(pixels, focal, cx, cy)
  directions = jnp.sum(dirs_cam[..., None, :] * c2w[..., :3, :3], axis=-1)
  origins = jnp.broadcast_to(c2w[..., :3, 3], directions.shape)
  viewdirs = directions / jnp.linalg.norm(directions, axis=-1, keepdims=True)
  return Rays(origins=origins, directions=directions, viewdirs=viewdirs)


def pixel_grid(height: int, width: int):
  """[H, W, 2] int32 (row, col) coordinates of every pixel."""
  rows, cols = jnp.meshgrid(
      jnp.arange(height, dtype=jnp.int32),
      jnp.arange(width, dtype=jnp.int32),
      indexing='ij')
  return jnp.stack([rows, cols], axis=-1)


def frame_rays(c2w, height: int, width: int, focal, cx, cy) -> Rays:
  """Rays [H, W] through every pixel of one frame; c2w [4, 4]."""
  return pixel_rays(c2w, pixel_grid(height, width), focal, cx, cy)
