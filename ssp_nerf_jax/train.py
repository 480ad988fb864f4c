"""Training: state, the data-parallel train step, and the loop.

The train step is one pure function, jitted over a `jax.shard_map` on the
('data',) mesh: each device takes its own frames, draws its own rays from
them (keys folded from the step and the frame's global index, so the rays do
not depend on how frames are spread over devices), renders them, and the
gradient of the device-averaged loss updates replicated parameters.
"""
import functools
import os
import time

import flax
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import optax
import tensorboardX
import tqdm

from ssp_nerf_jax import checkpoints
from ssp_nerf_jax import data
from ssp_nerf_jax import errors
from ssp_nerf_jax import evaluation
from ssp_nerf_jax import input_pipeline
from ssp_nerf_jax import losses
from ssp_nerf_jax import metrics as metrics_lib
from ssp_nerf_jax import parallel
from ssp_nerf_jax import preemption
from ssp_nerf_jax import ray_sampling
from ssp_nerf_jax import rays as rays_lib
from ssp_nerf_jax.models import portrait
from ssp_nerf_jax.models import torso_warp

P = jax.sharding.PartitionSpec


class NonFiniteLossError(errors.UserError):
  """Training diverged: the loss became NaN or infinite."""


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: flax.core.FrozenDict
  opt_state: optax.OptState
  # Running (EMA) photometric loss of each parsing class, over all devices'
  # rays; -1 until a class is first seen.  Drives the semantic sampler.
  class_loss_ema: jax.Array


def validate_config(config):
  """Raises UserError naming the first invalid training setting."""
  checks = [
      (config.sampling.strategy in ray_sampling.STRATEGIES,
       f'config.sampling.strategy={config.sampling.strategy!r} is not one of '
       f'{ray_sampling.STRATEGIES}'),
      (0.0 <= config.sampling.face_rect_fraction <= 1.0,
       'config.sampling.face_rect_fraction must be in [0, 1], got '
       f'{config.sampling.face_rect_fraction}'),
      (0.0 <= config.sampling.semantic_floor <= 1.0,
       'config.sampling.semantic_floor must be in [0, 1], got '
       f'{config.sampling.semantic_floor}'),
      (0.0 <= config.sampling.semantic_ema_decay < 1.0,
       'config.sampling.semantic_ema_decay must be in [0, 1), got '
       f'{config.sampling.semantic_ema_decay}'),
      (0.0 <= config.sampling.semantic_uniform_mix <= 1.0,
       'config.sampling.semantic_uniform_mix must be in [0, 1], got '
       f'{config.sampling.semantic_uniform_mix}'),
      (config.sampling.semantic_size_exponent >= 0.0,
       'config.sampling.semantic_size_exponent must be >= 0, got '
       f'{config.sampling.semantic_size_exponent}'),
      (config.sampling.semantic_power >= 0.0,
       'config.sampling.semantic_power must be >= 0, got '
       f'{config.sampling.semantic_power}'),
      (config.model.dtype in ('float32', 'bfloat16'),
       f"config.model.dtype={config.model.dtype!r} is not 'float32' or "
       "'bfloat16'"),
  ]
  for name in ('train.num_steps', 'train.rays_per_frame', 'train.ray_chunk',
               'train.log_every',
               'train.eval_every', 'train.checkpoint_every',
               'train.keep_checkpoints', 'data.frames_per_device',
               'render.num_coarse', 'render.chunk', 'model.depth',
               'model.width'):
    section, field = name.split('.')
    value = config[section][field]
    checks.append((isinstance(value, int) and value > 0,
                   f'config.{name} must be a positive integer, got {value!r}'))
  for ok, message in checks:
    if not ok:
      raise errors.UserError(message)


def make_optimizer(train_config) -> optax.GradientTransformation:
  """Adam with AD-NeRF's decay: lr * rate ** (step / decay_steps)."""
  schedule = optax.exponential_decay(
      init_value=train_config.lr,
      transition_steps=train_config.lr_decay_steps,
      decay_rate=train_config.lr_decay_rate)
  return optax.adam(schedule)


