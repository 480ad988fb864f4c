"""NeRF positional encoding (AD-NeRF's `Embedder`)."""
import jax.numpy as jnp


def encoded_dim(num_freqs: int, in_dim: int = 3) -> int:
  """Width of `positional_encoding` output: in_dim * (1 + 2 * num_freqs)."""
  return in_dim * (1 + 2 * num_freqs)


def positional_encoding(x, num_freqs: int):
  """[x, sin(2^0 x), cos(2^0 x), ..., sin(2^(L-1) x), cos(2^(L-1) x)].

  The ordering (input first, then per frequency a sin block and a cos block
  of in_dim each) matches AD-NeRF, so first-layer weights line up with it.
  Computed in float32 whatever the model dtype: sin of large arguments is
  meaningless in bfloat16.

  Args:
    x: [..., D] inputs.
    num_freqs: L, number of octaves (10 -> 63 dims for D=3, 4 -> 27).

  Returns:
    [..., D * (1 + 2 L)] float32 encoding.
  """
  x = jnp.asarray(x, jnp.float32)
  if num_freqs == 0:
    return x
  freqs = 2.0**jnp.arange(num_freqs, dtype=jnp.float32)  # [L]
  scaled = x[..., None, :] * freqs[:, None]  # [..., L, D]
  # [..., L, 2, D] -> [..., 2 L D]: per octave the sin block then the cos block.
  trig = jnp.stack([jnp.sin(scaled), jnp.cos(scaled)], axis=-2)
  trig = trig.reshape(x.shape[:-1] + (2 * num_freqs * x.shape[-1],))
  return jnp.concatenate([x, trig], axis=-1)
