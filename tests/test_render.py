"""Sampling along rays and volume rendering against slow, obvious references."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssp_nerf_jax.rendering import volume_rendering

# Jitted once per shape: one XLA compile instead of one per eager op.
volume_render = jax.jit(
    volume_rendering.volume_render,
    static_argnames=('background_at_far', 'background_class',
                     'sigma_noise_std'))
stratified_samples = jax.jit(volume_rendering.stratified_samples,
                             static_argnames=('num_samples', 'pin_far'))
sample_pdf = jax.jit(volume_rendering.sample_pdf, static_argnames=('num_samples',))
importance_samples = jax.jit(volume_rendering.importance_samples,
                             static_argnames=('num_samples',))


def reference_render(rgb, raw_sigma, z, direction, logits, background_at_far):
  """One ray, sample by sample, in float64."""
  num = len(z)
  norm = np.linalg.norm(direction)
  transmittance, weights = 1.0, []
  for i in range(num):
    delta = (z[i + 1] - z[i] if i < num - 1 else 1e10) * norm
    alpha = 1.0 - np.exp(-max(raw_sigma[i], 0.0) * delta)
    if background_at_far and i == num - 1:
      alpha = 1.0
    weights.append(transmittance * alpha)
    transmittance *= 1.0 - alpha
  n_fg = num - 1 if background_at_far else num
  acc = sum(weights[:n_fg])
  colour = sum(weights[i] * rgb[i] for i in range(n_fg))
  depth = sum(weights[i] * z[i] for i in range(num))
  semantics = np.zeros(logits.shape[-1])
  for i in range(n_fg):
    p = np.exp(logits[i] - logits[i].max())
    semantics += weights[i] * p / p.sum()
  semantics[0] += 1.0 - acc
  return dict(rgb=colour, acc=acc, depth=depth, weights=np.array(weights),
              semantics=semantics)


def random_samples(seed, batch=(2, 3), num=6, classes=4):
  rng = np.random.default_rng(seed)
  z = np.sort(rng.uniform(0.5, 1.5, batch + (num,)), axis=-1)
  return dict(
      rgb=rng.uniform(size=batch + (num, 3)),
      raw_sigma=rng.normal(scale=4.0, size=batch + (num,)),  # some < 0
      z=z,
      directions=rng.normal(size=batch + (3,)),
      logits=rng.normal(scale=2.0, size=batch + (num, classes)))


@pytest.mark.parametrize('background_at_far', [True, False])
def test_volume_render_matches_loop_reference(background_at_far):
  s = random_samples(0)
  out = volume_render(
      *(jnp.asarray(s[k], jnp.float32)
        for k in ('rgb', 'raw_sigma', 'z', 'directions', 'logits')),
      background_at_far=background_at_far)
  for idx in np.ndindex(2, 3):
    ref = reference_render(*(s[k][idx] for k in ('rgb', 'raw_sigma', 'z',
                                                 'directions', 'logits')),
                           background_at_far)
    for key, value in ref.items():
      np.testing.assert_allclose(out[key][idx], value, atol=2e-5, err_msg=key)


def test_background_rule_equals_adnerf_raw2outputs():
  """AD-NeRF replaces the far sample's colour by the plate pixel."""
  s = random_samples(1)
  bg = np.random.default_rng(2).uniform(size=(2, 3, 3))
  # AD-NeRF raw2outputs, vectorised numpy, float64.
  dists = np.concatenate(
      [np.diff(s['z'], axis=-1), np.full(s['z'].shape[:-1] + (1,), 1e10)], -1)
  dists = dists * np.linalg.norm(s['directions'], axis=-1, keepdims=True)
  rgb = np.concatenate([s['rgb'][..., :-1, :], bg[..., None, :]], axis=-2)
  alpha = 1.0 - np.exp(-(np.maximum(s['raw_sigma'], 0) + 1e-6) * dists)
  trans = np.cumprod(
      np.concatenate([np.ones_like(alpha[..., :1]), 1.0 - alpha + 1e-10], -1),
      -1)[..., :-1]
  weights = alpha * trans
  expected = np.sum(weights[..., None] * rgb, axis=-2)

  out = volume_render(
      *(jnp.asarray(s[k], jnp.float32)
        for k in ('rgb', 'raw_sigma', 'z', 'directions')))
  got = volume_rendering.composite(out['rgb'], out['acc'], jnp.asarray(bg, jnp.float32))
  np.testing.assert_allclose(got, expected, atol=1e-4)
  np.testing.assert_allclose(out['weights'][..., -1], weights[..., -1],
                             atol=1e-4)


def test_empty_space_shows_background_and_background_class():
  s = random_samples(3)
  out = volume_render(
      jnp.asarray(s['rgb'], jnp.float32),
      -jnp.ones(s['raw_sigma'].shape),  # ReLU -> zero density everywhere
      jnp.asarray(s['z'], jnp.float32),
      jnp.asarray(s['directions'], jnp.float32),
      jnp.asarray(s['logits'], jnp.float32))
  np.testing.assert_allclose(out['acc'], 0.0)
  np.testing.assert_allclose(out['semantics'],
                             np.broadcast_to([1.0, 0, 0, 0], (2, 3, 4)))
  bg = jnp.full((2, 3, 3), 0.25)
  np.testing.assert_allclose(volume_rendering.composite(out['rgb'], out['acc'], bg), bg)


