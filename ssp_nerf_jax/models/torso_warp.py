"""Torso warp by two-bone blend skinning: x' = x + b(x) (B_t x + r - x).

B_t = C_ref C_t^-1 maps a frame's head space to the reference pose's, where
the torso (still in the camera frame) stays put; parsing supervises b."""
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssp_nerf_jax.models import encoding
from ssp_nerf_jax.models import nerf

# Initial blend logit: sigmoid(-4.6) = 0.01.
INITIAL_BLEND_LOGIT = -4.6
BODY_CLASS_NAMES = ('neck', 'torso')


def rigid_inverse(c2w):
  """Inverse of rigid [..., 4, 4] transforms (R^T, -R^T t)."""
  rot_t = jnp.swapaxes(c2w[..., :3, :3], -1, -2)
  trans = -jnp.einsum('...ij,...j->...i', rot_t, c2w[..., :3, 3])
  top = jnp.concatenate([rot_t, trans[..., None]], axis=-1)
  bottom = jnp.broadcast_to(jnp.array([0.0, 0.0, 0.0, 1.0], c2w.dtype),
                            top.shape[:-2] + (1, 4))
  return jnp.concatenate([top, bottom], axis=-2)


def body_transforms(c2w, reference_c2w):
  """[F, 4, 4] B_t = C_ref C_t^-1: frame head space -> reference head space."""
  return jnp.asarray(reference_c2w, jnp.float32) @ rigid_inverse(
      jnp.asarray(c2w, jnp.float32))


def apply_transform(transform, points):
  """transform [F, 4, 4] applied to points [F, ..., 3]."""
  extra = points.ndim - 2
  rot = transform[:, :3, :3].reshape((-1,) + (1,) * extra + (3, 3))
  trans = transform[:, :3, 3].reshape((-1,) + (1,) * extra + (3,))
  return jnp.einsum('...ij,...j->...i', rot, points) + trans


class TorsoWarp(nn.Module):
  """Warps head-space samples; reference_c2w: C_ref as 16 floats (hashable)."""
  reference_c2w: Sequence[float]
  num_freqs: int = 6
  width: int = 64
  max_offset: float = 0.02

  @nn.compact
  def __call__(self, points, c2w):
    """points [F, R, S, 3], c2w [F, 4, 4] -> (warped, blend [F, R, S], r)."""
    reference = jnp.asarray(self.reference_c2w, jnp.float32).reshape(4, 4)
    body = body_transforms(c2w, reference)
    body_points = apply_transform(body, points)
    # The pose enters as B_t - I (zero at the reference), once per frame.
    pose = (body[:, :3, :] - jnp.eye(3, 4)).reshape(body.shape[0], 1, 1, 12)
    inputs = [encoding.positional_encoding(points, self.num_freqs),
              encoding.positional_encoding(body_points, self.num_freqs),
              pose]
    h = nn.relu(nerf.MultiInputDense(self.width, name='hidden_0')(inputs))
    h = nn.relu(nn.Dense(self.width, name='hidden_1',
                         kernel_init=nerf.torch_kernel_init)(h))
    blend_logit = nn.Dense(
        1, name='blend', kernel_init=nn.initializers.zeros_init(),
        bias_init=nn.initializers.constant(INITIAL_BLEND_LOGIT))(h)[..., 0]
    offset = self.max_offset * jnp.tanh(
        nn.Dense(3, name='offset', kernel_init=nn.initializers.zeros_init())(h))
    blend = jax.nn.sigmoid(blend_logit)
    warped = points + blend[..., None] * (body_points + offset - points)
    return warped, blend, offset


def body_class_mask(class_names: Sequence[str]) -> tuple[bool, ...]:
  """Per class: True if it moves with the body (neck, torso)."""
  return tuple(name in BODY_CLASS_NAMES for name in class_names)
