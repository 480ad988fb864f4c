"""Samples along rays and volume rendering, AD-NeRF's rules, float32 [..., S].

Depths z are camera depths (un-normalised directions), so intervals scale by
|direction|.  The far sample is the plate: C = sum_{i<S-1} w_i c_i + (1-acc) bg.
"""
import jax
import jax.numpy as jnp

FAR_DELTA = 1e10


def stratified_samples(key, near, far, num_samples: int, pin_far: bool = True):
  """[...] near, far -> [..., S] sorted depths, jittered in bins if `key`.

  pin_far keeps the last sample exactly at `far`: it is the background.
  """
  near = jnp.asarray(near, jnp.float32)[..., None]
  far = jnp.asarray(far, jnp.float32)[..., None]
  t = jnp.linspace(0.0, 1.0, num_samples, dtype=jnp.float32)
  z = near * (1.0 - t) + far * t
  if key is None:
    return z
  mids = 0.5 * (z[..., 1:] + z[..., :-1])
  upper = jnp.concatenate([mids, z[..., -1:]], axis=-1)
  lower = jnp.concatenate([z[..., :1], mids], axis=-1)
  u = jax.random.uniform(key, z.shape, jnp.float32)
  if pin_far:
    u = u.at[..., -1].set(1.0)
  return lower + (upper - lower) * u


def _sorted_lookup_right(cdf, u):
  """searchsorted(cdf, u, 'right') as a broadcast compare (fast on GPU/TPU)."""
  return jnp.sum(cdf[..., None, :] <= u[..., :, None], axis=-1, dtype=jnp.int32)


def sample_pdf(key, bins, weights, num_samples: int):
  """[..., N] inverse-CDF samples of weights [..., B] + 1e-5 on bins [..., B+1].

  Gradient stopped; `key` None gives evenly spaced u (eval).
  """
  bins = jax.lax.stop_gradient(bins)
  weights = jax.lax.stop_gradient(weights) + 1e-5
  pdf = weights / jnp.sum(weights, axis=-1, keepdims=True)
  cdf = jnp.concatenate(
      [jnp.zeros_like(pdf[..., :1]), jnp.cumsum(pdf, axis=-1)], axis=-1)
  batch_shape = cdf.shape[:-1]
  if key is None:
    u = jnp.broadcast_to(
        jnp.linspace(0.0, 1.0, num_samples, dtype=jnp.float32),
        batch_shape + (num_samples,))
  else:
    u = jax.random.uniform(key, batch_shape + (num_samples,), jnp.float32)
  idx = _sorted_lookup_right(cdf, u)
  below = jnp.maximum(idx - 1, 0)
  above = jnp.minimum(idx, cdf.shape[-1] - 1)
  cdf_lo = jnp.take_along_axis(cdf, below, axis=-1)
  cdf_hi = jnp.take_along_axis(cdf, above, axis=-1)
  bins_lo = jnp.take_along_axis(bins, below, axis=-1)
  bins_hi = jnp.take_along_axis(bins, above, axis=-1)
  denom = cdf_hi - cdf_lo
  # Empty bins (or u past the end) would divide by ~0.
  denom = jnp.where(denom < 1e-5, 1.0, denom)
  t = (u - cdf_lo) / denom
  return jax.lax.stop_gradient(bins_lo + t * (bins_hi - bins_lo))


def hierarchical_samples(key, z, weights, num_samples: int):
  """[..., N] fine depths drawn from coarse z, weights [..., S] (unsorted)."""
  mids = 0.5 * (z[..., 1:] + z[..., :-1])
  return sample_pdf(key, mids, weights[..., 1:-1], num_samples)


def merge_order(z, z_new):
  """Indices [..., S + N] that sort concat([z, z_new], -1)."""
  return jnp.argsort(jnp.concatenate([z, z_new], axis=-1), axis=-1)


def importance_samples(key, z, weights, num_samples: int):
  """[..., S + N] sorted coarse plus hierarchical depths, gradient stopped."""
  z_new = hierarchical_samples(key, z, weights, num_samples)
  z_all = jnp.sort(jnp.concatenate([z, z_new], axis=-1), axis=-1)
  return jax.lax.stop_gradient(z_all)


def compute_alpha_weights(raw_sigma, z, directions, background_at_far=True):
  """alpha, weights [..., S]; w_i = alpha_i * prod_{j<i} (1 - alpha_j)."""
  deltas = z[..., 1:] - z[..., :-1]
  deltas = jnp.concatenate(
      [deltas, jnp.full_like(deltas[..., :1], FAR_DELTA)], axis=-1)
  deltas = deltas * jnp.linalg.norm(directions, axis=-1, keepdims=True)
  sigma = jax.nn.relu(raw_sigma)
  tau = sigma * deltas
  alpha = 1.0 - jnp.exp(-tau)
  if background_at_far:
    alpha = alpha.at[..., -1].set(1.0)
  # Exclusive cumsum: the huge last interval never enters, so no overflow.
  optical_depth = jnp.concatenate(
      [jnp.zeros_like(tau[..., :1]), jnp.cumsum(tau[..., :-1], axis=-1)],
      axis=-1)
  transmittance = jnp.exp(-optical_depth)
  return alpha, alpha * transmittance


def volume_render(rgb,
                  raw_sigma,
                  z,
                  directions,
                  logits=None,
                  *,
                  background_at_far: bool = True,
                  background_class: int = 0,
                  sigma_noise_std: float = 0.0,
                  key=None):
  """Renders rgb [..., 3] (not composited), acc, depth [...], weights [..., S].

  logits [..., S, K] add 'semantics' [..., K], the background mass going to
  `background_class`; sigma_noise_std (NeRF's raw_noise_std) needs `key`.
  """
  rgb = rgb.astype(jnp.float32)
  raw_sigma = raw_sigma.astype(jnp.float32)
  if key is not None and sigma_noise_std > 0:
    raw_sigma = raw_sigma + sigma_noise_std * jax.random.normal(
        key, raw_sigma.shape, jnp.float32)
  _, weights = compute_alpha_weights(raw_sigma, z, directions,
                                     background_at_far)
  n_fg = z.shape[-1] - 1 if background_at_far else z.shape[-1]
  w_fg = weights[..., :n_fg]
  acc = jnp.sum(w_fg, axis=-1)
  out = {
      'rgb': jnp.sum(w_fg[..., None] * rgb[..., :n_fg, :], axis=-2),
      'acc': acc,
      'depth': jnp.sum(weights * z, axis=-1),
      'weights': weights,
  }
  if logits is not None:
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    fg = jnp.sum(w_fg[..., None] * probs[..., :n_fg, :], axis=-2)
    bg = jax.nn.one_hot(background_class, probs.shape[-1], dtype=jnp.float32)
    out['semantics'] = fg + (1.0 - acc)[..., None] * bg
  return out


def composite(rgb, acc, background):
  """[..., 3] rgb + (1 - acc) * background."""
  return rgb + (1.0 - acc)[..., None] * background
