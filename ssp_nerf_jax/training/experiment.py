"""A run's parts, made from its config in one place: `setup(config, mesh)`.

Training, offline rendering, the benchmarks and the tests all build the
same things from a config: the dataset's builder and scene constants, the
model, the optimizer, the train state (fresh, or the shapes a checkpoint is
restored into) and the jitted train step.  `setup` makes them; nothing
else calls the constructors.
"""
import dataclasses
import functools
from typing import Any, Optional

from absl import logging
import flax
import jax
import numpy as np
import optax

from ssp_nerf_jax.data import builds
from ssp_nerf_jax.data import input_pipeline
from ssp_nerf_jax.data import scene as scene_lib
from ssp_nerf_jax.models import mouth_readout
from ssp_nerf_jax.models import mouth_region
from ssp_nerf_jax.models import portrait
from ssp_nerf_jax.runtime import errors
from ssp_nerf_jax.runtime import parallel
from ssp_nerf_jax.training import error_map
from ssp_nerf_jax.training import pose_refinement
from ssp_nerf_jax.training import ray_sampling
from ssp_nerf_jax.training import train_step


# Train frames the mouth region is triangulated from: enough to average
# out parsing noise, few enough to decode in a moment at 450 px.
MOUTH_REGION_FRAMES = 128


