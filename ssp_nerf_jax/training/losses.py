"""Training losses: photometric + parsing per level and the torso warp's
regularisers, weighted into one total by `total_loss`.

All act on one device's rays ([F, R] leading axes).  Loss terms are means
over all of those rays, so that per-device means of equal ray counts
average to the global mean whatever the device count.
"""
import jax.numpy as jnp

from ssp_nerf_jax.rendering import volume_rendering


def total_loss(outputs, targets, train_config, body_classes=None):
  """The training loss: every term with its config weight.

    mse_coarse + mse_fine + semantic_weight (ce_coarse + ce_fine)
      [+ warp_blend_weight (blend_coarse + blend_fine)
       + warp_offset_weight (offset_coarse + offset_fine)]

  Args:
    outputs: model outputs of a chunk of rays (see `render_terms`; with the
      torso warp also 'blend' and 'offset_sq').
    targets: from `train_step.draw_rays`.
    train_config: config.train (the weights).
    body_classes: the torso warp's body-class mask (`torso_warp.
      body_class_mask`), or None without the warp.
  Returns:
    (loss, dict of scalar terms and the per-ray fine squared error
    'sq_err_fine' [F, R]).
  """
  terms = render_terms(outputs, targets)
  loss = (terms['mse_coarse'] + terms['mse_fine'] +
          train_config.semantic_weight * (terms['ce_coarse'] +
                                          terms['ce_fine']))
  if body_classes is not None:
    terms.update(warp_losses(outputs, targets['class_id'], body_classes))
    loss += train_config.warp_blend_weight * (terms['blend_coarse'] +
                                              terms['blend_fine'])
    loss += train_config.warp_offset_weight * (terms['offset_coarse'] +
                                               terms['offset_fine'])
  return loss, terms


def render_terms(outputs, targets):
  """Photometric + parsing terms of the coarse and fine levels (unweighted).

  Args:
    outputs: model outputs {'coarse'|'fine': {'rgb' [F,R,3], 'acc' [F,R],
      'semantics' [F,R,K]}}.
    targets: from `train_step.draw_rays`; with 'loss_weight' [F, R] the
      photometric terms are means of weight x squared error (the sampler's
      importance weights: an unbiased estimate of the uniform-pixel loss).
  Returns:
    dict of scalars mse_{level}, ce_{level} and the per-ray fine squared
    error 'sq_err_fine' [F, R] (unweighted).
  """
  weight = targets.get('loss_weight')
  terms = {}
  for level in ('coarse', 'fine'):
    out = outputs[level]
    rgb = volume_rendering.composite(out['rgb'], out['acc'], targets['background'])
    sq_err = jnp.mean((rgb - targets['rgb'])**2, axis=-1)
    log_probs = jnp.log(jnp.clip(out['semantics'], 1e-6, 1.0))
    cross_ent = -jnp.take_along_axis(
        log_probs, targets['class_id'][..., None], axis=-1)[..., 0]
    terms[f'mse_{level}'] = jnp.mean(sq_err if weight is None else
                                     weight * sq_err)
    terms[f'ce_{level}'] = jnp.mean(cross_ent)
    if level == 'fine':
      terms['sq_err_fine'] = sq_err
  return terms


def warp_losses(outputs, class_id, body_classes):
  """The torso warp's regularisers (see models/torso_warp.py).

  Args:
    outputs: model outputs with per-ray 'blend' and 'offset_sq' [F, R].
    class_id: int [F, R] ground-truth classes of the rays (0: background).
    body_classes: K bools, True for classes that move with the body.
  Returns:
    dict of scalars: blend_{level}, the binary cross-entropy of each
    ray's blend against "is a body class" (zero for background rays),
    averaged over all rays, and offset_{level}, the mean squared residual
    offset.
  """
  is_body = jnp.asarray(body_classes, jnp.float32)[class_id]
  # Background rays carry no target: whatever they pass is not seen.  (A
  # mean over all rays, not over the counted ones: per-device means of equal
  # ray counts average to the global mean, whatever the device count.)
  counted = (class_id != 0).astype(jnp.float32)
  terms = {}
  for level in ('coarse', 'fine'):
    blend = jnp.clip(outputs[level]['blend'], 1e-4, 1 - 1e-4)
    bce = -(is_body * jnp.log(blend) + (1 - is_body) * jnp.log1p(-blend))
    terms[f'blend_{level}'] = jnp.mean(bce * counted)
    terms[f'offset_{level}'] = jnp.mean(outputs[level]['offset_sq'])
  return terms

