"""Pinhole cameras to rays, in AD-NeRF's (OpenGL) convention.

Camera axes: x right, y up, the camera looks along -z.  Pixel (u=col, v=row)
has the camera-space direction ((u - cx) / f, -(v - cy) / f, -1); pixel
centres sit at integer coordinates (AD-NeRF's `get_rays`).  Directions are
NOT normalised: their z component is -1 in camera space, so a sample at
distance `t` along a ray lies at camera depth `t` and the near/far bounds are
depths, exactly as in AD-NeRF.  `viewdirs` holds the unit directions the MLP
sees.
"""
import flax
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class Rays:
  """A batch of rays; every field has the same leading shape [...].

  Attributes:
    origins: [..., 3] ray origins (the camera centre in head space).
    directions: [..., 3] un-normalised directions (camera-space z = -1).
    viewdirs: [..., 3] `directions` normalised to unit length.
  """
  origins: jax.Array
  directions: jax.Array
  viewdirs: jax.Array

  @property
  def shape(self) -> tuple[int, ...]:
    """The leading (batch) shape shared by all fields."""
    return self.origins.shape[:-1]

  def reshape(self, *shape: int) -> 'Rays':
    """Reshapes the leading dims of every field to `shape`."""
    return jax.tree_util.tree_map(
        lambda x: x.reshape(tuple(shape) + x.shape[-1:]), self)


def camera_directions(pixels, focal, cx, cy):
  """Camera-space directions of pixels.

  Args:
    pixels: [..., 2] integer (row, col) pixel coordinates.
    focal: focal length in pixels.
    cx: principal point column.
    cy: principal point row.

  Returns:
    [..., 3] float32 directions ((col - cx) / f, -(row - cy) / f, -1).
  """
  pixels = jnp.asarray(pixels, jnp.float32)
  row, col = pixels[..., 0], pixels[..., 1]
  return jnp.stack(
      [(col - cx) / focal, -(row - cy) / focal, -jnp.ones_like(row)], axis=-1)


def pixel_rays(c2w, pixels, focal, cx, cy) -> Rays:
  """Rays through given pixels.

  Args:
    c2w: [..., 4, 4] (or [..., 3, 4]) camera-to-head matrices; the leading
      dims broadcast against those of `pixels` (e.g. c2w [F, 1, 4, 4] with
      pixels [F, R, 2]).
    pixels: [..., 2] integer (row, col) pixel coordinates.
    focal: focal length in pixels.
    cx: principal point column.
    cy: principal point row.

  Returns:
    `Rays` with the broadcast leading shape.
  """
  c2w = jnp.asarray(c2w, jnp.float32)
  dirs_cam = camera_directions(pixels, focal, cx, cy)
  # R @ d for every ray, written as a broadcast sum like AD-NeRF's get_rays.
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
  """Rays through every pixel of one frame.

  Args:
    c2w: [4, 4] (or [3, 4]) camera-to-head matrix.
    height: image height H in pixels.
    width: image width W in pixels.
    focal: focal length in pixels.
    cx: principal point column.
    cy: principal point row.

  Returns:
    `Rays` of shape [H, W].
  """
  return pixel_rays(c2w, pixel_grid(height, width), focal, cx, cy)
