"""Pixel samplers: ranges, face-rectangle share, strategy dispatch."""
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import tiny
from ssp_nerf_jax.benchmarks import fake_data
from ssp_nerf_jax.runtime import errors
from ssp_nerf_jax.training import experiment
from ssp_nerf_jax.training import losses
from ssp_nerf_jax.training import ray_sampling
from ssp_nerf_jax.training import train_step


def sampling_config(strategy, fraction=0.9, power=1.0, floor=0.0,
                    size_exponent=1.0, uniform_mix=0.0, background_area=False):
  return ml_collections.ConfigDict(
      {'strategy': strategy, 'face_rect_fraction': fraction,
       'semantic_power': power, 'semantic_floor': floor,
       'semantic_size_exponent': size_exponent,
       'semantic_uniform_mix': uniform_mix,
       'semantic_background_area': background_area,
       'error_map_uniform_mix': 0.0})


def striped_parsing():
  """[20, 30] parsing: class 0 on 400 px, 1 on 150, 2 on 50; 3 absent."""
  parsing = np.zeros((20, 30), np.int32)
  parsing[:5] = 1
  parsing[5:7, :25] = 2
  return jnp.asarray(parsing)


def test_uniform_covers_image_and_stays_inside():
  pixels = np.asarray(ray_sampling.sample_uniform(jax.random.PRNGKey(0), 20000,
                                                  12, 7))
  assert pixels.shape == (20000, 2) and pixels.dtype == np.int32
  assert pixels[:, 0].min() == 0 and pixels[:, 0].max() == 11
  assert pixels[:, 1].min() == 0 and pixels[:, 1].max() == 6
  counts = np.bincount(pixels[:, 0] * 7 + pixels[:, 1], minlength=84)
  # Every pixel equally likely: counts ~ 20000/84 = 238 +- 4 sigma.
  assert np.all(np.abs(counts - 20000 / 84) < 4 * np.sqrt(20000 / 84))


def test_face_rect_share_inside_rectangle():
  rect = jnp.array([10, 5, 8, 6])  # x=col, y=row, w, h
  frame = {'face_rect': rect}
  pixels = np.asarray(ray_sampling.sample_pixels(
      jax.random.PRNGKey(1), sampling_config('face_rect', 0.9), 1000, 32, 40,
      frame)[0])
  inside = ((pixels[:, 1] >= 10) & (pixels[:, 1] < 18) &
            (pixels[:, 0] >= 5) & (pixels[:, 0] < 11))
  assert inside[:900].all()
  # The remaining 10 % are uniform: a rectangle of 48/1280 px gets few.
  assert inside[900:].mean() < 0.15
  assert pixels[:, 0].max() < 32 and pixels[:, 1].max() < 40


def test_face_rect_clipped_to_image():
  frame = {'face_rect': jnp.array([30, 28, 50, 50])}
  pixels = np.asarray(ray_sampling.sample_pixels(
      jax.random.PRNGKey(2), sampling_config('face_rect', 1.0), 500, 32, 32,
      frame)[0])
  assert (pixels >= [28, 30]).all() and (pixels < 32).all()


def test_unknown_strategy_names_the_value():
  with pytest.raises(ValueError, match="'nope'"):
    ray_sampling.sample_pixels(jax.random.PRNGKey(0), sampling_config('nope'),
                               8, 4, 4, {'face_rect': jnp.zeros(4)})


def test_class_shares_follow_pixels_times_loss_with_a_floor():
  counts = jnp.array([400.0, 150.0, 50.0, 0.0])
  loss = jnp.array([0.01, 0.02, 0.08, 0.5])
  shares = np.asarray(ray_sampling.class_shares(loss, counts, 1.0, 0.0))
  expected = np.array([4.0, 3.0, 4.0, 0.0]) / 11  # n_k L_k, class 3 absent
  np.testing.assert_allclose(shares, expected, rtol=1e-5)
  floored = np.asarray(ray_sampling.class_shares(loss, counts, 1.0, 0.3))
  np.testing.assert_allclose(floored, (0.3 + 0.1 * expected) * (counts > 0),
                             rtol=1e-5)
  # power 0: the uniform pixel shares; unmeasured losses (-1) count as the
  # largest measured one.
  np.testing.assert_allclose(
      ray_sampling.class_shares(loss, counts, 0.0, 0.0),
      np.array([400, 150, 50, 0]) / 600, rtol=1e-5)
  np.testing.assert_allclose(
      ray_sampling.class_shares(jnp.array([0.01, -1.0, 0.04, -1.0]), counts,
                                1.0, 0.0),
      np.array([4.0, 6.0, 2.0, 0.0]) / 12, rtol=1e-5)
  # Size exponent 0.5 and half uniform: sqrt(n_k) L_k = 0.2, 0.245, 0.566.
  mixed = ray_sampling.class_shares(loss, counts, 1.0, 0.0,
                                    size_exponent=0.5, uniform_mix=0.5)
  sqrt_weights = np.sqrt([400, 150, 50, 0]) * [0.01, 0.02, 0.08, 0.5]
  np.testing.assert_allclose(
      mixed, 0.5 * np.array([400, 150, 50, 0]) / 600 +
      0.5 * sqrt_weights / sqrt_weights.sum(), rtol=1e-5)