def test_semantics_sum_to_one_with_background_mass():
  s = random_samples(4)
  out = volume_render(
      *(jnp.asarray(s[k], jnp.float32)
        for k in ('rgb', 'raw_sigma', 'z', 'directions', 'logits')))
  np.testing.assert_allclose(out['semantics'].sum(-1), 1.0, atol=1e-5)
  assert np.all(out['semantics'][..., 0] >= 1.0 - out['acc'] - 1e-6)
  assert np.all((out['acc'] >= 0) & (out['acc'] <= 1 + 1e-6))


def test_density_noise_only_with_key():
  s = random_samples(5)
  args = [jnp.asarray(s[k], jnp.float32)
          for k in ('rgb', 'raw_sigma', 'z', 'directions')]
  no_key = volume_render(*args, sigma_noise_std=1.0)['rgb']
  noisy = volume_render(*args, sigma_noise_std=1.0,
                        key=jax.random.PRNGKey(0))['rgb']
  ref = reference_render(*(s[k][0, 0] for k in ('rgb', 'raw_sigma', 'z',
                                                'directions', 'logits')),
                         True)
  np.testing.assert_allclose(no_key[0, 0], ref['rgb'], atol=2e-5)
  assert not np.allclose(no_key, noisy)


def test_stratified_samples_in_bins_and_sorted():
  near = jnp.array([0.5, 1.0, 0.2])
  far = jnp.array([1.5, 1.2, 2.0])
  num = 8
  z = np.asarray(stratified_samples(jax.random.PRNGKey(0), near, far,
                                    num))
  z_det = np.asarray(stratified_samples(None, near, far, num))
  assert z.shape == (3, num)
  for r in range(3):
    grid = np.linspace(near[r], far[r], num)
    np.testing.assert_allclose(z_det[r], grid, atol=1e-6)
    edges = np.concatenate([[grid[0]], (grid[1:] + grid[:-1]) / 2, [grid[-1]]])
    for i in range(num):
      assert edges[i] - 1e-6 <= z[r, i] <= edges[i + 1] + 1e-6
  assert np.all(np.diff(z, axis=-1) >= 0)
  # AD-NeRF pins the last (background) sample to the far plane.
  np.testing.assert_allclose(z[:, -1], far, atol=1e-6)
  free = np.asarray(stratified_samples(jax.random.PRNGKey(0), near,
                                       far, num, pin_far=False))
  assert np.all(free[:, -1] < np.asarray(far))


def test_sample_pdf_follows_pdf():
  bins = jnp.array([0.0, 1.0, 3.0, 4.0, 6.0])
  weights = jnp.array([1.0, 0.0, 3.0, 4.0])
  pdf = np.asarray(weights) / 8.0
  batch = 8
  samples = sample_pdf(jax.random.PRNGKey(0),
                       jnp.broadcast_to(bins, (batch, 5)),
                       jnp.broadcast_to(weights, (batch, 4)), 2500)
  samples = np.asarray(samples).ravel()
  assert samples.min() >= 0.0 and samples.max() <= 6.0
  counts, _ = np.histogram(samples, bins=np.asarray(bins))
  # 20000 draws: binomial std <= 0.0036, so 0.015 is > 4 sigma.
  np.testing.assert_allclose(counts / samples.size, pdf, atol=0.015)
  # Uniform inside a bin: mean of bin [4, 6] near 5.
  in_last = samples[samples > 4.0]
  assert abs(in_last.mean() - 5.0) < 0.05

  det = np.asarray(sample_pdf(None, bins, weights, 400))
  assert np.all(np.diff(det) >= 0)  # evenly spaced u -> sorted quantiles
  counts, _ = np.histogram(det, bins=np.asarray(bins))
  np.testing.assert_allclose(counts / det.size, pdf, atol=0.01)


def test_importance_samples_sorted_superset_without_gradient():
  rng = np.random.default_rng(6)
  z = jnp.asarray(np.sort(rng.uniform(1, 2, (3, 8)), -1), jnp.float32)
  weights = jnp.asarray(rng.uniform(size=(3, 8)), jnp.float32)
  z_all = np.asarray(importance_samples(jax.random.PRNGKey(1), z,
                                        weights, 16))
  assert z_all.shape == (3, 24)
  assert np.all(np.diff(z_all, axis=-1) >= 0)
  for r in range(3):
    assert all(np.any(np.isclose(z_all[r], v)) for v in np.asarray(z[r]))
  # New samples lie between the first and last coarse midpoints.
  assert np.all(z_all >= np.asarray(z[:, :1])) and np.all(
      z_all <= np.asarray(z[:, -1:]))
  grad_w, grad_z = jax.grad(
      lambda w, zz: importance_samples(None, zz, w, 16).sum(),
      argnums=(0, 1))(weights, z)
  np.testing.assert_array_equal(grad_w, 0.0)
  np.testing.assert_array_equal(grad_z, 0.0)


def test_merge_order_sorts_coarse_and_new_samples_together():
  rng = np.random.default_rng(7)
  z = jnp.asarray(np.sort(rng.uniform(1, 2, (3, 8)), -1), jnp.float32)
  weights = jnp.asarray(rng.uniform(size=(3, 8)), jnp.float32)
  key = jax.random.PRNGKey(1)
  z_new = volume_rendering.hierarchical_samples(key, z, weights, 16)
  order = np.asarray(volume_rendering.merge_order(z, z_new))
  merged = np.take_along_axis(np.concatenate([z, z_new], -1), order, -1)
  np.testing.assert_array_equal(merged,
                                importance_samples(key, z, weights, 16))
  # A permutation of the S + N slots in every ray.
  np.testing.assert_array_equal(np.sort(order, -1),
                                np.broadcast_to(np.arange(24), (3, 24)))
