"""The mouth opening and eye openness as inputs of the field (see
`mouth_readout`), and the regions where they act."""
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


def frozen(module: nn.Module, shapes: dict) -> tuple:
  """`module`'s parameters {name: (shape, init)}, gradient stopped: fitted
  once after `init`, never trained."""
  return jax.lax.stop_gradient(tuple(
      module.param(name, init, shape) for name, (shape, init)
      in shapes.items()))


def scaled_distance(points, centre, radius):
  """[...] |x - c|^2 / r^2 of points [..., 3], centre [3], radius []."""
  squared = jnp.sum((points.astype(jnp.float32) - centre)**2, axis=-1)
  return squared / radius**2


BALL = {'centre': ((3,), nn.initializers.zeros),
        'radius': ((), nn.initializers.ones)}


class MouthRegion(nn.Module):
  """Mouth weight of points: a Gaussian around a fitted, frozen centre."""

  @nn.compact
  def __call__(self, points):
    """[..., 3] head-space points -> [...] exp(-|x - c|^2 / (2 r^2))."""
    return jnp.exp(-0.5 * scaled_distance(points, *frozen(self, BALL)))


class EyeRegion(nn.Module):
  """Eye weight of points and the eye openness scale, fitted and frozen.

  The weight (1 - |x - c|^2 / r^2)^2 is exactly 0 beyond the radius, so the
  eye input leaves the field elsewhere bit-identical; 'closed' and 'open'
  (the train split's levels) map openness onto about [0, 1].
  """

  def setup(self):
    self.ball = frozen(self, BALL)
    self.levels = frozen(self, {'closed': ((), nn.initializers.zeros),
                                'open': ((), nn.initializers.ones)})

  def __call__(self, points):
    """[..., 3] head-space points -> [...] weight in [0, 1]."""
    return jnp.square(jax.nn.relu(1.0 - scaled_distance(points, *self.ball)))

  def normalised(self, openness):
    """[F] openness -> [F] (openness - closed) / (open - closed)."""
    closed, opened = self.levels
    return (openness - closed) / jnp.maximum(opened - closed, 1e-6)


def encode_opening(opening, num_freqs: int):
  """[F] -> [F, 1 + 2 L]: opening, sin and cos of pi 2^k opening (k < L)."""
  scaled = opening[:, None] * (jnp.pi * 2.0**jnp.arange(num_freqs))
  return jnp.concatenate([opening[:, None], jnp.sin(scaled),
                          jnp.cos(scaled)], axis=-1)