def test_semantic_rays_match_requested_shares_and_skip_absent_classes():
  parsing = striped_parsing()
  loss = jnp.array([0.01, 0.02, 0.08, 0.5])
  config = sampling_config('semantic', floor=0.05)
  flat = np.asarray(parsing).ravel()
  drawn = []
  for seed in range(20):
    pixels, _, shares = ray_sampling.sample_semantic(
        jax.random.PRNGKey(seed), 512, parsing, loss, True, config)
    drawn.append(np.asarray(pixels[:, 0] * 30 + pixels[:, 1]))
  drawn = np.concatenate(drawn)
  empirical = np.bincount(flat[drawn], minlength=4) / drawn.size
  assert empirical[3] == 0  # never a ray in an absent class
  np.testing.assert_allclose(empirical, shares, atol=0.01)
  # Within a class every pixel is equally likely: class 2's 50 pixels get
  # ~ 20 * 512 * share / 50 rays each.
  per_pixel = np.bincount(drawn, minlength=600)[flat == 2]
  mean = 20 * 512 * float(shares[2]) / 50
  assert np.all(np.abs(per_pixel - mean) < 5 * np.sqrt(mean))


def test_mouth_box_against_a_loop_and_its_share_of_the_rays():
  parsing = np.zeros((24, 30), np.int32)
  parsing[10:14, 9:17] = 7  # lips: rows 10-13, cols 9-16
  parsing[11:13, 12:14] = 6  # mouth interior
  box = np.asarray(ray_sampling.class_box(jnp.asarray(parsing), (6, 7), 1.5))
  expected = np.zeros_like(box)
  for row in range(24):  # centre (11.5, 12.5), size 4 x 8 grown to 6 x 12
    for col in range(30):
      if abs(row - 11.5) < 3 and abs(col - 12.5) < 6:
        expected[row, col] = 1
  np.testing.assert_array_equal(box, expected)
  assert not np.any(ray_sampling.class_box(jnp.zeros((8, 8), jnp.int32),
                                           (6, 7), 2.0))
  # Uniform mix 0.5, the loss-driven part all on the lips (class 7: the
  # other classes' losses are tiny, size exponent 0).
  config = sampling_config('semantic', uniform_mix=0.5)
  config.semantic_size_exponent = 0.0
  config.mouth_share, config.mouth_box_scale = 0.3, 1.5
  loss = jnp.full(8, 1e-8).at[7].set(1.0)
  drawn = []
  for seed in range(10):
    pixels, _, _ = ray_sampling.sample_semantic(
        jax.random.PRNGKey(seed), 512, jnp.asarray(parsing), loss, True,
        config, mouth_classes=(6, 7))
    drawn.append(np.asarray(pixels))
  drawn = np.concatenate(drawn)
  outside = ~box.astype(bool)[drawn[:, 0], drawn[:, 1]]
  lips = parsing[drawn[:, 0], drawn[:, 1]] == 7
  # The uniform part keeps its 0.5 of all rays (its 648 / 720 outside the
  # box); the box's 0.3 comes out of the loss-driven part (0.5 -> 0.2 on
  # the lips, plus the box's and the uniform rays' share of the 28 lip
  # pixels).
  np.testing.assert_allclose(outside.mean(), 0.5 * 648 / 720, atol=0.01)
  np.testing.assert_allclose(lips.mean(),
                             0.2 + 0.3 * 28 / 72 + 0.5 * 28 / 720, atol=0.01)
  # The share must fit in the loss-driven part.
  full = tiny.get_config()
  full.sampling.mouth_share, full.sampling.semantic_uniform_mix = 0.9, 0.2
  with pytest.raises(errors.UserError, match='mouth_share'):
    experiment.validate_config(full)


