"""Torso warping: one field holds both the head and the torso.

Rays and samples live in head space (AD-NeRF: the camera moves around a
still head), so the head is canonical already.  The torso is not: it hangs
from the body, which is (nearly) still in the camera frame, so in head space
it moves with the inverse head pose, plus motion of its own.  A point is
warped by blending two rigid "bones" (linear blend skinning):

  head bone:  x -> x
  body bone:  x -> B_t x,  B_t = C_ref C_t^-1
              (C_t: the frame's camera-to-head pose, C_ref: a fixed
              reference pose, the mean training pose).  B_t maps frame t's
              head space to head space at the reference pose, where a point
              still in the camera frame always lands on the same spot.

  x' = x + b(x) * (B_t x + r(x, t) - x)

with a learned per-point blend b in [0, 1] and a small residual offset r
(|r_i| < max_offset, tanh) for what the two rigid bones miss (neck bending,
breathing); r depends on the point and on the frame's relative pose.  Both
come from one small MLP on [PE(x), PE(B_t x), pose(B_t)]: PE(x) recognises
head points (still in head space), PE(B_t x) body points (still in the
reference frame).

Why the head stays rigid:
  * b starts near 0 everywhere (output bias -4.6: b = 0.01), so training
    starts from the unwarped field;
  * the parsing supervises b (see `losses.warp_losses`): along rays whose
    ground-truth class is a head class the expected blend sum_i w_i b_i is
    pulled to 0, along neck/torso rays to 1 (w_i held fixed: the blend must
    not reshape the geometry to satisfy this);
  * at the reference pose B_t = I and the warp is the identity whatever b
    (with zero residual): the field is the head space of that pose.
The residual is kept small by an L2 penalty (config.train.warp_offset_weight).
"""
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssp_nerf_jax.models import encoding
from ssp_nerf_jax.models import nerf

# Initial blend logit: sigmoid(-4.6) = 0.01.
INITIAL_BLEND_LOGIT = -4.6
# Class names that move with the body (in both parsing schemes).
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
  """B_t = C_ref C_t^-1: frame head space -> reference head space.

  Args:
    c2w: [F, 4, 4] camera-to-head poses C_t.
    reference_c2w: [4, 4] reference pose C_ref.
  Returns:
    [F, 4, 4] rigid transforms (identity where C_t == C_ref).
  """
  return jnp.asarray(reference_c2w, jnp.float32) @ rigid_inverse(
      jnp.asarray(c2w, jnp.float32))


def apply_transform(transform, points):
  """transform [F, 4, 4] applied to points [F, ..., 3]."""
  extra = points.ndim - 2
  rot = transform[:, :3, :3].reshape((-1,) + (1,) * extra + (3, 3))
  trans = transform[:, :3, 3].reshape((-1,) + (1,) * extra + (3,))
  return jnp.einsum('...ij,...j->...i', rot, points) + trans


class TorsoWarp(nn.Module):
  """Warps head-space samples into the one canonical space (see module doc).

  Attributes:
    reference_c2w: C_ref as 16 floats (row-major 4x4), hashable so that the
      model stays a static jit argument.
    num_freqs: octaves of the positional encodings.
    width: hidden width of the 2-layer MLP.
    max_offset: bound of each residual component (head-space units).
  """
  reference_c2w: Sequence[float]
  num_freqs: int = 6
  width: int = 64
  max_offset: float = 0.02

  @nn.compact
  def __call__(self, points, c2w):
    """Warps points.

    Args:
      points: [F, R, S, 3] head-space samples of frame f.
      c2w: [F, 4, 4] the frames' camera-to-head poses.
    Returns:
      (warped [F, R, S, 3], blend [F, R, S] in [0, 1],
       offset [F, R, S, 3] residual r).
    """
    reference = jnp.asarray(self.reference_c2w, jnp.float32).reshape(4, 4)
    body = body_transforms(c2w, reference)  # [F, 4, 4]
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
