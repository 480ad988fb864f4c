"""Audio encoders from AD-NeRF: per-frame AudioNet and temporal AudioAttNet.

Both run in float32 whatever the NeRF's compute dtype: they are tiny (one
evaluation per frame, not per sample) and their output conditions every
sample of the frame.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from ssp_nerf_jax.models import nerf

LEAKY_SLOPE = 0.02


def _leaky_relu(x):
  return nn.leaky_relu(x, negative_slope=LEAKY_SLOPE)


def _conv(features: int, stride: int, name: str):
  """1-D conv, kernel 3, padding 1, torch-style kernel initialisation."""
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
  """Window of audio features -> audio code (AD-NeRF AudioNet).

  Four stride-2 convolutions over time (16 -> 8 -> 4 -> 2 -> 1 steps,
  channels C -> 32 -> 32 -> 64 -> 64), then dense 64 -> LeakyReLU -> dense
  code_dim.  LeakyReLU slope 0.02 after every conv and the first dense.

  Attributes:
    code_dim: output width (config.model.audio_code_dim).
  """
  code_dim: int = 64

  @nn.compact
  def __call__(self, windows):
    """Encodes feature windows.

    Args:
      windows: [..., T=16, C] feature windows (time, channels).

    Returns:
      [..., code_dim] codes.
    """
    batch_shape = windows.shape[:-2]
    h = windows.reshape((-1,) + windows.shape[-2:]).astype(jnp.float32)
    for i, ch in enumerate((32, 32, 64, 64)):
      h = _leaky_relu(_conv(ch, 2, f'conv_{i}')(h))
    # Time has collapsed to one step for T = 16; flattening keeps other T
    # working as AD-NeRF's squeeze would require T = 16.
    h = h.reshape(h.shape[0], -1)
    h = _leaky_relu(_dense(64, 'fc_0')(h))
    h = _dense(self.code_dim, 'fc_1')(h)
    return h.reshape(batch_shape + (self.code_dim,))


class AudioAttNet(nn.Module):
  """Attention-weighted sum of neighbouring frames' codes (AD-NeRF).

  Five kernel-3 convolutions over the window axis (channels code_dim -> 16
  -> 8 -> 4 -> 2 -> 1, each followed by LeakyReLU 0.02) give one score per
  frame, a dense layer mixes the scores across the window, and a softmax
  turns them into weights.  The weights are sown into the 'intermediates'
  collection as 'attention' ([..., N]).
  """

  @nn.compact
  def __call__(self, codes):
    """Smooths codes over a window of frames.

    Args:
      codes: [..., N=8, A] codes of N neighbouring frames.

    Returns:
      [..., A] smoothed code sum_n w_n codes_n.
    """
    batch_shape = codes.shape[:-2]
    n = codes.shape[-2]
    y = codes.reshape((-1,) + codes.shape[-2:]).astype(jnp.float32)
    for i, ch in enumerate((16, 8, 4, 2, 1)):
      y = _leaky_relu(_conv(ch, 1, f'conv_{i}')(y))
    y = _dense(n, 'fc')(y[..., 0])  # [B, N]
    weights = jax.nn.softmax(y, axis=-1).reshape(batch_shape + (n,))
    self.sow('intermediates', 'attention', weights)
    return jnp.sum(weights[..., None] * codes, axis=-2)
