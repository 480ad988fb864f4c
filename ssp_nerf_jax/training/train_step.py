"""The train state and the data-parallel train step.

The step is one pure function, jitted over a `jax.shard_map` on the
('data',) mesh.  On each device it derives a key per frame (`frame_keys`),
draws rays and targets from its frames (`draw_rays`), bounds them in depth
(`make_ray_interval`), renders them in sequential chunks summing the
gradients of `losses.total_loss` (`loss_and_grads`), averages the gradients
over devices and updates the parameters and the samplers' state
(`next_state`), and reports metrics (`step_metrics`).
"""
import functools

import flax
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import optax

from ssp_nerf_jax.evaluation import metrics as metrics_lib
from ssp_nerf_jax.models import mouth_region
from ssp_nerf_jax.models import torso_warp
from ssp_nerf_jax.rendering import frame_renderer
from ssp_nerf_jax.rendering import occupancy
from ssp_nerf_jax.rendering import rays as rays_lib
from ssp_nerf_jax.runtime import errors
from ssp_nerf_jax.runtime import parallel
from ssp_nerf_jax.training import error_map as error_map_lib
from ssp_nerf_jax.training import losses
from ssp_nerf_jax.training import pose_refinement
from ssp_nerf_jax.training import ray_sampling

P = jax.sharding.PartitionSpec


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: flax.core.FrozenDict
  opt_state: optax.OptState
  # Updated by every step whatever the strategy, so that switching
  # strategies on resume keeps the statistics.
  sampler: ray_sampling.SemanticStats
  # One unused cell unless the strategy is 'error_map' (orbax saves no
  # empty arrays).
  error_map: error_map_lib.ErrorMap
  # The clip-wide training grid, measured by the loop (train_grid 'clip');
  # the step only carries it.  Checkpoints without it restore unmeasured.
  occupancy: occupancy.Grid
  # Per-frame pose corrections (config.pose_refinement); checkpoints
  # without them restore zero corrections.
  poses: pose_refinement.PoseCorrections


def init_state(config, model, scene, tx) -> TrainState:
  """Fresh parameters and optimizer state (host, unreplicated)."""
  dummy_rays = rays_lib.Rays(
      origins=jnp.zeros((1, 1, 3)), directions=jnp.ones((1, 1, 3)),
      viewdirs=jnp.ones((1, 1, 3)) / np.sqrt(3.0))
  # The dataset's window shape; config.data.audio_dim equals its width
  # (checked when the dataset is built and read).
  dummy_audio = jnp.zeros((1, scene.audio_context, scene.audio_window_steps,
                           scene.audio_dim))
  params = jax.jit(functools.partial(model.init, smooth_audio=True))(
      jax.random.PRNGKey(config.seed), dummy_rays, dummy_audio,
      c2w=jnp.eye(4)[None])
  return TrainState(step=jnp.array(0, jnp.int32), params=params,
                    opt_state=tx.init(params),
                    sampler=ray_sampling.SemanticStats.create(
                        scene.num_classes),
                    error_map=(error_map_lib.ErrorMap.create(
                        scene.num_train, config.sampling.error_map_resolution)
                               if uses_error_map(config) else
                               error_map_lib.ErrorMap.create(1, 1)),
                    occupancy=init_grid(config, model, scene),
                    poses=pose_refinement.create(config.pose_refinement,
                                                 scene.num_train,
                                                 scene.num_val))


def init_grid(config, model, scene) -> occupancy.Grid:
  """Training's unmeasured clip-wide grid."""
  settings = config.occupancy
  box = occupancy.head_box(scene, model.near, model.far,
                           settings.box_padding)
  return occupancy.create(settings.train_resolution, box)


def uses_error_map(config):
  return config.sampling.strategy == 'error_map'


def is_smoothing_on(step, train_config):
  """Whether the audio attention (smoothing over the context windows) is
  on at `step`: AD-NeRF trains it only after the per-frame code settles.
  `step` may be traced."""
  return step >= train_config.audio_smoothing_start


def gather_pixels(image, pixels):
  """image [H, W, ...] at pixels [R, 2] (row, col) -> [R, ...]."""
  return image[pixels[:, 0], pixels[:, 1]]


