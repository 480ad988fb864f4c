"""Metrics against hand computations."""
import numpy as np

from ssp_nerf_jax import metrics


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