def make_model(config, scene) -> portrait.PortraitNeRF:
  near, far = ray_bounds(config, scene)
  return portrait.PortraitNeRF.from_config(
      config, scene.num_classes, near, far,
      reference_c2w=(None if scene.reference_c2w is None else
                     np.reshape(scene.reference_c2w, (4, 4))))


def ray_bounds(config, scene):
  """(near, far): the config's when set, else the dataset's."""
  near = config.render.near if config.render.near > 0 else scene.near
  far = config.render.far if config.render.far > 0 else scene.far
  return float(near), float(far)


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
                    class_loss_ema=-jnp.ones((scene.num_classes,),
                                             jnp.float32))


def abstract_state(config, model, scene, tx, mesh):
  """The shapes, dtypes and (replicated) shardings of `init_state`'s state,
  traced, not computed: what a checkpoint is restored into."""
  sharding = parallel.replicated(mesh)
  return jax.tree.map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
      jax.eval_shape(lambda: init_state(config, model, scene, tx)))


def gather_pixels(image, pixels):
  """image [H, W, ...] at pixels [R, 2] (row, col) -> [R, ...]."""
  return image[pixels[:, 0], pixels[:, 1]]


def draw_rays(frame_keys, batch, scene_arrays, class_loss, use_loss, *,
              config, scene):
  """Samples pixels per frame and gathers their targets.

  Args:
    frame_keys: [F] PRNG keys, one per frame.
    batch: dict of this device's frames (leading axis F).
    scene_arrays: dict with 'background' float32 [H, W, 3].
    class_loss: float [K] running per-class loss (semantic sampler).
    use_loss: bool scalar: the semantic sampler's warm-up is over.
  Returns:
    (rays with leading [F, R], dict of targets: 'rgb' [F, R, 3] in [0, 1],
    'class_id' int32 [F, R], 'background' [F, R, 3], 'uniform_weight'
    [F, R] the rays' importance weights, see `ray_sampling`).
  """
  height, width = scene.height, scene.width
  num_rays = config.train.rays_per_frame

  def one_frame(key, frame):
    pixels, uniform_weight = ray_sampling.sample_pixels(
        key, config.sampling, num_rays, height, width, frame, class_loss,
        use_loss)
    rays = rays_lib.pixel_rays(frame['c2w'], pixels, scene.focal, scene.cx,
                               scene.cy)
    targets = {
        'rgb': gather_pixels(frame['image'], pixels).astype(jnp.float32) / 255,
        'class_id': gather_pixels(frame['parsing'], pixels).astype(jnp.int32),
        'background': gather_pixels(scene_arrays['background'], pixels),
        'uniform_weight': uniform_weight,
    }
    return rays, targets

  frames = {k: batch[k] for k in ('image', 'parsing', 'c2w', 'face_rect')}
  return jax.vmap(one_frame)(frame_keys, frames)


def split_rays(tree, num_chunks):
  """[F, R, ...] leaves -> [num_chunks, F, R / num_chunks, ...]."""
  def split(x):
    f, r = x.shape[:2]
    return jnp.swapaxes(x.reshape(f, num_chunks, r // num_chunks,
                                  *x.shape[2:]), 0, 1)
  return jax.tree.map(split, tree)


def merge_rays(tree):
  """Inverse of `split_rays`: [num_chunks, F, r, ...] -> [F, num_chunks*r, ...]."""
  def merge(x):
    x = jnp.swapaxes(x, 0, 1)
    return x.reshape(x.shape[0], -1, *x.shape[3:])
  return jax.tree.map(merge, tree)


def num_ray_chunks(train_config):
  """How many sequential chunks the step's rays are processed in."""
  chunk = min(train_config.ray_chunk, train_config.rays_per_frame)
  if train_config.rays_per_frame % chunk:
    raise errors.UserError(
        f'config.train.rays_per_frame={train_config.rays_per_frame} is not a '
        f'multiple of config.train.ray_chunk={train_config.ray_chunk}')
  return train_config.rays_per_frame // chunk


