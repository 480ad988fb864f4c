"""Training losses.  Each is a mean over all of one device's rays [F, R], so
per-device means of equal ray counts average to the global mean."""
import jax.numpy as jnp

from ssp_nerf_jax.rendering import volume_rendering


def total_loss(outputs, targets, train_config, body_classes=None):
  """(loss, terms with 'sq_err_fine' [F, R]): mse + semantic_weight * ce, plus
  the warp terms when `body_classes` (`torso_warp.body_class_mask`) is given."""
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
  """Unweighted mse_{level}, ce_{level} and 'sq_err_fine' [F, R]; a target
  'loss_weight' [F, R] (importance weights) weighs the squared errors."""
  weight = targets.get('loss_weight')
  terms = {}
  for level in ('coarse', 'fine'):
    out = outputs[level]
    rgb = volume_rendering.composite(out['rgb'], out['acc'],
                                     targets['background'])
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
  """blend_{level}: BCE of blend vs. body class; offset_{level}: mean r^2."""
  is_body = jnp.asarray(body_classes, jnp.float32)[class_id]
  # Background rays carry no target; the mean is still over all rays.
  counted = (class_id != 0).astype(jnp.float32)
  terms = {}
  for level in ('coarse', 'fine'):
    blend = jnp.clip(outputs[level]['blend'], 1e-4, 1 - 1e-4)
    bce = -(is_body * jnp.log(blend) + (1 - is_body) * jnp.log1p(-blend))
    terms[f'blend_{level}'] = jnp.mean(bce * counted)
    terms[f'offset_{level}'] = jnp.mean(outputs[level]['offset_sq'])
  return terms

