"""Small rigid corrections of camera poses, differentiable (jax.numpy).

A correction is a 6-vector (rotation vector [3] in radians, translation [3]
in head units) applied in head coordinates: c2w' = T(delta) c2w, a turn of
the camera about the head's origin.  The fitted poses' errors are turns of
the head about itself, so one delta component fixes each.
"""
import jax.numpy as jnp

# Below this angle (radians) Rodrigues' coefficients use their Taylor series:
# the exact ones divide by the angle and have no gradient at zero.
_SMALL_ANGLE = 1e-4


def rotation_matrix(rotvec):
  """Rotation matrices [..., 3, 3] of rotation vectors [..., 3] (Rodrigues)."""
  squared = jnp.sum(rotvec**2, axis=-1)[..., None, None]
  small = squared < _SMALL_ANGLE**2
  safe_squared = jnp.where(small, 1.0, squared)
  angle = jnp.sqrt(safe_squared)
  sin_term = jnp.where(small, 1.0 - squared / 6.0, jnp.sin(angle) / angle)
  cos_term = jnp.where(small, 0.5 - squared / 24.0,
                       (1.0 - jnp.cos(angle)) / safe_squared)
  x, y, z = rotvec[..., 0], rotvec[..., 1], rotvec[..., 2]
  zero = jnp.zeros_like(x)
  skew = jnp.stack([jnp.stack([zero, -z, y], -1),
                    jnp.stack([z, zero, -x], -1),
                    jnp.stack([-y, x, zero], -1)], -2)
  eye = jnp.eye(3, dtype=rotvec.dtype)
  return eye + sin_term * skew + cos_term * (skew @ skew)


def correction_matrix(delta):
  """[..., 4, 4] rigid transforms of corrections delta [..., 6]."""
  rot = rotation_matrix(delta[..., :3])
  top = jnp.concatenate([rot, delta[..., 3:, None]], axis=-1)
  bottom = jnp.broadcast_to(jnp.array([0.0, 0.0, 0.0, 1.0], delta.dtype),
                            (*delta.shape[:-1], 1, 4))
  return jnp.concatenate([top, bottom], axis=-2)


def apply_correction(c2w, delta):
  """c2w [..., 4, 4] corrected by delta [..., 6]: T(delta) @ c2w."""
  return correction_matrix(delta.astype(jnp.float32)) @ c2w.astype(
      jnp.float32)