def update_class_loss_ema(ema, class_loss, counts, decay):
  """EMA of per-class losses; classes without rays this step keep theirs,
  and a class seen for the first time starts at its measured loss."""
  updated = jnp.where(ema < 0, class_loss,
                      decay * ema + (1.0 - decay) * class_loss)
  return jnp.where(counts > 0, updated, ema)


def make_train_step(config, model, tx, scene, mesh):
  """Returns jitted `train_step(state, batch, scene_arrays, key)`.

  `batch` holds global arrays sharded along 'data'; `state`, `scene_arrays`
  and `key` are replicated.  Returns (new state, metrics dict of replicated
  scalars / [K] per-class arrays).

  Each device renders its rays in `num_ray_chunks` sequential chunks (a
  scan accumulating gradients): the activations of a chunk stay small
  enough to be cache- and memory-friendly, which on CPU doubles throughput
  against one big batch, and bounds memory on accelerators.
  """
  num_classes = scene.num_classes
  body_classes = torso_warp.body_class_mask(scene.class_names)
  num_chunks = num_ray_chunks(config.train)
  draw = functools.partial(draw_rays, config=config, scene=scene)

  def per_device(state, batch, scene_arrays, key):
    num_frames = batch['image'].shape[0]
    first_frame = lax.axis_index(parallel.DATA_AXIS) * num_frames
    step_key = jax.random.fold_in(key, state.step)
    frame_keys = jax.vmap(lambda i: jax.random.fold_in(step_key, i))(
        first_frame + jnp.arange(num_frames))
    sample_keys, render_keys = jnp.split(
        jax.vmap(jax.random.split)(frame_keys), 2, axis=1)
    use_loss = state.step >= config.sampling.semantic_warmup_steps
    rays, targets = draw(sample_keys[:, 0], batch, scene_arrays,
                         state.class_loss_ema, use_loss)
    smooth = state.step >= config.train.audio_smoothing_start

    def render_frame(params, frame_rays, audio, c2w, key):
      # One frame at a time (vmapped) so that its randomness depends only on
      # its own key, not on how many frames share the device.
      add_axis = lambda x: x[None]
      outputs = model.apply(params, jax.tree.map(add_axis, frame_rays),
                            audio[None], smooth_audio=smooth, key=key,
                            c2w=c2w[None])
      return jax.tree.map(lambda x: x[0], outputs)

    def chunk_loss(params, chunk):
      chunk_rays, chunk_targets, chunk_index = chunk
      keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(
          render_keys[:, 0], chunk_index)
      outputs = jax.vmap(render_frame, in_axes=(None, 0, 0, 0, 0))(
          params, chunk_rays, batch['audio'], batch['c2w'], keys)
      loss, terms = losses.render_losses(outputs, chunk_targets,
                                         config.train.semantic_weight)
      if model.torso_warp:
        warp_terms = losses.warp_losses(outputs, chunk_targets['class_id'],
                                        body_classes)
        loss += config.train.warp_blend_weight * (
            warp_terms['blend_coarse'] + warp_terms['blend_fine'])
        loss += config.train.warp_offset_weight * (
            warp_terms['offset_coarse'] + warp_terms['offset_fine'])
        terms.update(warp_terms)
      return loss, terms

    # Gradients of this device's own loss (parameters made device-varying),
    # summed over chunks, then averaged over devices once.
    local_params = lax.pcast(state.params, parallel.DATA_AXIS, to='varying')
    grad_fn = jax.value_and_grad(chunk_loss, has_aux=True)

    def accumulate(grads, chunk):
      (loss, terms), chunk_grads = grad_fn(local_params, chunk)
      return jax.tree.map(jnp.add, grads, chunk_grads), (loss, terms)

    zeros = jax.tree.map(jnp.zeros_like, local_params)
    grads, (chunk_losses, terms) = lax.scan(
        accumulate, zeros,
        (split_rays(rays, num_chunks), split_rays(targets, num_chunks),
         jnp.arange(num_chunks)))
    grads = lax.pmean(jax.tree.map(lambda g: g / num_chunks, grads),
                      parallel.DATA_AXIS)
    loss = lax.pmean(jnp.mean(chunk_losses), parallel.DATA_AXIS)
    sq_err_fine = merge_rays(terms.pop('sq_err_fine'))
    terms = jax.tree.map(jnp.mean, terms)

    err_sum, counts = losses.class_sums(sq_err_fine, targets['class_id'],
                                        num_classes)
    err_sum, counts = lax.psum((err_sum, counts), parallel.DATA_AXIS)
    class_loss = err_sum / jnp.maximum(counts, 1.0)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    new_state = TrainState(
        step=state.step + 1,
        params=optax.apply_updates(state.params, updates),
        opt_state=opt_state,
        class_loss_ema=update_class_loss_ema(
            state.class_loss_ema, class_loss, counts,
            config.sampling.semantic_ema_decay))
    metrics = {k: lax.pmean(v, parallel.DATA_AXIS) for k, v in terms.items()}
    # The loss of uniformly drawn pixels, whatever the sampler: rays weighted
    # by 1 / (H W p(pixel)).
    metrics['mse_uniform'] = lax.pmean(
        jnp.mean(sq_err_fine * targets['uniform_weight']), parallel.DATA_AXIS)
    metrics['loss'] = loss
    metrics['psnr'] = metrics_lib.mse_to_psnr(metrics['mse_fine'])
    metrics['grad_norm'] = optax.tree.norm(grads)
    metrics['class_loss'] = class_loss
    metrics['class_loss_ema'] = new_state.class_loss_ema
    metrics['class_rays'] = counts
    metrics['class_share'] = counts / jnp.sum(counts)
    return new_state, metrics

  step_fn = jax.shard_map(
      per_device, mesh=mesh,
      in_specs=(P(), P(parallel.DATA_AXIS), P(), P()),
      out_specs=(P(), P()))
  return jax.jit(step_fn, donate_argnums=0)


