"""Pixel samplers: which pixels of a frame become training rays.

Each sampler maps (key, frame data) to integer pixel coordinates [R, 2] as
(row, col).  `config.sampling.strategy` picks one:
  - 'uniform':   every pixel equally likely.
  - 'face_rect': AD-NeRF's scheme: a share `face_rect_fraction` of the rays
                 uniformly inside the face rectangle, the rest uniformly over
                 the image.
All samplers draw with replacement; they are pure and run inside the jitted
train step, once per frame.
"""
import jax
import jax.numpy as jnp

STRATEGIES = ('uniform', 'face_rect')


def uniform_in_box(key, num, row0, col0, height, width):
  """Uniform integer pixels in the box [row0, row0+height) x [col0, col0+width).

  Box corners and sizes may be traced scalars.  Returns int32 [num, 2].
  """
  u = jax.random.uniform(key, (num, 2))
  size = jnp.stack([height, width]).astype(jnp.float32)
  offset = jnp.floor(u * size).astype(jnp.int32)
  offset = jnp.minimum(offset, jnp.stack([height, width]).astype(jnp.int32) - 1)
  return offset + jnp.stack([row0, col0]).astype(jnp.int32)


def sample_uniform(key, num_rays, height, width):
  """int32 [num_rays, 2] pixels uniform over an image of size height x width."""
  return uniform_in_box(key, num_rays, 0, 0, height, width)


def sample_face_rect(key, num_rays, height, width, face_rect, fraction):
  """AD-NeRF face-rectangle sampling.

  Args:
    key: PRNG key.
    num_rays: total rays R (static).
    height, width: image size (static).
    face_rect: int [4] as (x, y, w, h) = (col, row, width, height).
    fraction: share of rays drawn inside the rectangle (static float).
  Returns:
    int32 [R, 2] pixels (row, col); the first round(fraction * R) lie in the
    rectangle (clipped to the image).
  """
  num_in = int(round(fraction * num_rays))
  key_in, key_out = jax.random.split(key)
  x, y, w, h = (face_rect[i].astype(jnp.int32) for i in range(4))
  col0 = jnp.clip(x, 0, width - 1)
  row0 = jnp.clip(y, 0, height - 1)
  box_w = jnp.clip(jnp.minimum(x + w, width) - col0, 1, width)
  box_h = jnp.clip(jnp.minimum(y + h, height) - row0, 1, height)
  inside = uniform_in_box(key_in, num_in, row0, col0, box_h, box_w)
  outside = sample_uniform(key_out, num_rays - num_in, height, width)
  return jnp.concatenate([inside, outside], axis=0)


def sample_pixels(key, sampling_config, num_rays, height, width, frame):
  """Dispatches on `sampling_config.strategy`.

  Args:
    key: PRNG key for this frame.
    sampling_config: the `config.sampling` section.
    num_rays, height, width: static sizes.
    frame: dict of this frame's arrays (at least 'face_rect' [4]).
  Returns:
    int32 [num_rays, 2] pixels (row, col).
  """
  strategy = sampling_config.strategy
  if strategy == 'uniform':
    return sample_uniform(key, num_rays, height, width)
  if strategy == 'face_rect':
    return sample_face_rect(key, num_rays, height, width, frame['face_rect'],
                            sampling_config.face_rect_fraction)
  raise ValueError(f'config.sampling.strategy={strategy!r} is not one of '
                   f'{STRATEGIES}')
