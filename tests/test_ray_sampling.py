"""Pixel samplers: ranges, face-rectangle share, strategy dispatch."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ssp_nerf_jax import ray_sampling


def sampling_config(strategy, fraction=0.9):
  return ml_collections.ConfigDict(
      {'strategy': strategy, 'face_rect_fraction': fraction})


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
      frame))
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
      frame))
  assert (pixels >= [28, 30]).all() and (pixels < 32).all()


def test_unknown_strategy_names_the_value():
  with pytest.raises(ValueError, match="'nope'"):
    ray_sampling.sample_pixels(jax.random.PRNGKey(0), sampling_config('nope'),
                               8, 4, 4, {'face_rect': jnp.zeros(4)})