def check_finite(step, metrics):
  loss = float(metrics['loss'])
  if not np.isfinite(loss):
    raise NonFiniteLossError(
        f'loss became {loss} at step {step}; training stopped (try a lower '
        'config.train.lr); the last checkpoint is unaffected')
  return loss


def write_summaries(writer, step, metrics, class_names):
  for name, value in metrics.items():
    value = np.asarray(value)
    if value.ndim == 0:
      writer.add_scalar(f'train/{name}', float(value), step)
    else:
      for k, class_name in enumerate(class_names):
        writer.add_scalar(f'train_{name}/{class_name}', float(value[k]), step)


def train_and_evaluate(config, workdir):
  """Trains `config` in `workdir`, resuming from its latest checkpoint.

  With several processes (see parallel.initialize_distributed) every
  process calls this alike; only process 0 writes logs, summaries, images
  and the config, and orbax writes the checkpoints collectively.

  Returns:
    The final train state (replicated on the mesh).
  Raises:
    preemption.Preempted: a SIGTERM arrived; the state at the step reached
      was saved first.
  """
  validate_config(config)
  # A video is preprocessed (once) here, so that the config saved in the
  # workdir names its processed folder and renders need not redo it.
  config = data.resolve_video(config)
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise errors.UserError(f'cannot create --workdir {workdir}: {e}') from e
  with preemption.Watcher() as watcher:
    return _train(config, workdir, watcher)


