"""Samples along rays and volume rendering, as in AD-NeRF.

All functions work on arbitrary leading (ray) dims [...] and S samples per
ray, in float32.  A sample distance `z` is a camera depth: the point is
`origin + z * direction` with AD-NeRF's un-normalised directions, which is
why interval lengths are multiplied by |direction|.

Background handling (AD-NeRF's `raw2outputs`): the last sample of every ray
sits exactly on the far plane, its interval is 1e10 long, and its colour is
replaced by the background-plate pixel.  That last sample therefore absorbs
whatever transmittance is left, which is the same as

  C = sum_{i<S-1} w_i c_i + (1 - acc) * bg,   acc = sum_{i<S-1} w_i,

so `volume_render` returns the foreground colour and opacity of the first
S-1 samples and `composite` adds the plate.  The network's own prediction at
the far sample is never used (AD-NeRF computes and discards it too).  Pass
`background_at_far=False` for the plain NeRF rule, where the far sample is
an ordinary (1e10-long) sample of the field.
"""
import jax
import jax.numpy as jnp

# Length of the last interval: "to infinity" (AD-NeRF, original NeRF).
FAR_DELTA = 1e10


def stratified_samples(key, near, far, num_samples: int, pin_far: bool = True):
  """Samples uniform in depth between near and far, one per bin.

  With `key` the samples are jittered inside the bins whose edges are the
  midpoints of `linspace(near, far, num_samples)` (first and last bins are
  half-width, AD-NeRF); without it they are the linspace itself.

  Args:
    key: PRNG key, or None for deterministic samples (eval).
    near: [...] near depth per ray.
    far: [...] far depth per ray (same shape as `near`).
    num_samples: S, samples per ray.
    pin_far: keep the last sample exactly at `far` even when jittering
      (AD-NeRF sets its jitter to 1): the far sample is the background.

  Returns:
    [..., S] sorted float32 depths.
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
  """searchsorted(cdf, u, side='right') along the last axis.

  A broadcast compare instead of a binary search: it vectorises over rays
  and runs well on GPU/TPU for the small bin counts used here.

  Args:
    cdf: [..., B+1] non-decreasing.
    u: [..., N] queries.

  Returns:
    [..., N] int32 count of cdf entries <= u.
  """
  return jnp.sum(cdf[..., None, :] <= u[..., :, None], axis=-1, dtype=jnp.int32)


def sample_pdf(key, bins, weights, num_samples: int):
  """Inverse-CDF samples from a piecewise-constant pdf (AD-NeRF sample_pdf).

  Bin j spans [bins[j], bins[j+1]] and has probability proportional to
  weights[j] + 1e-5 (the floor keeps rays with all-zero weights valid).
  Gradients are stopped: resampling is not differentiated.

  Args:
    key: PRNG key for uniform u, or None for evenly spaced u = linspace(0, 1)
      (deterministic eval).
    bins: [..., B+1] increasing bin edges.
    weights: [..., B] non-negative bin weights.
    num_samples: N, samples per ray.

  Returns:
    [..., N] float32 samples (unsorted when `key` is given).
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
  # Empty bins (or u past the end) would divide by ~0; AD-NeRF uses 1.
  denom = jnp.where(denom < 1e-5, 1.0, denom)
  t = (u - cdf_lo) / denom
  return jax.lax.stop_gradient(bins_lo + t * (bins_hi - bins_lo))


def hierarchical_samples(key, z, weights, num_samples: int):
  """The fine pass's new depths, drawn from the coarse weights.

  The pdf lives on the bins between midpoints of consecutive coarse samples
  and uses the coarse weights of the interior samples, weights[..., 1:-1]
  (AD-NeRF).

  Args:
    key: PRNG key, or None for deterministic samples.
    z: [..., S] sorted coarse depths.
    weights: [..., S] coarse weights.
    num_samples: N, extra samples per ray.

  Returns:
    [..., N] depths (unsorted when `key` is given), gradient stopped.
  """
  mids = 0.5 * (z[..., 1:] + z[..., :-1])
  return sample_pdf(key, mids, weights[..., 1:-1], num_samples)


