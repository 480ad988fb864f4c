"""NeRF positional encoding (AD-NeRF's `Embedder`)."""
import jax.numpy as jnp


def encoded_dim(num_freqs: int, in_dim: int = 3) -> int:
  """Width of `positional_encoding` output: in_dim * (1 + 2 * num_freqs)."""
  return in_dim * (1 + 2 * num_freqs)


def positional_encoding(x, num_freqs: int):
  """[..., D] -> [..., D (1 + 2 L)]: x, then per octave a sin and a cos block
  (AD-NeRF's order); float32, as bfloat16 sin of large arguments is noise."""
  x = jnp.asarray(x, jnp.float32)
  if num_freqs == 0:
    return x
  freqs = 2.0**jnp.arange(num_freqs, dtype=jnp.float32)
  scaled = x[..., None, :] * freqs[:, None]  # [..., L, D]
  trig = jnp.stack([jnp.sin(scaled), jnp.cos(scaled)], axis=-2)
  trig = trig.reshape(x.shape[:-1] + (2 * num_freqs * x.shape[-1],))
  return jnp.concatenate([x, trig], axis=-1)
