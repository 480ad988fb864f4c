"""The mouth opening as an input of the field (see `mouth_readout`)."""
import flax.linen as nn
import jax
import jax.numpy as jnp


class MouthReadout(nn.Module):
  """Mouth opening from audio: `mouth_readout.fit_readout`'s ridge read-out
  and quantile map; parameters written once after `init`, gradient stopped."""
  knots: int = 0

  @nn.compact
  def __call__(self, audio):
    """audio [F, A, T, C] -> [F] float32; knots 0: clipped to [0, 1]."""
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
  """Mouth weight of points: a Gaussian around a fitted, frozen centre."""

  @nn.compact
  def __call__(self, points):
    """[..., 3] head-space points -> [...] exp(-|x - c|^2 / (2 r^2))."""
    centre, radius = jax.lax.stop_gradient((
        self.param('centre', nn.initializers.zeros, (3,)),
        self.param('radius', nn.initializers.ones, ())))
    squared = jnp.sum((points.astype(jnp.float32) - centre)**2, axis=-1)
    return jnp.exp(-0.5 * squared / radius**2)


def encode_opening(opening, num_freqs: int):
  """[F] -> [F, 1 + 2 L]: opening, sin and cos of pi 2^k opening (k < L)."""
  scaled = opening[:, None] * (jnp.pi * 2.0**jnp.arange(num_freqs))
  return jnp.concatenate([opening[:, None], jnp.sin(scaled),
                          jnp.cos(scaled)], axis=-1)