def test_eye_box_takes_its_share_beside_the_mouth_box_and_returns_it_absent():
  parsing = np.zeros((24, 30), np.int32)
  parsing[16:18, 10:16] = 7  # lips: 2 x 6, box grown 2x: 4 x 12 = 48 px
  parsing[5:7, 6:10] = 4  # eyes: rows 5-6, cols 6-9 and 20-23
  parsing[5:7, 20:24] = 4  # (2 x 18 grown 2x: 4 x 36 -> 4 x 30 in frame)
  config = sampling_config('semantic', uniform_mix=0.5)
  config.semantic_size_exponent = 0.0
  config.mouth_share, config.mouth_box_scale = 0.2, 2.0
  config.eye_share, config.eye_box_scale = 0.3, 2.0
  loss = jnp.full(8, 1e-8).at[1].set(1.0)  # class 1: on no pixel

  def in_boxes(parsing, eye_classes):
    drawn = np.concatenate([np.asarray(ray_sampling.sample_semantic(
        jax.random.PRNGKey(seed), 512, jnp.asarray(parsing), loss, True,
        config, mouth_classes=(7,), eye_classes=eye_classes)[0])
                            for seed in range(10)])
    boxes = [np.asarray(ray_sampling.class_box(jnp.asarray(parsing), classes,
                                               2.0), bool)
             for classes in ((7,), (4,))]
    return [box[drawn[:, 0], drawn[:, 1]].mean() for box in boxes], boxes

  (mouth, eyes), boxes = in_boxes(parsing, (4,))
  assert boxes[0].sum() == 48 and boxes[1].sum() == 120
  # Box share plus the uniform half's area share (the loss-driven part is
  # on absent class 1, so it falls back to the area shares too).
  np.testing.assert_allclose(mouth, 0.2 + 0.5 * 48 / 720, atol=0.015)
  np.testing.assert_allclose(eyes, 0.3 + 0.5 * 120 / 720, atol=0.015)
  # Without eyes in the frame, their share goes back to the rest.
  no_eyes = np.where(parsing == 4, 0, parsing)
  (mouth, _), _ = in_boxes(no_eyes, (4,))
  np.testing.assert_allclose(mouth, 0.2 + 0.8 * 48 / 720, atol=0.015)
  full = tiny.get_config()
  full.sampling.strategy = 'semantic'
  full.sampling.mouth_share, full.sampling.eye_share = 0.3, 0.3
  with pytest.raises(errors.UserError, match='eye_share'):
    experiment.validate_config(full)


def test_face_rect_importance_weights_unbias_the_mean():
  # Large errors inside the rectangle, where 90 % of the rays go: the
  # unweighted mean would be ~0.9, the image mean is ~0.13.
  error = np.random.default_rng(1).uniform(0.0, 0.2, size=(32, 40))
  error[5:11, 10:18] = 1.0
  error = jnp.asarray(error)
  frame = {'face_rect': jnp.array([10, 5, 8, 6])}
  estimates = []
  for seed in range(40):
    pixels, weights = ray_sampling.sample_pixels(
        jax.random.PRNGKey(seed), sampling_config('face_rect', 0.9), 256, 32,
        40, frame)
    estimates.append(float(jnp.mean(weights * error[pixels[:, 0],
                                                    pixels[:, 1]])))
  np.testing.assert_allclose(np.mean(estimates), error.mean(), rtol=0.05)


def test_semantic_importance_weights_unbias_the_mean():
  parsing = striped_parsing()
  # Errors that differ by class, as the losses driving the shares do.
  error = (np.array([0.01, 0.05, 0.2, 1.0])[np.asarray(parsing)] *
           np.random.default_rng(0).uniform(0.5, 1.5, size=(20, 30)))
  error = jnp.asarray(error)
  config = sampling_config('semantic', floor=0.02)
  estimates = []
  for seed in range(40):
    pixels, weights, _ = ray_sampling.sample_semantic(
        jax.random.PRNGKey(seed), 256, parsing,
        jnp.array([0.01, 0.05, 0.2, 1.0]), True, config)
    estimates.append(float(jnp.mean(weights * error[pixels[:, 0],
                                                    pixels[:, 1]])))
  biased = float(jnp.mean(error[pixels[:, 0], pixels[:, 1]]))
  assert biased > 1.5 * float(error.mean())  # the sampler does focus
  np.testing.assert_allclose(np.mean(estimates), error.mean(), rtol=0.05)