def frame_keys(key, step, num_frames):
  """(sample keys, render keys), each [F] PRNG keys, of this device's frames.

  Folded from the step and each frame's global index, so a frame's rays do
  not depend on how frames are spread over devices.
  """
  first_frame = lax.axis_index(parallel.DATA_AXIS) * num_frames
  step_key = jax.random.fold_in(key, step)
  keys = jax.vmap(lambda i: jax.random.fold_in(step_key, i))(
      first_frame + jnp.arange(num_frames))
  sample_keys, render_keys = jnp.split(jax.vmap(jax.random.split)(keys), 2,
                                       axis=1)
  return sample_keys[:, 0], render_keys[:, 0]


def draw_rays(frame_keys_, batch, scene_arrays, class_loss, use_loss,
              frame_errors=None, *, config, scene):
  """Samples pixels per frame and gathers their targets.

  Args:
    frame_keys_: [F] PRNG keys, one per frame.
    batch: dict of this device's frames (leading axis F).
    scene_arrays: dict with 'background' float32 [H, W, 3].
    class_loss: float [K] running per-class loss (semantic sampler).
    use_loss: bool scalar: the semantic sampler's warm-up is over.
    frame_errors: float [F, n, n] the frames' error maps (error-map sampler).
  Returns:
    (rays with leading [F, R], dict of targets: 'rgb' [F, R, 3] in [0, 1],
    'class_id' int32 [F, R], 'background' [F, R, 3], 'uniform_weight'
    [F, R] the rays' importance weights, see `ray_sampling`, 'pixels'
    int32 [F, R, 2]; with config.sampling.unbiased also 'loss_weight' [F, R],
    the clipped weights the photometric loss uses).
  """
  height, width = scene.height, scene.width
  num_rays = config.train.rays_per_frame
  mouth_classes, eye_classes = (
      tuple(i for i, name in enumerate(scene.class_names) if name in names)
      for names in (mouth_region.MOUTH_CLASSES, mouth_region.EYE_CLASSES))

  def one_frame(key, frame):
    pixels, uniform_weight = ray_sampling.sample_pixels(
        key, config.sampling, num_rays, height, width, frame, class_loss,
        use_loss, frame.get('errors'), mouth_classes, eye_classes)
    rays = rays_lib.pixel_rays(frame['c2w'], pixels, scene.focal, scene.cx,
                               scene.cy)
    targets = {
        'rgb': gather_pixels(frame['image'], pixels).astype(jnp.float32) / 255,
        'class_id': gather_pixels(frame['parsing'], pixels).astype(jnp.int32),
        'background': gather_pixels(scene_arrays['background'], pixels),
        'uniform_weight': uniform_weight,
        'pixels': pixels,
    }
    if config.sampling.unbiased:
      max_weight = config.sampling.unbiased_max_weight
      targets['loss_weight'] = (jnp.minimum(uniform_weight, max_weight)
                                if max_weight > 0 else uniform_weight)
    return rays, targets

  frames = {k: batch[k] for k in ('image', 'parsing', 'c2w', 'face_rect')}
  if frame_errors is not None:
    frames['errors'] = frame_errors
  return jax.vmap(one_frame)(frame_keys_, frames)


def split_rays(tree, num_chunks):
  """[F, R, ...] leaves -> [num_chunks, F, R / num_chunks, ...]."""
  def split(x):
    f, r = x.shape[:2]
    return jnp.swapaxes(x.reshape(f, num_chunks, r // num_chunks,
                                  *x.shape[2:]), 0, 1)
  return jax.tree.map(split, tree)


def merge_rays(tree):
  """Inverse of `split_rays`: [C, F, r, ...] -> [F, C * r, ...]."""
  def merge(x):
    x = jnp.swapaxes(x, 0, 1)
    return x.reshape(x.shape[0], -1, *x.shape[3:])
  return jax.tree.map(merge, tree)


def ray_chunk_problem(train_config):
  """Why the step's rays do not split into whole chunks, or None."""
  chunk = max(1, min(train_config.ray_chunk, train_config.rays_per_frame))
  if train_config.rays_per_frame % chunk:
    return (f'config.train.rays_per_frame={train_config.rays_per_frame} is '
            'not a multiple of config.train.ray_chunk='
            f'{train_config.ray_chunk}')
  return None


def num_ray_chunks(train_config):
  """How many sequential chunks the step's rays are processed in."""
  problem = ray_chunk_problem(train_config)
  if problem:
    raise errors.UserError(problem)
  return train_config.rays_per_frame // min(train_config.ray_chunk,
                                            train_config.rays_per_frame)


