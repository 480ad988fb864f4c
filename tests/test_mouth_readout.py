"""The audio -> mouth read-out (ridge maths against least squares, the fit on
measured frames) and the field conditioned on the mouth opening: measured
openings are read, missing ones predicted.  test_preprocess trains with it
on a preprocessed clip and checks the read-out that training kept."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssp_nerf_jax.benchmarks import fake_data
from ssp_nerf_jax.models import mouth_readout
from ssp_nerf_jax.runtime import errors
from ssp_nerf_jax.runtime import parallel
from ssp_nerf_jax.training import experiment


def test_ridge_without_penalty_is_least_squares():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(80, 6)) * [1, 2, 3, 4, 5, 6] + 7
  y = x @ rng.normal(size=6) + 0.1 * rng.normal(size=80)
  design = np.concatenate([x, np.ones((80, 1))], axis=1)
  expected = design @ np.linalg.lstsq(design, y, rcond=None)[0]
  readout = mouth_readout.ridge_fit(x, y, 0.0)
  np.testing.assert_allclose(mouth_readout.predict(readout, x), expected,
                             atol=1e-8)
  # A huge penalty leaves the intercept: the mean of y.
  readout = mouth_readout.ridge_fit(x, y, 1e12)
  np.testing.assert_allclose(mouth_readout.predict(readout, x), y.mean(),
                             atol=1e-6)


def test_strength_chosen_by_blocks_recovers_a_linear_signal():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(300, 40))
  y = x[:, :3].sum(axis=1) + 0.5 * rng.normal(size=300)
  strength, r = mouth_readout.choose_strength(x[:250], y[:250])
  readout = mouth_readout.ridge_fit(x[:250], y[:250], strength)
  # Noise std 0.5 against signal std sqrt(3): the best r is ~0.96.
  assert r > 0.85
  assert mouth_readout.correlate_or_zero(mouth_readout.predict(readout, x[250:]),
                                         y[250:]) > 0.85


def _reference_choice(x, y, strengths, folds=mouth_readout.CV_FOLDS):
  """The obvious slow selection: for every strength and fold, standardise
  the kept frames and solve the D x D normal equations with lstsq."""
  blocks = np.array_split(np.arange(len(y)), folds)
  means = []
  for strength in strengths:
    scores = []
    for held in blocks:
      kept = np.setdiff1d(np.arange(len(y)), held)
      mean, scale = x[kept].mean(0), x[kept].std(0) + 1e-8
      z = (x[kept] - mean) / scale
      offset = y[kept].mean()
      w = np.linalg.lstsq(z.T @ z + strength * np.eye(x.shape[1]),
                          z.T @ (y[kept] - offset), rcond=None)[0]
      predicted = (x[held] - mean) / scale @ w + offset
      scores.append(np.corrcoef(predicted, y[held])[0, 1])
    means.append(np.mean(scores))
  best = int(np.argmax(means))
  return strengths[best], means[best]


@pytest.mark.parametrize('frames,dim', [(200, 60), (90, 400)])
def test_strength_choice_matches_the_slow_reference(frames, dim):
  """Primal (D < N) and dual (D > N) solutions choose as lstsq does."""
  rng = np.random.default_rng(3)
  x = rng.normal(size=(frames, dim)) * rng.uniform(0.5, 2, dim) + 1
  y = x[:, :5] @ rng.normal(size=5) + 2 * rng.normal(size=frames)
  strengths = mouth_readout.RIDGE_STRENGTHS
  expected = _reference_choice(x, y, strengths)
  strength, r = mouth_readout.choose_strength(x, y, strengths)
  assert strength == expected[0]
  np.testing.assert_allclose(r, expected[1], rtol=1e-7)
  # And the dual fit at that strength equals the primal one.
  readout = mouth_readout.ridge_fit(x, y, strength)
  z, _, _ = mouth_readout.standardise(x)
  primal = np.linalg.solve(z.T @ z + strength * np.eye(dim),
                           z.T @ (y - y.mean()))
  np.testing.assert_allclose(readout['weights'], primal, rtol=1e-6,
                             atol=1e-9)


def test_quantile_map_gives_predictions_the_measured_distribution():
  rng = np.random.default_rng(4)
  x = rng.normal(size=(300, 30))
  # Skewed openings, mostly near shut, as a talking mouth's are.
  y = np.clip(0.2 + 0.1 * x[:, :3].sum(1) + 0.1 * rng.normal(size=300), 0, 1)
  _, held_out = mouth_readout.cross_validate(x, y, [100.0])
  first, second = mouth_readout.quantile_map(held_out[0], y, 33)
  assert np.all(np.diff(first) > 0) and np.all(np.diff(second) >= 0)
  mapped = np.interp(held_out[0], first, second)
  assert np.std(held_out[0]) < 0.8 * np.std(y)  # ridge shrinks ...
  np.testing.assert_allclose(np.quantile(mapped, [0.1, 0.5, 0.9]),
                             np.quantile(y, [0.1, 0.5, 0.9]), atol=0.02)
  # ... the map restores the spread and keeps the order.
  assert np.all(np.diff(mapped[np.argsort(held_out[0])]) >= 0)
  np.testing.assert_allclose([mapped.min(), mapped.max()], [y.min(), y.max()],
                             atol=1e-6)


def _windows_and_openings(num_frames, window=(8, 4, 3), seed=2):
  """[N, *window] context windows and openings linear in the frame's own."""
  rng = np.random.default_rng(seed)
  audio = rng.normal(size=(num_frames,) + window).astype(np.float32)
  centre = audio[:, 4].reshape(num_frames, -1)
  opening = 0.5 + 0.1 * centre[:, :4].sum(1) + 0.02 * rng.normal(
      size=num_frames)
  return audio, opening.astype(np.float32)