def _train(config, workdir, watcher):
  """The body of `train_and_evaluate`, stopping when `watcher` says so."""
  is_main = jax.process_index() == 0
  builder = data.build_dataset(config)
  scene = input_pipeline.load_scene_info(builder)
  mesh = parallel.make_data_mesh()
  model = make_model(config, scene)
  tx = make_optimizer(config.train)

  # Restored straight into the replicated layout, so that with several
  # processes every one reads the checkpoint into its own devices.  Fresh
  # parameters are computed (compiled) only without a checkpoint.
  manager = checkpoints.create_manager(workdir, config)
  start_step, state = checkpoints.restore_latest(
      manager, abstract_state(config, model, scene, tx, mesh))
  saver = checkpoints.Saver(manager)
  if state is None:
    state = parallel.replicate(init_state(config, model, scene, tx), mesh)
  elif is_main:
    tqdm.tqdm.write(f'Resuming from the checkpoint at step {start_step} in '
                    f'{workdir}')
  if is_main:
    checkpoints.write_config(workdir, config)
  if start_step >= config.train.num_steps:
    return state  # trained already: nothing to compile
  scene_arrays = parallel.replicate(
      {'background': jnp.asarray(scene.background, jnp.float32)}, mesh)
  key = parallel.replicate(jax.random.PRNGKey(config.seed), mesh)

  evaluator = evaluation.Evaluator(config, model, scene, builder, mesh)
  batches = input_pipeline.create_train_iterator(config, builder, mesh,
                                                 start_step=start_step)
  first_batch = next(batches)
  # Compiled ahead, then every process waits for the others: the first
  # step's collectives then start together (see parallel.wait_for_all_...).
  train_step = make_train_step(config, model, tx, scene, mesh).lower(
      state, first_batch, scene_arrays, key).compile()
  parallel.wait_for_all_processes('train_step_compiled')
  writer = (tensorboardX.SummaryWriter(os.path.join(workdir, 'tb'))
            if is_main else None)
  num_steps = config.train.num_steps
  global_rays = config.train.rays_per_frame * global_batch_size(config)
  bar = tqdm.tqdm(total=num_steps, initial=start_step, disable=not is_main,
                  dynamic_ncols=True, desc='train')
  window_steps, window_time = 0, 0.0  # train-step time since the last log
  # Train-step time of this run without its first (warm-up) step.
  timed_steps, timed_time = 0, 0.0
  preempted_at = None
  try:
    for step in range(start_step + 1, num_steps + 1):
      tick = time.perf_counter()
      batch = first_batch if step == start_step + 1 else next(batches)
      state, metrics = train_step(state, batch, scene_arrays, key)
      # Reading the loss every step blocks on it: it catches divergence
      # before a bad state is saved, and keeps simulated-device collectives
      # in step.
      loss = check_finite(step, metrics)
      seconds = time.perf_counter() - tick
      window_time += seconds
      window_steps += 1
      if step > start_step + 1:
        timed_steps, timed_time = timed_steps + 1, timed_time + seconds
      bar.update(1)
      if step % config.train.log_every == 0 or step == num_steps:
        rays_per_s = global_rays * window_steps / max(window_time, 1e-9)
        window_steps, window_time = 0, 0.0
        metrics = jax.device_get(metrics)
        bar.set_postfix(loss=f'{loss:.4f}',
                        psnr=f'{float(metrics["psnr"]):.2f}',
                        rays_s=f'{rays_per_s:.0f}')
        if writer:
          write_summaries(writer, step, metrics, scene.class_names)
          writer.add_scalar('train/rays_per_s', rays_per_s, step)
      if watcher.reached(step):
        # Before eval: the grace period before the kill is short.
        saver.save(step, state, force=True)
        preempted_at = step
        break
      if step % config.train.eval_every == 0 or step == num_steps:
        step_time = timed_time / timed_steps if timed_steps else None
        eval_metrics = evaluator.evaluate(state.params, step, workdir,
                                          extra={'step_time_s': step_time})
        if writer:
          bar.write(f'step {step}: val psnr={eval_metrics["psnr"]:.2f} '
                    f'ssim={eval_metrics["ssim"]:.4f} '
                    f'miou={eval_metrics["miou"]:.4f}')
          for name in ('psnr', 'ssim', 'miou'):
            writer.add_scalar(f'eval/{name}', eval_metrics[name], step)
      saver.save(step, state, force=step == num_steps)
  finally:
    bar.close()
    batches.close()
    saver.finish()
    if writer:
      writer.close()
  if preempted_at is not None:
    raise preemption.Preempted(preempted_at, workdir)
  return state


def global_batch_size(config):
  """Frames per global step."""
  return config.data.frames_per_device * jax.device_count()