def test_semantic_shares_adapt_to_the_running_loss_and_warm_up_uniform():
  parsing = striped_parsing()
  config = sampling_config('semantic')
  def mouth_share(loss, use_loss=True):
    pixels, _, _ = ray_sampling.sample_semantic(
        jax.random.PRNGKey(0), 600, parsing, jnp.asarray(loss), use_loss,
        config)
    return np.mean(np.asarray(parsing)[pixels[:, 0], pixels[:, 1]] == 2)
  low = mouth_share([0.01, 0.01, 0.01, 0.01])
  high = mouth_share([0.01, 0.01, 0.1, 0.01])
  assert low == pytest.approx(50 / 600, abs=0.01)
  assert high > 3 * low
  assert mouth_share([0.01, 0.01, 0.1, 0.01], use_loss=False) == low


def test_background_keeps_its_area_share_and_the_rest_follows_the_loss():
  counts = jnp.array([400.0, 150.0, 50.0, 0.0])
  loss = jnp.array([0.01, 0.02, 0.08, 0.5])
  shares = np.asarray(ray_sampling.class_shares(loss, counts, 1.0, 0.0,
                                                background_area=True))
  assert shares[0] == pytest.approx(400 / 600)
  assert shares[3] == 0  # absent
  # The other classes split the remaining third as n_k L_k: 3 : 4.
  np.testing.assert_allclose(shares[1:3], np.array([3, 4]) / 7 / 3, rtol=1e-6)
  # A frame of background only samples it alone.
  only = ray_sampling.class_shares(loss, jnp.array([600.0, 0, 0, 0]), 1.0,
                                   0.01, background_area=True)
  np.testing.assert_allclose(only, [1, 0, 0, 0])


def test_importance_weighted_loss_is_an_unbiased_estimate_of_the_uniform_loss():
  # A fixed error image (error by class, as the running losses that drive
  # the sampler): the training loss with config.sampling.unbiased, averaged
  # over draws, is the mean error over all pixels; without it, it is not.
  config = tiny.get_config()
  config.sampling.strategy = 'semantic'
  config.sampling.semantic_floor = 0.02
  scene = fake_data.random_scene(config, num_classes=4)
  batch = fake_data.random_batch(config, scene, num_frames=1)
  parsing = striped_parsing()
  batch['parsing'] = np.asarray(parsing, np.uint8)[None]
  batch['image'] = np.zeros((1, 20, 30, 3), np.uint8)
  scene = scene.replace(height=20, width=30, cx=15.0, cy=10.0)
  offset = (np.array([0.02, 0.1, 0.3, 0.9])[np.asarray(parsing)] *
            np.random.default_rng(0).uniform(0.5, 1.5, size=(20, 30)))
  prediction = jnp.asarray(np.repeat(offset[..., None], 3, -1), jnp.float32)
  class_loss = jnp.array([0.0004, 0.01, 0.09, 0.8])
  arrays = {'background': jnp.zeros((20, 30, 3))}

  @functools.partial(jax.jit, static_argnums=1)
  def loss_of_draw(key, unbiased):
    variant = config.copy_and_resolve_references()
    variant.sampling.unbiased = unbiased
    _, targets = train_step.draw_rays(key[None], batch, arrays, class_loss,
                                      True, config=variant, scene=scene)
    pixels = targets['pixels'][0]
    rgb = prediction[pixels[:, 0], pixels[:, 1]][None]
    level = {'rgb': rgb, 'acc': jnp.ones(rgb.shape[:2]),
             'semantics': jnp.full(rgb.shape[:2] + (4,), 0.25)}
    return losses.render_terms({'coarse': level, 'fine': level},
                               targets)['mse_fine']
  keys = jax.random.split(jax.random.PRNGKey(0), 60)
  unbiased = [float(loss_of_draw(k, True)) for k in keys]
  biased = [float(loss_of_draw(k, False)) for k in keys]
  image_loss = float(np.mean(offset**2))
  assert np.mean(biased) > 2 * image_loss  # the sampler does focus
  sem = np.std(unbiased) / np.sqrt(len(unbiased))
  assert abs(np.mean(unbiased) - image_loss) < 4 * sem + 0.02 * image_loss
