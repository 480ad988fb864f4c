"""Where the mouth is (`mouth_region`): the least-squares point of rays, the
fit on the tiny synthetic portrait against the generator's true lips, and
the field whose opening acts only around that point."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssp_nerf_jax.benchmarks import fake_data
from ssp_nerf_jax.data import input_pipeline
from ssp_nerf_jax.models import mouth_region
from ssp_nerf_jax.rendering import rays as rays_lib
from ssp_nerf_jax.runtime import errors
from ssp_nerf_jax.runtime import parallel
from ssp_nerf_jax.synthetic import scene as synthetic_scene
from ssp_nerf_jax.training import experiment


def test_nearest_point_of_rays_through_a_point_is_that_point():
  rng = np.random.default_rng(0)
  point = np.array([0.1, -0.2, 0.3])
  origins = rng.normal(size=(12, 3))
  directions = (point - origins) * rng.uniform(0.5, 2.0, size=(12, 1))
  np.testing.assert_allclose(
      mouth_region.nearest_point(origins, directions, np.zeros(3), 0.0),
      point, atol=1e-9)
  # Parallel rays leave the point's place along them to the prior.
  parallel_dirs = np.tile([[0.0, 0.0, -1.0]], (12, 1))
  origins = np.concatenate([rng.normal(size=(12, 2)) * 1e-9 + [0.1, -0.2],
                            rng.normal(size=(12, 1))], axis=1)
  np.testing.assert_allclose(
      mouth_region.nearest_point(origins, parallel_dirs, [5.0, 5.0, 0.7],
                                 1e-6),
      [0.1, -0.2, 0.7], atol=1e-5)


def test_mouth_pixels_centroid_and_width():
  parsing = np.zeros((2, 8, 10), np.uint8)
  parsing[0, 3:5, 2:7] = 7  # rows 3-4, cols 2-6
  parsing[1, 0, 0] = 7  # fewer than MIN_PIXELS: not seen
  centres, widths = mouth_region.mouth_pixels(parsing, [6, 7])
  np.testing.assert_allclose(centres[0], [3.5, 4.0])
  assert widths[0] == 5
  assert np.isnan(centres[1]).all() and np.isnan(widths[1])


def _fitted_tiny(tiny_data, radius_in_widths):
  config, builder = tiny_data
  exp = experiment.setup(config, parallel.make_data_mesh(jax.devices()[:1]))
  poses = input_pipeline.load_poses(builder, 'train')
  frames = np.arange(len(poses))
  parsing = input_pipeline.load_parsing(builder, 'train', frames)
  return exp.scene, poses, parsing, mouth_region.fit_mouth_region(
      parsing, poses, exp.scene, radius_in_widths)


def test_fit_finds_the_synthetic_lips(tiny_data):
  scene, poses, parsing, fitted = _fitted_tiny(tiny_data, 0.5)
  s = synthetic_scene
  truth = np.array([0.0, s.MOUTH_Y, s.skull_surface_z(0.0, s.MOUTH_Y)])
  # 32 px frames: one pixel is ~0.006 head units at the head's depth.
  np.testing.assert_allclose(fitted['centre'], truth, atol=0.01)
  assert fitted['frames'] == len(poses)
  # The synthetic lips are 0.04-0.05 wide.
  assert 0.025 < fitted['width'] < 0.07
  assert fitted['radius'] == pytest.approx(0.5 * fitted['width'])
  # The centre projects into every frame's mouth pixels' bounding box.
  c2w = np.asarray(poses, np.float64)
  local = np.einsum('nji,nj->ni', c2w[:, :3, :3],
                    fitted['centre'] - c2w[:, :3, 3])
  cols = scene.cx + scene.focal * local[:, 0] / -local[:, 2]
  rows = scene.cy - scene.focal * local[:, 1] / -local[:, 2]
  mouth = np.isin(parsing, [scene.class_names.index('lips'),
                            scene.class_names.index('mouth')])
  for i in range(len(poses)):
    r, c = np.nonzero(mouth[i])
    assert r.min() - 1 <= rows[i] <= r.max() + 1
    assert c.min() - 1 <= cols[i] <= c.max() + 1


def test_fit_without_mouth_classes_names_the_setting(tiny_data):
  scene, poses, parsing, _ = _fitted_tiny(tiny_data, 0.5)
  four_classes = scene.replace(class_names=('background', 'head', 'neck',
                                            'torso'))
  with pytest.raises(errors.UserError, match='mouth_region_radius'):
    mouth_region.fit_mouth_region(parsing, poses, four_classes, 0.5)
  with pytest.raises(errors.UserError, match='shows in 0 of'):
    mouth_region.fit_mouth_region(np.zeros_like(parsing), poses, scene, 0.5)


def _tiny_field(**model_settings):
  """(model, params, audio, c2w) of configs/tiny.py's field with
  `model_settings` on a random scene, initialised at POINTS."""
  from configs import tiny  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  config.model.update(model_settings)
  model = experiment.setup(
      config, parallel.make_data_mesh(jax.devices()[:1]),
      scene=fake_data.random_scene(config)).model
  audio = jnp.asarray(np.random.default_rng(0).normal(
      size=(1, 8, 16, config.data.audio_dim)), jnp.float32)
  c2w = jnp.eye(4)[None]
  params = model.init(jax.random.PRNGKey(0), POINTS, audio, False, c2w,
                      method=model.density)
  return model, params, audio, c2w


# A region's centre, 0.5 radii from it (radius 0.02), 15 radii away
# (Gaussian weight e^-112) and far away.
POINTS = jnp.asarray([[[0.0, 0.0, 0.05], [0.0, 0.01, 0.05],
                       [0.0, 0.3, 0.05], [0.3, 0.0, -0.2]]], jnp.float32)


def test_opening_acts_only_around_the_mouth():
  model, params, audio, c2w = _tiny_field(mouth_condition=True,
                                          mouth_region_radius=0.5)
  points = POINTS
  params['params']['mouth_region'] = {
      'centre': jnp.asarray([0.0, 0.0, 0.05]), 'radius': jnp.float32(0.02)}

  def coarse_sigma(opening):
    def apply(m):
      code = m.audio_code(audio, False)
      encoded = m.encoded_opening(audio, jnp.array([opening]))
      samples = points[:, :, None]
      return m.coarse(samples, jnp.zeros((1, 4, 3)),
                      m.field_code(code, encoded, samples))['raw_sigma']
    return model.apply(params, method=apply)[0, :, 0]

  change = jnp.abs(coarse_sigma(1.0) - coarse_sigma(0.0))
  np.testing.assert_array_equal(change[2:], 0.0)
  assert change[0] > 0 and change[1] > 0
  # So does the coarse density of training's per-step grids (torso warp
  # included: it moves points by at most 0.02).
  def grid_density(opening):
    return model.apply(params, points, audio, False, c2w,
                       jnp.array([opening]),
                       coarse_only=True, method=model.density)[0]
  change = jnp.abs(grid_density(1.0) - grid_density(0.0))
  np.testing.assert_array_equal(change[2:], 0.0)
  assert change[0] > 0 and change[1] > 0


def test_eye_openness_acts_only_within_the_eye_region():
  model, params, audio, c2w = _tiny_field(eye_condition=True)
  params['params']['eye_region'] = {
      'centre': jnp.asarray([0.0, 0.0, 0.05]), 'radius': jnp.float32(0.02),
      'closed': jnp.float32(0.05), 'open': jnp.float32(0.3)}

  def density(eyes):
    return model.apply(params, POINTS, audio, False, c2w,
                       eyes=None if eyes is None else jnp.array([eyes]),
                       coarse_only=True, method=model.density)[0]

  change = jnp.abs(density(0.3) - density(0.05))
  np.testing.assert_array_equal(change[2:], 0.0)  # beyond the radius
  assert change[0] > 0 and change[1] > 0
  # No openness (NaN, None): no eye input, the same field everywhere.
  np.testing.assert_array_equal(density(float('nan')), density(None))
  np.testing.assert_array_equal(density(0.3)[2:], density(None)[2:])

  # Rendered rays: one through the region changes, one past it does not
  # (a radius that the samples 1/8 of [near, far] apart cannot miss).
  params['params']['eye_region']['radius'] = jnp.float32(0.2)
  for level in ('coarse', 'fine'):  # some density all along the rays
    params['params'][level]['sigma']['bias'] = jnp.ones(1)
  rays = rays_lib.Rays(
      origins=jnp.asarray([[[0.0, 0.0, 1.0], [0.0, 0.3, 1.0]]]),
      directions=jnp.asarray([[[0.0, 0.0, -1.0]] * 2]),
      viewdirs=jnp.asarray([[[0.0, 0.0, -1.0]] * 2]))

  def rendered(eyes):
    return model.apply(params, rays, audio, False, near=0.5, far=1.5,
                       c2w=c2w, eyes=jnp.array([eyes]))['fine']['rgb'][0]

  change = jnp.abs(rendered(0.3) - rendered(0.05)).max(axis=-1)
  assert change[0] > 0 and change[1] == 0