def render_frame_rays(model, params, rays, batch, keys, smooth, bounds=None):
  """Renders each frame's rays [F, r] with its own audio, pose, measured
  mouth opening and eye openness (read only with config.model's
  mouth_condition, eye_condition) and key (and
  with `bounds`, (near, far) [F, r], each ray's depth interval).

  One frame at a time (vmapped), so that its randomness depends only on its
  own key, not on how many frames share the device.
  """
  def one_frame(frame_rays, audio, c2w, mouth, eyes, key, frame_bounds):
    add_axis = lambda x: x[None]
    near, far = jax.tree.map(add_axis, frame_bounds or (None, None))
    outputs = model.apply(params, jax.tree.map(add_axis, frame_rays),
                          audio[None], smooth_audio=smooth, key=key,
                          c2w=c2w[None], mouth=mouth[None], near=near,
                          far=far, eyes=eyes[None])
    return jax.tree.map(lambda x: x[0], outputs)
  return jax.vmap(one_frame)(rays, batch['audio'], batch['c2w'],
                             batch['mouth_open'], batch['eye_openness'], keys,
                             bounds)


def loss_and_grads(loss_fn, params, rays, targets, render_keys, num_chunks):
  """This device's mean loss and gradients, over its rays in chunks.

  Args:
    loss_fn: (params, chunk rays, chunk targets, [F] chunk keys) -> (loss,
      terms); its terms include the per-ray 'sq_err_fine'.
    params: replicated parameters.
    rays, targets: [F, R, ...] this device's rays and targets.
    render_keys: [F] PRNG keys; chunk c renders with fold_in(key, c).
    num_chunks: sequential chunks (a scan accumulating gradients): a chunk's
      activations stay small enough to be cache-friendly, which on CPU
      doubles throughput against one big batch, and bound memory on
      accelerators.
  Returns:
    (per-chunk losses [num_chunks], gradients averaged over chunks, terms
    with leading [num_chunks]).
  """
  # Gradients of this device's own loss: parameters made device-varying.
  local_params = lax.pcast(params, parallel.DATA_AXIS, to='varying')
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def accumulate(grads, chunk):
    chunk_rays, chunk_targets, chunk_index = chunk
    keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(render_keys,
                                                           chunk_index)
    (loss, terms), chunk_grads = grad_fn(local_params, chunk_rays,
                                         chunk_targets, keys)
    return jax.tree.map(jnp.add, grads, chunk_grads), (loss, terms)

  zeros = jax.tree.map(jnp.zeros_like, local_params)
  grads, (chunk_losses, terms) = lax.scan(
      accumulate, zeros,
      (split_rays(rays, num_chunks), split_rays(targets, num_chunks),
       jnp.arange(num_chunks)))
  return chunk_losses, jax.tree.map(lambda g: g / num_chunks, grads), terms


def step_metrics(terms, sq_err_fine, targets, loss, grads, sampler,
                 class_loss, counts):
  """The step's metrics, averaged over devices: the loss terms, PSNR, the
  gradient norm and the semantic sampler's per-class statistics ([K])."""
  mean = lambda x: lax.pmean(x, parallel.DATA_AXIS)
  metrics = {k: mean(jnp.mean(v)) for k, v in terms.items()}
  # The loss of uniformly drawn pixels, whatever the sampler: rays weighted
  # by 1 / (H W p(pixel)).
  metrics['mse_uniform'] = mean(
      jnp.mean(sq_err_fine * targets['uniform_weight']))
  metrics['loss'] = loss
  metrics['psnr'] = metrics_lib.mse_to_psnr(metrics['mse_fine'])
  metrics['grad_norm'] = optax.tree.norm(grads)
  metrics['class_loss'] = class_loss
  metrics['class_loss_ema'] = sampler.class_loss_ema
  metrics['class_rays'] = counts
  metrics['class_share'] = counts / jnp.sum(counts)
  return metrics