def test_fit_reads_the_frames_own_window_and_skips_unmeasured_frames():
  audio, opening = _windows_and_openings(120)
  opening[::7] = np.nan
  fitted = mouth_readout.fit_readout(audio, opening, knots=9)
  assert fitted['map_in'].shape == fitted['map_out'].shape == (9,)
  kept = np.isfinite(opening)
  expected = mouth_readout.ridge_fit(
      audio[kept, 4].reshape(kept.sum(), -1), opening[kept],
      float(fitted['strength']))
  for name in ('mean', 'scale', 'weights', 'offset'):
    np.testing.assert_allclose(fitted[name], expected[name], rtol=1e-5,
                               atol=1e-6)
  assert fitted['r_cv'] > 0.9
  opening[mouth_readout.MIN_FRAMES - 1:] = np.nan
  with pytest.raises(errors.UserError, match='config.model.mouth_condition'):
    mouth_readout.fit_readout(audio, opening)


def _mouth_experiment(config, scene=None):
  config = config.copy_and_resolve_references()
  config.model.mouth_condition = True
  return experiment.setup(config, parallel.make_data_mesh(jax.devices()[:1]),
                          scene=scene)


def test_field_reads_measured_openings_and_predicts_the_others():
  from configs import tiny  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  model = _mouth_experiment(config, fake_data.random_scene(config)).model
  audio, opening = _windows_and_openings(
      60, (8, 16, config.data.audio_dim))
  knots = config.model.mouth_quantile_knots
  fitted = mouth_readout.fit_readout(audio, opening, knots)
  # Only the read-out's parameters: the other modules are not called.
  params = {'params': {'mouth_readout': {
      name: jnp.asarray(fitted[name])
      for name in ('mean', 'scale', 'weights', 'offset', 'map_in',
                   'map_out')}}}
  expected = np.interp(mouth_readout.predict(fitted, audio[:3, 4].reshape(3,
                                                                          -1)),
                       fitted['map_in'], fitted['map_out'])
  predicted = model.apply(params, audio[:3], method=model.mouth_opening)
  np.testing.assert_allclose(predicted, expected, rtol=1e-4, atol=1e-5)
  given = model.apply(params, audio[:3], jnp.array([0.25, np.nan, 1.0]),
                      method=model.mouth_opening)
  np.testing.assert_allclose(given, [0.25, expected[1], 1.0], rtol=1e-4,
                             atol=1e-5)
  code, _ = jax.eval_shape(lambda: model.init_with_output(
      jax.random.PRNGKey(0), audio[:3], False, method=model.audio_code))
  assert code.shape == (3, config.model.audio_code_dim +
                        1 + 2 * config.model.mouth_freqs)
