"""Image metrics (dm-pix where it has them) and small loss helpers."""
import dm_pix
import jax.numpy as jnp
import numpy as np


def mse_to_psnr(mse):
  """PSNR of images in [0, 1] from their mean squared error."""
  return -10.0 * jnp.log10(mse)


def psnr(image, reference):
  """PSNR of float images [..., H, W, 3] in [0, 1]."""
  return dm_pix.psnr(jnp.asarray(image, jnp.float32),
                     jnp.asarray(reference, jnp.float32))


def ssim(image, reference):
  """SSIM (11x11 Gaussian window, as in the NeRF literature) in [0, 1]."""
  return dm_pix.ssim(jnp.asarray(image, jnp.float32),
                     jnp.asarray(reference, jnp.float32))


def mean_iou(pred_ids, true_ids, num_classes):
  """Mean IoU of two int class-id maps over classes in either; NaN if none."""
  pred_ids = np.asarray(pred_ids).ravel()
  true_ids = np.asarray(true_ids).ravel()
  ious = []
  for k in range(num_classes):
    pred_k, true_k = pred_ids == k, true_ids == k
    union = np.count_nonzero(pred_k | true_k)
    if union:
      ious.append(np.count_nonzero(pred_k & true_k) / union)
  return float(np.mean(ious)) if ious else float('nan')


# Scored regions as SSP-NeRF parsing class names; 'full' is every pixel.
REGIONS = {
    'full': None,
    'mouth': ('lips', 'mouth'),
    'eyes': ('eyes', 'brows'),
    'face': ('skin', 'nose', 'ears'),
    'hair': ('hair',),
    'neck_torso': ('neck', 'torso'),
    'background': ('background',),
}


def region_masks(parsing, class_names):
  """{region: bool mask [..., H, W] of true class ids, or None when the
  dataset lacks the region's classes}."""
  masks = {}
  for region, names in REGIONS.items():
    if names is None:
      masks[region] = np.ones(np.shape(parsing), bool)
      continue
    ids = [class_names.index(n) for n in names if n in class_names]
    masks[region] = np.isin(parsing, ids) if ids else None
  return masks


def region_psnr(rgb, truth, parsing, class_names):
  """{region: PSNR or None} of rgb, truth [N, H, W, 3], error pooled over all
  frames so that small regions (the mouth) count in every frame showing them."""
  sq_err = np.mean((np.asarray(rgb, np.float64) -
                    np.asarray(truth, np.float64))**2, axis=-1)
  result = {}
  for region, mask in region_masks(parsing, tuple(class_names)).items():
    if mask is None or not mask.any():
      result[region] = None
    else:
      result[region] = float(-10 * np.log10(max(sq_err[mask].mean(), 1e-10)))
  return result
