"""Metrics against hand computations."""
import numpy as np

from ssp_nerf_jax.evaluation import metrics
from ssp_nerf_jax import synthetic


def test_psnr_of_known_error():
  truth = np.zeros((4, 4, 3), np.float32)
  image = np.full((4, 4, 3), 0.1, np.float32)  # MSE 0.01 -> 20 dB
  np.testing.assert_allclose(metrics.psnr(image, truth), 20.0, rtol=1e-5)
  np.testing.assert_allclose(metrics.mse_to_psnr(0.01), 20.0, rtol=1e-5)


def test_ssim_identity_is_one():
  image = np.random.default_rng(0).uniform(size=(16, 16, 3)).astype(np.float32)
  np.testing.assert_allclose(metrics.ssim(image, image), 1.0, atol=1e-5)


def test_mean_iou_by_hand():
  truth = np.array([0, 0, 1, 1, 2])
  pred = np.array([0, 1, 1, 1, 0])
  # class 0: 1/3, class 1: 2/3, class 2: 0/1; class 3 absent from both.
  np.testing.assert_allclose(metrics.mean_iou(pred, truth, 4), (1 / 3 + 2 / 3) / 3)


def test_region_psnr_pools_the_pixels_of_each_region():
  names = synthetic.CLASS_NAMES
  truth = np.zeros((2, 2, 3, 3))
  parsing = np.zeros((2, 2, 3), np.uint8)  # background everywhere ...
  parsing[0, 0, 0] = names.index('lips')  # ... but two mouth pixels
  parsing[1, 1, 2] = names.index('mouth')
  rgb = np.zeros_like(truth)
  rgb[0, 0, 0] = 0.1  # mouth errors 0.1 and 0.3: MSE 0.05
  rgb[1, 1, 2] = 0.3
  rgb[1, 0, 0] = 0.2  # one background error: MSE 0.04 / 10
  scores = metrics.region_psnr(rgb, truth, parsing, names)
  np.testing.assert_allclose(scores['mouth'], -10 * np.log10(0.05))
  np.testing.assert_allclose(scores['background'], -10 * np.log10(0.004))
  np.testing.assert_allclose(scores['full'], -10 * np.log10(0.14 / 12))
  assert scores['hair'] is None  # no hair pixels
  four_class = metrics.region_psnr(rgb, truth, np.minimum(parsing, 3),
                                   ('background', 'head', 'neck', 'torso'))
  assert four_class['mouth'] is None and four_class['neck_torso'] is not None