@dataclasses.dataclass(frozen=True)
class Experiment:
  """What `setup` builds from a config.

  Attributes:
    config: the run config.
    mesh: the ('data',) mesh the state and step live on.
    builder: the prepared dataset builder (None for a hand-made scene).
    scene: the dataset's constants (`scene.SceneInfo`).
    model: the `PortraitNeRF`.
    tx: the optimizer.
  """
  config: Any
  mesh: jax.sharding.Mesh
  builder: Any
  scene: scene_lib.SceneInfo
  model: portrait.PortraitNeRF
  tx: optax.GradientTransformation

  def init_state(self) -> train_step.TrainState:
    """Fresh parameters and optimizer state, replicated on the mesh."""
    return parallel.replicate(self.host_init_state(), self.mesh)

  def host_init_state(self) -> train_step.TrainState:
    """Fresh parameters and optimizer state on the host (unreplicated);
    with config.model.mouth_condition, the audio -> mouth read-out fitted
    on the train split (`mouth_readout`), and with mouth_region_radius the
    mouth's place (`mouth_region`); with eye_condition the eyes' (`eye_region`)."""
    state = self._initial_values()
    model = self.model
    if not (model.mouth_condition or model.eye_condition) or (
        self.builder is None):
      return state  # a hand-made scene has no audio to fit: read-out 0.
    params = flax.core.unfreeze(state.params)
    if model.mouth_condition:
      params['params']['mouth_readout'] = self.mouth_readout(
          params['params']['mouth_readout'])
    if model.mouth_local:
      params['params']['mouth_region'] = self.mouth_region(
          params['params']['mouth_region'])
    if model.eye_condition:
      params['params']['eye_region'] = self.eye_region(
          params['params']['eye_region'])
    return state.replace(params=type(state.params)(params))

  def mouth_readout(self, initial: dict) -> dict:
    """The read-out fitted on the train split, as `initial`'s arrays
    (`fitted_params`)."""
    audio = input_pipeline.load_feature(self.builder, 'train', 'audio')
    parallel.progress(
        f'fitting the audio -> mouth read-out on {len(audio)} train frames x '
        f'{np.prod(audio.shape[2:])} audio features ...')
    fitted = mouth_readout.fit_readout(
        audio, input_pipeline.load_feature(self.builder, 'train', 'mouth_open'),
        self.model.mouth_quantile_knots)
    logging.info('mouth read-out: ridge strength %g, cross-validated r %.3f '
                 'on the train frames', fitted['strength'], fitted['r_cv'])
    return fitted_params(fitted, initial)

  def mouth_region(self, initial: dict) -> dict:
    """Where the mouth is (`mouth_region.fit_mouth_region`) from up to
    MOUTH_REGION_FRAMES train frames spread over the split, as `initial`'s
    arrays (`fitted_params`)."""
    fitted = mouth_region.fit_mouth_region(
        *self.region_frames(), self.scene, self.model.mouth_region_radius)
    logging.info('mouth region: centre %s, width %.4f, radius %.4f (head '
                 'units), from %d frames', np.round(fitted['centre'], 4),
                 fitted['width'], fitted['radius'], fitted['frames'])
    return fitted_params(fitted, initial)

  def region_frames(self):
    """(parsing [N, H, W], c2w [N, 4, 4]) of up to MOUTH_REGION_FRAMES train
    frames spread over the split: what regions are fitted on."""
    poses = input_pipeline.load_poses(self.builder, 'train')
    frames = np.unique(np.linspace(0, len(poses) - 1, MOUTH_REGION_FRAMES)
                       .round().astype(int))
    return (input_pipeline.load_parsing(self.builder, 'train', frames),
            poses[frames])

  def eye_region(self, initial: dict) -> dict:
    """Where the eyes are (as `mouth_region`, from the eye classes) and the
    train split's closed and open levels of eye openness, as `initial`'s
    arrays; left at `initial` without measured openness (the eye input is
    then zero: the field trains as without it)."""
    openness = input_pipeline.load_feature(self.builder, 'train',
                                           'eye_openness')
    levels = mouth_region.openness_levels(openness)
    if levels is None:
      logging.warning('config.model.eye_condition: the train split has no '
                      'eye_openness; the field gets no eye input')
      return initial
    fitted = mouth_region.fit_mouth_region(
        *self.region_frames(), self.scene, self.model.eye_region_radius,
        mouth_region.EYE_CLASSES, 'eye_region_radius')
    fitted.update(levels)
    logging.info('eye region: centre %s, radius %.4f (head units); openness '
                 'closed %.3f, open %.3f', np.round(fitted['centre'], 4),
                 fitted['radius'], fitted['closed'], fitted['open'])
    return fitted_params(fitted, initial)

  def _initial_values(self) -> train_step.TrainState:
    return train_step.init_state(self.config, self.model, self.scene, self.tx)

  def abstract_state(self, sharding=None):
    """The train state's shapes and dtypes with `sharding` (default
    replicated on the mesh): what a checkpoint is restored into.

    Traced, not computed: compiling model.init only for its shapes took 12 s
    of a tiny-config render's start on 2 CPU cores (tracing: 0.4 s).
    """
    sharding = sharding or parallel.replicated(self.mesh)
    return jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
        jax.eval_shape(self._initial_values))

  @functools.cached_property
  def train_step(self):
    """The jitted train step (`train_step.make_train_step`)."""
    return train_step.make_train_step(self.config, self.model, self.tx,
                                      self.scene, self.mesh)

  @functools.cached_property
  def occupancy_train_step(self):
    """The jitted train step sampling each ray over its interval of the
    state's occupancy grid (config.occupancy.train)."""
    return train_step.make_train_step(self.config, self.model, self.tx,
                                      self.scene, self.mesh,
                                      occupancy_bounds=True)

  def state_defaults(self) -> dict:
    """{field: host value} of the train state's fields that checkpoints
    saved by older code lack (see `checkpoints.restore_step`)."""
    return {'poses': jax.tree.map(np.asarray, pose_refinement.create(
        self.config.pose_refinement, self.scene.num_train,
        self.scene.num_val)),
            'occupancy': jax.tree.map(np.asarray, train_step.init_grid(
        self.config, self.model, self.scene))}

  def scene_arrays(self, pose_rows=None):
    """The step's replicated per-scene arrays: the background plate and,
    with config.pose_refinement, `pose_rows` (default the train split's,
    `pose_refinement.pose_rows`)."""
    arrays = {'background': np.asarray(self.scene.background, np.float32)}
    if self.config.pose_refinement.enabled:
      if pose_rows is None:
        pose_rows = pose_refinement.pose_rows(self.frame_ids('train'))
      arrays['pose_rows'] = pose_rows
    return parallel.replicate(arrays, self.mesh)

  def frame_ids(self, split):
    """int32 [N] frame_id of a split's frames, in order (0 .. N-1 for a
    hand-made scene)."""
    if self.builder is None:
      return np.arange(getattr(self.scene, f'num_{split}'), dtype=np.int32)
    return input_pipeline.load_feature(self.builder, split, 'frame_id')

  @functools.cached_property
  def val_pose_step(self):
    """(train step refining val poses with the field frozen, its config),
    see `pose_refinement.refine_val_poses`."""
    val_config = pose_refinement.val_step_config(self.config)
    return train_step.make_train_step(
        val_config, self.model, pose_refinement.FROZEN_FIELD, self.scene,
        self.mesh, occupancy_bounds=self.config.occupancy.train), val_config


def fitted_params(fitted: dict, initial: dict) -> dict:
  """`initial`'s parameters replaced by the fitted values of the same
  names, in their dtypes; process 0's values, so that every replica is
  bit-identical."""
  return {name: parallel.from_main_process(fitted[name]).astype(
      np.asarray(value).dtype) for name, value in initial.items()}


def setup(config, mesh: Optional[jax.sharding.Mesh] = None, *,
          scene: Optional[scene_lib.SceneInfo] = None) -> Experiment:
  """Builds (or finds) the dataset and makes the run's parts.

  Args:
    config: a validated run config (see `validate_config`).
    mesh: default all devices of all processes.
    scene: use these scene constants instead of a dataset's (benchmarks
      and tests on random frames); then no dataset is built.
  """
  mesh = mesh or parallel.make_data_mesh()
  builder = None
  if scene is None:
    builder = builds.build_dataset(config)
    scene = scene_lib.load_scene_info(builder)
    if config.sampling.strategy == 'error_map':
      error_map.check_frame_ids(
          input_pipeline.load_feature(builder, 'train', 'frame_id'),
          scene.num_train)
  return Experiment(config=config, mesh=mesh, builder=builder, scene=scene,
                    model=make_model(config, scene),
                    tx=make_optimizer(config.train))


