"""Training losses: photometric + parsing per level, the torso warp's
regularisers, and per-class sums for the semantic sampler's statistics.

All act on one device's rays ([F, R] leading axes).  Loss terms are means
over all of those rays, so that per-device means of equal ray counts
average to the global mean whatever the device count.
"""
import jax
import jax.numpy as jnp

from ssp_nerf_jax import render


def render_losses(outputs, targets, semantic_weight):
  """Photometric + parsing losses of one level-pair (coarse and fine).

  Args:
    outputs: model outputs {'coarse'|'fine': {'rgb' [F,R,3], 'acc' [F,R],
      'semantics' [F,R,K]}}.
    targets: from `train.draw_rays`.
  Returns:
    (total loss, dict of per-ray fine squared error [F,R] and scalar terms).
  """
  terms = {}
  for level in ('coarse', 'fine'):
    out = outputs[level]
    rgb = render.composite(out['rgb'], out['acc'], targets['background'])
    sq_err = jnp.mean((rgb - targets['rgb'])**2, axis=-1)
    log_probs = jnp.log(jnp.clip(out['semantics'], 1e-6, 1.0))
    cross_ent = -jnp.take_along_axis(
        log_probs, targets['class_id'][..., None], axis=-1)[..., 0]
    terms[f'mse_{level}'] = jnp.mean(sq_err)
    terms[f'ce_{level}'] = jnp.mean(cross_ent)
    if level == 'fine':
      terms['sq_err_fine'] = sq_err
  loss = (terms['mse_coarse'] + terms['mse_fine'] + semantic_weight *
          (terms['ce_coarse'] + terms['ce_fine']))
  return loss, terms


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


def class_sums(values, class_id, num_classes):
  """Per-class (sum of values, count) over rays: ([K], [K])."""
  one_hot = jax.nn.one_hot(class_id.reshape(-1), num_classes)
  return values.reshape(-1) @ one_hot, jnp.sum(one_hot, axis=0)