def merge_order(z, z_new):
  """Indices that sort concat([z, z_new], -1): [..., S + N] int.

  Lets the fine pass reuse whatever was computed per coarse sample (the
  warped points) by gathering it in depth order with the new samples'.
  """
  return jnp.argsort(jnp.concatenate([z, z_new], axis=-1), axis=-1)


def importance_samples(key, z, weights, num_samples: int):
  """Coarse samples plus hierarchical samples, sorted (AD-NeRF fine pass).

  Args:
    key, z, weights, num_samples: see `hierarchical_samples`.

  Returns:
    [..., S + N] sorted depths, gradient stopped.
  """
  z_new = hierarchical_samples(key, z, weights, num_samples)
  z_all = jnp.sort(jnp.concatenate([z, z_new], axis=-1), axis=-1)
  return jax.lax.stop_gradient(z_all)


def compute_alpha_weights(raw_sigma, z, directions, background_at_far=True):
  """Per-sample opacity and compositing weights.

  Args:
    raw_sigma: [..., S] density before the ReLU.
    z: [..., S] sorted depths.
    directions: [..., 3] un-normalised ray directions.
    background_at_far: the far sample is the opaque background.

  Returns:
    alpha [..., S] and weights [..., S] = alpha_i * prod_{j<i} (1 - alpha_j).
  """
  deltas = z[..., 1:] - z[..., :-1]
  deltas = jnp.concatenate(
      [deltas, jnp.full_like(deltas[..., :1], FAR_DELTA)], axis=-1)
  # Depth differences -> distances along the (non-unit) ray.
  deltas = deltas * jnp.linalg.norm(directions, axis=-1, keepdims=True)
  sigma = jax.nn.relu(raw_sigma)
  tau = sigma * deltas
  alpha = 1.0 - jnp.exp(-tau)
  if background_at_far:
    # The background is opaque whatever the field predicts there.
    alpha = alpha.at[..., -1].set(1.0)
  # Exclusive cumulative optical depth; only the first S-1 taus enter it, so
  # the huge last interval never overflows here.
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
  """Volume-renders colour, depth, opacity and the semantic distribution.

  Args:
    rgb: [..., S, 3] per-sample colour in [0, 1].
    raw_sigma: [..., S] per-sample density before the ReLU.
    z: [..., S] sorted sample depths.
    directions: [..., 3] un-normalised ray directions.
    logits: optional [..., S, K] per-sample semantic logits.
    background_at_far: AD-NeRF's rule (module docstring): the far sample is
      the background; False renders it as an ordinary sample.
    background_class: class id that receives the background mass.
    sigma_noise_std: std of Gaussian noise added to raw_sigma before the
      ReLU (NeRF's raw_noise_std); used only when `key` is given.
    key: PRNG key for the noise, or None.

  Returns:
    Dict with
      rgb: [..., 3] foreground colour, NOT composited (see `composite`).
      acc: [...] accumulated foreground opacity.
      depth: [...] expected depth sum_i w_i z_i; with background_at_far the
        background counts at the far depth.
      weights: [..., S] sample weights; with background_at_far the last entry
        is the background's weight, the remaining transmittance 1 - acc.
      semantics (if logits given): [..., K] class distribution
        sum_i w_i softmax(logits_i) + (1 - acc) * onehot(background_class),
        which sums to one.
  """
  rgb = rgb.astype(jnp.float32)
  raw_sigma = raw_sigma.astype(jnp.float32)
  if key is not None and sigma_noise_std > 0:
    raw_sigma = raw_sigma + sigma_noise_std * jax.random.normal(
        key, raw_sigma.shape, jnp.float32)
  _, weights = compute_alpha_weights(raw_sigma, z, directions,
                                     background_at_far)
  # Foreground samples: all but the background sample at far.
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
  """Composites a rendered colour over the background plate.

  Args:
    rgb: [..., 3] foreground colour from `volume_render`.
    acc: [...] accumulated opacity.
    background: [..., 3] background-plate pixel colour.

  Returns:
    [..., 3] rgb + (1 - acc) * background.
  """
  return rgb + (1.0 - acc)[..., None] * background
