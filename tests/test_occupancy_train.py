"""Training with occupancy (config.occupancy.train): the per-step grids,
the clip-wide grid, its frames, the occupancy train step, checkpoints with
and without a grid."""
import dataclasses
import json
import os
import shutil

import jax
import jax.numpy as jnp
import flax
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from configs import default
from configs import tiny
from ssp_nerf_jax.benchmarks import fake_data
from ssp_nerf_jax.data import input_pipeline
from ssp_nerf_jax.offline import trained as trained_lib
from ssp_nerf_jax.rendering import occupancy
from ssp_nerf_jax.rendering import rays as rays_lib
from ssp_nerf_jax.runtime import checkpoint_manifest
from ssp_nerf_jax.runtime import checkpoints
from ssp_nerf_jax.runtime import parallel
from ssp_nerf_jax.training import experiment
from ssp_nerf_jax.training import train

# The analytic stand-in model of the render-side tests.
from test_occupancy import BOX, Spheres  # pylint: disable=g-import-not-at-top,g-bad-import-order


def sphere_frames(centres):
  audio = np.zeros((len(centres), 8, 16, 8), np.float32)
  audio[:, 0, 0, 0] = centres
  return np.tile(np.eye(4, dtype=np.float32), (len(centres), 1, 1)), audio


def test_clip_grid_is_the_largest_density_same_on_one_and_four_devices():
  assert jax.device_count() == 4  # tests/conftest.py simulates four
  settings = default.get_config().occupancy
  settings.points_per_call = 1000  # 16^3 cells on 4 devices: padded
  c2w, audio = sphere_frames([-0.5, 0.5])
  grids = []
  for devices in (jax.devices()[:1], jax.devices()):
    measure = occupancy.FrameGrids(Spheres(), settings, BOX,
                                   parallel.make_data_mesh(devices),
                                   resolution=16)
    grids.append(jax.device_get(measure.largest(None, c2w, audio, True)))
    singles = [jax.device_get(measure(None, c2w[i], audio[i], True))
               for i in range(2)]
  np.testing.assert_array_equal(grids[0].density, grids[1].density)
  np.testing.assert_array_equal(
      grids[1].density, np.maximum(singles[0].density, singles[1].density))
  assert occupancy.measured(grids[1])
  assert not occupancy.measured(occupancy.create(4, BOX))

  # Rays along z through either sphere get a tight interval; rays between
  # them hit nothing and keep [near, far].
  settings.march_steps = 64
  x = np.array([-0.5, 0.5, 0.0, 0.9], np.float32)
  origins = np.stack([x, np.zeros(4), np.full(4, 0.95)], -1).astype(
      np.float32)
  directions = np.tile(np.array([[0.0, 0.0, -1.0]], np.float32), (4, 1))
  rays = rays_lib.Rays(origins=origins, directions=directions,
                       viewdirs=directions)
  near, far, hit = jax.device_get(
      occupancy.train_bounds(grids[1], rays, settings, 0.0, 1.9))
  np.testing.assert_array_equal(hit, [True, True, False, False])
  np.testing.assert_array_equal(near[2:], 0.0)
  np.testing.assert_array_equal(far[2:], np.float32(1.9))
  # The spheres span depths 0.65..1.25 (z from 0.3 to -0.3); a cell of
  # margin and a march step each side.
  assert np.all(near[:2] > 0.45) and np.all(near[:2] < 0.65)
  assert np.all(far[:2] > 1.25) and np.all(far[:2] < 1.45)


class MouthSpheres(Spheres):
  """`Spheres` called as the train step calls its model (with mouths, its
  one field as the coarse one)."""

  def apply(self, params, points, audio, smooth, c2w, mouth=None,
            coarse_only=False, method=None, eyes=None):
    del mouth, coarse_only, eyes
    return super().apply(params, points, audio, smooth, c2w, method)


