"""The mouth opening as an input of the field (config.model.mouth_condition).

See `ssp_nerf_jax.models.mouth_readout` for why: one number per frame that the
field cannot average away, measured on training frames and predicted from
the audio everywhere else.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp


class MouthReadout(nn.Module):
  """Predicted mouth opening of each frame from its audio feature window.

  A fixed linear read-out, `mouth_readout.fit_readout`'s ridge regression, then its
  monotone map onto the measured openings' distribution, stored as
  parameters so that checkpoints carry them; their values are written once
  after `init` and the optimizer never changes them (their gradient is
  stopped, so Adam's update is exactly zero).

  Attributes:
    knots: points of the map (`mouth_readout.quantile_map`); 0: none.
  """
  knots: int = 0

  @nn.compact
  def __call__(self, audio):
    """Predicts the opening.

    Args:
      audio: [F, A, T, C] context windows (the frame's own at A // 2).

    Returns:
      [F] float32 predicted opening in the measured openings' range (with
      knots), or clipped to [0, 1], where measured openings lie by
      definition (the widest of a clip is 1).
    """
    window = audio[:, audio.shape[1] // 2]
    x = window.reshape(window.shape[0], -1).astype(jnp.float32)
    dim = x.shape[-1]
    mean, scale, weights, offset = jax.lax.stop_gradient((
        self.param('mean', nn.initializers.zeros, (dim,)),
        self.param('scale', nn.initializers.ones, (dim,)),
        self.param('weights', nn.initializers.zeros, (dim,)),
        self.param('offset', nn.initializers.zeros, ())))
    predicted = ((x - mean) / scale) @ weights + offset
    if not self.knots:
      return jnp.clip(predicted, 0.0, 1.0)
    map_in, map_out = jax.lax.stop_gradient((
        self.param('map_in', nn.initializers.zeros, (self.knots,)),
        self.param('map_out', nn.initializers.zeros, (self.knots,))))
    return jnp.interp(predicted, map_in, map_out)


class MouthRegion(nn.Module):
  """How much each point belongs to the mouth: a Gaussian of its distance
  to the mouth's centre (`ssp_nerf_jax.models.mouth_region`).

  The centre and radius are parameters so that checkpoints carry them;
  `mouth_region.fit_mouth_region` writes them once after `init` and their gradient is
  stopped, so the optimizer never changes them.
  """

  @nn.compact
  def __call__(self, points):
    """The weight of points.

    Args:
      points: [..., 3] head-space points.

    Returns:
      [...] float32 exp(-|x - centre|^2 / (2 radius^2)), 1 at the centre.
    """
    centre, radius = jax.lax.stop_gradient((
        self.param('centre', nn.initializers.zeros, (3,)),
        self.param('radius', nn.initializers.ones, ())))
    squared = jnp.sum((points.astype(jnp.float32) - centre)**2, axis=-1)
    return jnp.exp(-0.5 * squared / radius**2)


def encode_opening(opening, num_freqs: int):
  """Sinusoidal encoding of the opening, so that the MLP can turn a small
  change of it into a sharp change of the lips.

  Args:
    opening: [F] mouth openings (about [0, 1]).
    num_freqs: L frequencies pi * 2^k, k < L.

  Returns:
    [F, 1 + 2 L]: the opening, its sines, its cosines.
  """
  scaled = opening[:, None] * (jnp.pi * 2.0**jnp.arange(num_freqs))
  return jnp.concatenate([opening[:, None], jnp.sin(scaled),
                          jnp.cos(scaled)], axis=-1)