def make_ray_interval(config, model, occupancy_bounds):
  """How the step bounds its rays in depth, chosen once when it is built.

  Returns `interval(state, batch, rays, smooth) -> (bounds, metrics)`:
  bounds (near, far) [F, R] or None for the model's [near, far]; metrics
  'occupancy_hit' (share of rays crossing an occupied cell) and
  'occupancy_interval' (their interval's mean share of [near, far]), empty
  for full sampling.  Kinds (config.occupancy.train_grid, with
  `occupancy_bounds`): 'none' fewer samples over [near, far]; 'clip' the
  state's clip-wide grid; 'step' each frame's grid measured in the step.
  """
  settings = config.occupancy

  def summary(hit, near, far):
    mean = lambda x: lax.pmean(jnp.mean(x), parallel.DATA_AXIS)
    hit_share = mean(hit.astype(jnp.float32))
    interval = mean(jnp.where(hit, (far - near) / (model.far - model.near),
                              0.0)) / jnp.maximum(hit_share, 1e-6)
    return {'occupancy_hit': hit_share, 'occupancy_interval': interval}

  def full(state, batch, rays, smooth):
    del state, batch, rays, smooth
    return None, {}

  def no_grid(state, batch, rays, smooth):
    del state, batch, smooth
    hit = jnp.ones(rays.origins.shape[:-1], bool)
    return None, summary(hit, model.near, model.far)

  def clip_grid(state, batch, rays, smooth):
    del batch, smooth
    near, far, hit = occupancy.train_bounds(state.occupancy, rays, settings,
                                            model.near, model.far)
    return (near, far), summary(hit, near, far)

  def step_grid(state, batch, rays, smooth):
    grids = occupancy.step_grids(
        model, state.params, batch['audio'], batch['c2w'],
        batch['mouth_open'], smooth, state.occupancy.box,
        settings.train_step_resolution, batch['eye_openness'])
    near, far, hit = jax.vmap(
        lambda grid, frame_rays: occupancy.tight_bounds(
            grid, frame_rays, settings, model.near, model.far))(grids, rays)
    return (near, far), summary(hit, near, far)

  if not occupancy_bounds:
    return full
  kinds = {'none': no_grid, 'clip': clip_grid, 'step': step_grid}
  if settings.train_grid not in kinds:
    raise errors.UserError(
        f'config.occupancy.train_grid must be one of {sorted(kinds)}, got '
        f'{settings.train_grid!r}')
  return kinds[settings.train_grid]


def next_state(state, grads, batch, targets, sq_err_fine, *, config, scene,
               tx):
  """(new TrainState, class_loss [K], class ray counts [K]): parameters
  updated by the device-averaged `grads`, samplers by this step's errors."""
  sampler, class_loss, counts = state.sampler.update(
      sq_err_fine, targets['class_id'], config.sampling.semantic_ema_decay,
      parallel.DATA_AXIS)
  errors_map = state.error_map
  if uses_error_map(config):
    errors_map = errors_map.update(
        batch['frame_id'], targets['pixels'], sq_err_fine, scene.height,
        scene.width, config.sampling.error_map_decay, parallel.DATA_AXIS)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  new_state = state.replace(step=state.step + 1,
                            params=optax.apply_updates(state.params, updates),
                            opt_state=opt_state, sampler=sampler,
                            error_map=errors_map)
  return new_state, class_loss, counts


def refined_rays(table, rows, fitted_c2w, pixels, batch, settings, scene):
  """(rays [F, r] through `pixels` [F, r, 2], the batch with corrected c2w,
  {'pose_penalty': scalar}): the frames' poses corrected by their `rows` of
  `table` [T, 6], differentiably."""
  c2w = pose_refinement.corrected_c2w(table, rows, fitted_c2w)
  rays = rays_lib.pixel_rays(c2w[:, None], pixels, scene.focal, scene.cx,
                             scene.cy)
  return rays, {**batch, 'c2w': c2w}, {
      'pose_penalty': pose_refinement.penalty(table[rows], settings)}


def update_poses(state, grads, settings):
  """(state with its train corrections updated, the field's gradients,
  metrics) from `grads` = (field's, corrections')."""
  grads, pose_grads = grads
  poses = pose_refinement.update(state.poses, pose_grads, settings,
                                 state.step)
  return state.replace(poses=poses), grads, {
      'pose_rotation_deg': pose_refinement.rotation_rms_deg(poses.train)}