def test_step_grids_are_each_frames_own_and_stop_rays_behind_the_surface():
  """Each frame's grid (`step_grids`) is what `FrameGrids` measures for it
  alone; a ray through its sphere is sampled from just before the sphere
  to a cell behind where it turns opaque, rays through empty space keep
  [near, far]."""
  settings = default.get_config().occupancy
  settings.points_per_call = 1000
  settings.march_steps = 64
  c2w, audio = sphere_frames([-0.5, 0.5])
  grids = jax.device_get(jax.jit(
      lambda a, p: occupancy.step_grids(MouthSpheres(), None, a, p,
                                        jnp.zeros(2), True, BOX, 16))(
                                            audio, c2w))
  measure = occupancy.FrameGrids(Spheres(), settings, BOX,
                                 parallel.make_data_mesh(), resolution=16)
  for i in range(2):
    np.testing.assert_array_equal(
        grids.density[i], jax.device_get(measure(None, c2w[i], audio[i],
                                                 True)).density)
  np.testing.assert_array_equal(grids.box[1], BOX)
  # The same rays in both frames: along z at x = -0.5 (frame 0's sphere),
  # 0.5 (frame 1's) and 0.9 (neither).
  x = np.array([-0.5, 0.5, 0.9], np.float32)
  origins = np.stack([x, np.zeros(3), np.full(3, 0.95)], -1)
  directions = np.tile(np.array([[0.0, 0.0, -1.0]], np.float32), (3, 1))
  rays = rays_lib.Rays(origins=np.stack([origins] * 2),
                       directions=np.stack([directions] * 2),
                       viewdirs=np.stack([directions] * 2))
  near, far, hit = jax.device_get(jax.vmap(
      lambda g, r: occupancy.tight_bounds(g, r, settings, 0.0, 1.9))(
          grids, rays))
  np.testing.assert_array_equal(hit, [[True, False, False],
                                      [False, True, False]])
  empty = ~hit
  np.testing.assert_array_equal(near[empty], 0.0)
  np.testing.assert_array_equal(far[empty], np.float32(1.9))
  # The sphere's front is at depth 0.65; SIGMA = 50 makes it opaque (1 %)
  # within 0.1, and far ends a cell (0.125) after: short of its back
  # (1.25), which the clip grid's bounds keep.
  assert np.all(near[hit] > 0.45) and np.all(near[hit] < 0.65)
  assert np.all(far[hit] > 0.75) and np.all(far[hit] < 1.0)


def step_grid_run(config, scene, batch, devices, num_steps):
  """The occupancy train step (per-step grids) on `devices`, from a
  state whose coarse density is raised to fill the grid."""
  exp = dataclasses.replace(
      experiment.setup(config, parallel.make_data_mesh(devices), scene=scene),
      tx=optax.sgd(0.5))
  host = exp.host_init_state()
  params = flax.core.unfreeze(host.params)
  params['params']['coarse']['sigma']['bias'] += 100.0
  state = parallel.replicate(host.replace(params=params), exp.mesh)
  batch = jax.device_put(batch, parallel.data_sharded(exp.mesh))
  arrays = exp.scene_arrays()
  key = parallel.replicate(jax.random.PRNGKey(0), exp.mesh)
  losses = []
  for _ in range(num_steps):
    state, metrics = exp.occupancy_train_step(state, batch, arrays, key)
    losses.append(float(metrics['loss']))
  return jax.device_get(state.params), losses, jax.device_get(metrics)


def test_step_grid_train_step_same_on_one_and_four_devices():
  config = tiny.get_config()
  config.occupancy.train = True
  config.occupancy.train_grid = 'step'
  config.occupancy.train_step_resolution = 8
  scene = fake_data.random_scene(config)
  batch = fake_data.random_batch(config, scene, num_frames=4)
  params_1, losses_1, metrics_1 = step_grid_run(config, scene, batch,
                                                jax.devices()[:1], 2)
  params_4, losses_4, metrics_4 = step_grid_run(config, scene, batch,
                                                jax.devices()[:4], 2)
  np.testing.assert_allclose(losses_1, losses_4, rtol=1e-5, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5,
                                                       rtol=1e-4),
               params_1, params_4)
  # Means over the devices' rays: summed in another order on 4 devices.
  for name in ('occupancy_hit', 'occupancy_interval'):
    np.testing.assert_allclose(metrics_1[name], metrics_4[name], rtol=1e-5)
  # The raised density: every ray hits and stops short of far.
  assert metrics_4['occupancy_hit'] > 0.9
  assert 0.0 < metrics_4['occupancy_interval'] < 0.9
  assert np.isfinite(losses_4[-1]) and losses_4[1] != losses_4[0]


def test_grid_frames_are_the_extreme_poses_and_mouths():
  poses = np.tile(np.eye(4, dtype=np.float32), (9, 1, 1))
  poses[:, 0, 3] = [0.0, 0.1, -0.1, 0.05, 0.5, -0.4, 0.0, 0.02, 0.01]
  mouth = np.array([0.2, 0.3, 0.9, 0.1, 0.2, 0.2, 0.05, 0.3, 0.4])
  # The pose nearest the mean (7: x 0.02), the furthest from it (4) then
  # the furthest from both (5); mouths 2 (open) and 6 (closed).
  assert occupancy.grid_frames(poses, mouth, 3) == [2, 4, 5, 6, 7]
  assert occupancy.grid_frames(poses, mouth, 1) == [2, 6, 7]


def occupancy_config(data_dir, **train_overrides):
  config = tiny.get_config()
  config.data.data_dir = str(data_dir)
  config.occupancy.train = True
  config.occupancy.train_resolution = 8
  config.occupancy.train_warmup_steps = 2
  config.occupancy.train_update_every = 2
  config.occupancy.points_per_call = 128
  config.occupancy.train_sample_fraction = 0.5
  for name, value in train_overrides.items():
    config.train[name] = value
  return config