def make_optimizer(train_config) -> optax.GradientTransformation:
  """Adam with AD-NeRF's decay: lr * rate ** (step / decay_steps)."""
  schedule = optax.exponential_decay(
      init_value=train_config.lr,
      transition_steps=train_config.lr_decay_steps,
      decay_rate=train_config.lr_decay_rate)
  return optax.adam(schedule)


def make_model(config, scene) -> portrait.PortraitNeRF:
  near, far = resolve_ray_bounds(config, scene)
  return portrait.PortraitNeRF.from_config(
      config, scene.num_classes, near, far,
      reference_c2w=(None if scene.reference_c2w is None else
                     np.reshape(scene.reference_c2w, (4, 4))))


def resolve_ray_bounds(config, scene):
  """(near, far): the config's where set, else the dataset's."""
  near = portrait.configured_bound(config.render.near)
  far = portrait.configured_bound(config.render.far)
  return (float(scene.near if near is None else near),
          float(scene.far if far is None else far))


def validate_config(config):
  """Raises UserError naming the first invalid training setting."""
  for ok, message in _config_checks(config):
    if not ok:
      raise errors.UserError(message)


def _config_checks(config):
  """(holds, message) pairs of `validate_config`."""
  sampling = config.sampling
  checks = [
      (sampling.strategy in ray_sampling.STRATEGIES,
       f'config.sampling.strategy={sampling.strategy!r} is not one of '
       f'{ray_sampling.STRATEGIES}'),
      (config.model.dtype in ('float32', 'bfloat16'),
       f"config.model.dtype={config.model.dtype!r} is not 'float32' or "
       "'bfloat16'"),
  ]
  for name, low, high in (('face_rect_fraction', 0, 1),
                          ('semantic_floor', 0, 1),
                          ('semantic_uniform_mix', 0, 1),
                          ('error_map_uniform_mix', 0, 1)):
    checks.append((low <= sampling[name] <= high,
                   f'config.sampling.{name} must be in [{low}, {high}], got '
                   f'{sampling[name]}'))
  box_share = sampling.mouth_share + sampling.eye_share
  checks.append((box_share == 0 or sampling.strategy == 'semantic',
                 'config.sampling.mouth_share and eye_share are shares of the '
                 "semantic sampler's rays: set config.sampling.strategy="
                 "'semantic' or both to 0"))
  checks.append((min(sampling.mouth_share, sampling.eye_share) >= 0.0 and
                 box_share < 1.0 and
                 box_share <= 1.0 - sampling.semantic_uniform_mix,
                 'config.sampling.mouth_share + eye_share come out of the '
                 "semantic sampler's loss-driven part: each >= 0, their sum "
                 f'at most 1 - semantic_uniform_mix='
                 f'{sampling.semantic_uniform_mix} and below 1, got '
                 f'{sampling.mouth_share} + {sampling.eye_share}'))
  checks.append((0.0 <= sampling.semantic_ema_decay < 1.0,
                 'config.sampling.semantic_ema_decay must be in [0, 1), got '
                 f'{sampling.semantic_ema_decay}'))
  checks.append((0.0 <= sampling.error_map_decay < 1.0,
                 'config.sampling.error_map_decay must be in [0, 1), got '
                 f'{sampling.error_map_decay}'))
  for name in ('semantic_size_exponent', 'semantic_power',
               'unbiased_max_weight'):
    checks.append((sampling[name] >= 0.0,
                   f'config.sampling.{name} must be >= 0, got '
                   f'{sampling[name]}'))
  for name in ('train.num_steps', 'train.rays_per_frame', 'train.ray_chunk',
               'train.log_every', 'train.eval_every', 'train.checkpoint_every',
               'train.keep_checkpoints', 'data.frames_per_device',
               'render.num_coarse', 'render.chunk', 'model.depth',
               'model.width', 'sampling.error_map_resolution'):
    section, field = name.split('.')
    value = config[section][field]
    checks.append((isinstance(value, int) and value > 0,
                   f'config.{name} must be a positive integer, got {value!r}'))
  chunk_problem = train_step.ray_chunk_problem(config.train)
  checks.append((chunk_problem is None, chunk_problem))
  checks.append((not config.model.eye_condition or
                 config.model.eye_region_radius > 0,
                 'config.model.eye_region_radius must be > 0 with '
                 f'eye_condition, got {config.model.eye_region_radius}'))
  return checks