def make_loss_fn(config, render_model, scene, body_classes):
  """`loss_fn(trainable, (chunk rays, bounds), chunk targets, keys, *, batch,
  smooth, rows, fitted_c2w) -> (loss, terms)` of `loss_and_grads`.

  `trainable`: the parameters, or with config.pose_refinement (parameters,
  the train corrections [T, 6]); then each chunk's rays are cast from the
  frames' fitted poses [F, 4, 4] corrected by their table `rows` [F].
  """
  poses = config.pose_refinement

  def loss_fn(trainable, chunk_rays_bounds, chunk_targets, keys, *, batch,
              smooth, rows, fitted_c2w):
    chunk_rays, chunk_bounds = chunk_rays_bounds
    params, frames, pose_loss = trainable, batch, {}
    if poses.enabled:
      params, table = trainable
      chunk_rays, frames, pose_loss = refined_rays(
          table, rows, fitted_c2w, chunk_targets['pixels'], batch, poses,
          scene)
    outputs = render_frame_rays(render_model, params, chunk_rays, frames,
                                keys, smooth, chunk_bounds)
    loss, terms = losses.total_loss(outputs, chunk_targets, config.train,
                                    body_classes)
    return loss + sum(pose_loss.values()), {**terms, **pose_loss}
  return loss_fn


def make_train_step(config, model, tx, scene, mesh, occupancy_bounds=False):
  """Returns jitted `train_step(state, batch, scene_arrays, key)`.

  `batch` holds global arrays sharded along 'data'; `state`, `scene_arrays`
  and `key` are replicated.  Returns (new state, metrics dict of replicated
  scalars / [K] per-class arrays).  With `occupancy_bounds` rays are sampled
  with config.occupancy.train_sample_fraction of the samples over the
  interval `make_ray_interval` gives them.
  """
  num_chunks = num_ray_chunks(config.train)
  render_model = model
  if occupancy_bounds:
    render_model = model.clone(**frame_renderer.tight_samples(
        model, config.occupancy.train_sample_fraction))
  ray_interval = make_ray_interval(config, model, occupancy_bounds)
  body_classes = (torso_warp.body_class_mask(scene.class_names)
                  if model.torso_warp else None)
  draw = functools.partial(draw_rays, config=config, scene=scene)
  poses = config.pose_refinement
  update = functools.partial(next_state, config=config, scene=scene, tx=tx)
  frame_loss = make_loss_fn(config, render_model, scene, body_classes)

  def per_device(state, batch, scene_arrays, key):
    sample_keys, render_keys = frame_keys(key, state.step,
                                          batch['image'].shape[0])
    fitted_c2w, rows = batch['c2w'], None
    if poses.enabled:
      rows = scene_arrays['pose_rows'][batch['frame_id']]
      batch = {**batch, 'c2w': pose_refinement.corrected_c2w(
          state.poses.train, rows, fitted_c2w)}
    loss_fn = functools.partial(frame_loss, batch=batch, rows=rows,
                                fitted_c2w=fitted_c2w)
    use_loss = state.step >= config.sampling.semantic_warmup_steps
    frame_errors = (state.error_map.rows(batch['frame_id'])
                    if uses_error_map(config) else None)
    rays, targets = draw(sample_keys, batch, scene_arrays,
                         state.sampler.class_loss_ema, use_loss, frame_errors)
    smooth = is_smoothing_on(state.step, config.train)
    bounds, interval_metrics = ray_interval(state, batch, rays, smooth)
    loss_fn = functools.partial(loss_fn, smooth=smooth)
    chunk_losses, grads, terms = loss_and_grads(
        loss_fn, (state.params, state.poses.train) if poses.enabled else
        state.params, (rays, bounds), targets, render_keys, num_chunks)
    grads = lax.pmean(grads, parallel.DATA_AXIS)
    if poses.enabled:
      state, grads, pose_metrics = update_poses(state, grads, poses)
      interval_metrics.update(pose_metrics)
    sq_err_fine = merge_rays(terms.pop('sq_err_fine'))
    new_state, class_loss, counts = update(state, grads, batch, targets,
                                           sq_err_fine)
    loss = lax.pmean(jnp.mean(chunk_losses), parallel.DATA_AXIS)
    metrics = step_metrics(terms, sq_err_fine, targets, loss, grads,
                           new_state.sampler, class_loss, counts)
    return new_state, {**metrics, **interval_metrics}

  step_fn = jax.shard_map(
      per_device, mesh=mesh,
      in_specs=(P(), P(parallel.DATA_AXIS), P(), P()),
      out_specs=(P(), P()))
  return jax.jit(step_fn, donate_argnums=0)
