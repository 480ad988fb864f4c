"""AD-NeRF's audio encoders AudioNet and AudioAttNet, in float32 (per frame)."""
import flax.linen as nn
import jax
import jax.numpy as jnp

from ssp_nerf_jax.models import nerf

LEAKY_SLOPE = 0.02


def _leaky_relu(x):
  return nn.leaky_relu(x, negative_slope=LEAKY_SLOPE)


def _conv(features: int, stride: int, name: str):
  """1-D conv, kernel 3, padding 1, torch-style kernel init."""
  return nn.Conv(
      features,
      kernel_size=(3,),
      strides=(stride,),
      padding=((1, 1),),
      kernel_init=nerf.torch_kernel_init,
      name=name)


def _dense(features: int, name: str):
  return nn.Dense(
      features,
      kernel_init=nerf.torch_kernel_init,
      name=name)


class AudioNet(nn.Module):
  """AD-NeRF AudioNet: feature windows [..., 16, C] -> codes [..., code_dim]."""
  code_dim: int = 64

  @nn.compact
  def __call__(self, windows):
    """[..., T, C] -> [..., code_dim]."""
    batch_shape = windows.shape[:-2]
    h = windows.reshape((-1,) + windows.shape[-2:]).astype(jnp.float32)
    for i, ch in enumerate((32, 32, 64, 64)):
      h = _leaky_relu(_conv(ch, 2, f'conv_{i}')(h))
    # Flatten, not squeeze: T other than 16 keeps working.
    h = h.reshape(h.shape[0], -1)
    h = _leaky_relu(_dense(64, 'fc_0')(h))
    h = _dense(self.code_dim, 'fc_1')(h)
    return h.reshape(batch_shape + (self.code_dim,))


class AudioAttNet(nn.Module):
  """Attention-weighted sum of neighbouring frames' codes (AD-NeRF); the
  weights [..., N] are sown into 'intermediates' as 'attention'."""

  @nn.compact
  def __call__(self, codes):
    """[..., N=8, A] codes -> [..., A] sum_n w_n codes_n."""
    batch_shape = codes.shape[:-2]
    n = codes.shape[-2]
    y = codes.reshape((-1,) + codes.shape[-2:]).astype(jnp.float32)
    for i, ch in enumerate((16, 8, 4, 2, 1)):
      y = _leaky_relu(_conv(ch, 1, f'conv_{i}')(y))
    y = _dense(n, 'fc')(y[..., 0])  # [B, N]
    weights = jax.nn.softmax(y, axis=-1).reshape(batch_shape + (n,))
    self.sow('intermediates', 'attention', weights)
    return jnp.sum(weights[..., None] * codes, axis=-2)
