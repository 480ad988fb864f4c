"""Image metrics (dm-pix where it has them) and small loss helpers."""
import dm_pix
import jax.numpy as jnp
import numpy as np


def mse_to_psnr(mse):
  """PSNR in dB of images in [0, 1] from their mean squared error."""
  return -10.0 * jnp.log10(mse)


def psnr(image, reference):
  """PSNR in dB of float images [..., H, W, 3] in [0, 1]."""
  return dm_pix.psnr(jnp.asarray(image, jnp.float32),
                     jnp.asarray(reference, jnp.float32))


def ssim(image, reference):
  """SSIM (11x11 Gaussian window, as in the NeRF literature) in [0, 1]."""
  return dm_pix.ssim(jnp.asarray(image, jnp.float32),
                     jnp.asarray(reference, jnp.float32))


def mean_iou(pred_ids, true_ids, num_classes):
  """Mean intersection-over-union over the classes present in either map.

  Args:
    pred_ids, true_ids: int arrays of the same shape (class ids).
    num_classes: K.
  Returns:
    float, the mean IoU over classes that occur in `pred_ids` or `true_ids`.
  """
  pred_ids = np.asarray(pred_ids).ravel()
  true_ids = np.asarray(true_ids).ravel()
  ious = []
  for k in range(num_classes):
    pred_k, true_k = pred_ids == k, true_ids == k
    union = np.count_nonzero(pred_k | true_k)
    if union:
      ious.append(np.count_nonzero(pred_k & true_k) / union)
  return float(np.mean(ious)) if ious else float('nan')