def read_state(workdir, step):
  return checkpoints.open_read_only(workdir).restore(
      step, args=ocp.args.StandardRestore())


def test_training_with_occupancy_resumes_and_culls(tiny_data, tmp_path):
  """configs/tiny.py (semantic sampler, torso warp) with the grid measured
  before steps 3 and 5: resumed at step 3 it ends bit-identical to a
  straight run, and its step culls what the grid says is empty."""
  data_dir = tiny_data[0].data.data_dir
  straight, resumed = str(tmp_path / 'straight'), str(tmp_path / 'resumed')
  train.train_and_evaluate(occupancy_config(data_dir), straight)
  # The straight run as it was when it saved step 3 (checkpoint_every 3).
  shutil.copytree(straight, resumed)
  shutil.rmtree(checkpoints.checkpoint_dir(resumed) / '6')
  train.train_and_evaluate(occupancy_config(data_dir), resumed)
  a, b = read_state(straight, 6), read_state(resumed, 6)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert np.all(a['occupancy']['density'] >= 0)  # measured
  record = json.loads(open(os.path.join(straight, 'eval_history.jsonl'))
                      .read().splitlines()[-1])
  assert record['grid_refreshes'] == 2 and record['grid_frames'] >= 3

  # The occupancy step on a grid whose lower-x half is empty (a cell less
  # with the margin): the rays whose march stays there (the reference
  # camera's left half, up to the poses' small turns) hit nothing, the
  # others get shorter intervals.
  config = occupancy_config(data_dir)
  exp = experiment.setup(config)
  step, state = checkpoints.restore_latest(
      checkpoints.open_read_only(straight), exp.abstract_state(),
      defaults=exp.state_defaults())
  box = np.asarray(occupancy.head_box(exp.scene, exp.model.near,
                                      exp.model.far, padding=0.0))
  grid = occupancy.create(8, box)
  grid = grid.replace(density=grid.density.at[:5].set(0.0))
  state = state.replace(occupancy=parallel.replicate(grid, exp.mesh))
  batches = input_pipeline.create_train_iterator(config, exp.builder,
                                                 exp.mesh, start_step=step)
  try:
    state, metrics = exp.occupancy_train_step(
        state, next(batches), exp.scene_arrays(),
        parallel.replicate(jax.random.PRNGKey(0), exp.mesh))
  finally:
    batches.close()
  assert 0.1 < float(metrics['occupancy_hit']) < 0.9
  assert 0.0 < float(metrics['occupancy_interval']) < 0.95
  assert np.isfinite(float(metrics['loss']))


def strip_grid(workdir, step):
  """Rewrites `step` as code without the grid saved it (no 'occupancy'
  arrays), with its manifest."""
  path = checkpoints.checkpoint_dir(workdir) / str(step)
  tree = read_state(workdir, step)
  del tree['occupancy']
  shutil.rmtree(path)
  manager = ocp.CheckpointManager(
      checkpoints.checkpoint_dir(workdir),
      item_handlers=ocp.StandardCheckpointHandler())
  manager.save(step, args=ocp.args.StandardSave(tree))
  manager.wait_until_finished()
  checkpoint_manifest.write_manifest(path)
  return tree


def test_a_checkpoint_without_a_grid_restores_renders_and_resumes(
    tiny_workdir, tiny_data, tmp_path):
  config, _ = tiny_data
  workdir = str(tmp_path / 'older')
  shutil.copytree(tiny_workdir, workdir)
  old = strip_grid(workdir, 6)
  exp = experiment.setup(trained_lib.load_config(workdir))
  manager = checkpoints.create_manager(workdir, config)
  with pytest.raises(checkpoints.CheckpointError, match='lacks occupancy/'):
    checkpoints.restore_latest(manager, exp.abstract_state())
  step, state = checkpoints.restore_latest(
      manager, exp.abstract_state(), defaults=exp.state_defaults())
  assert step == 6 and not occupancy.measured(state.occupancy)
  np.testing.assert_array_equal(state.occupancy.box,
                                exp.state_defaults()['occupancy'].box)
  jax.tree.map(np.testing.assert_array_equal,
               jax.device_get(state.params), old['params'])
  # Readers (render_main, benchmarks) load it too.
  loaded = trained_lib.load_trained(workdir)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(loaded.params),
               old['params'])
  # Training resumes from it, here with occupancy on: past warm-up, the
  # grid is measured at once.
  resumed = config.copy_and_resolve_references()
  resumed.train.num_steps = 7
  resumed.occupancy.train = True
  resumed.occupancy.train_resolution = 8
  resumed.occupancy.train_warmup_steps = 2
  train.train_and_evaluate(resumed, workdir)
  assert np.all(read_state(workdir, 7)['occupancy']['density'] >= 0)
