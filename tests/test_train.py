"""Train step parity across device counts, losses, the sampler's class
statistics, end-to-end and resume."""
import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from configs import tiny
from ssp_nerf_jax.benchmarks import fake_data
from ssp_nerf_jax.runtime import errors
from ssp_nerf_jax.runtime import parallel
from ssp_nerf_jax.training import experiment
from ssp_nerf_jax.training import losses
from ssp_nerf_jax.training import ray_sampling
from ssp_nerf_jax.training import train


def tiny_config(data_dir, **train_overrides):
  config = tiny.get_config()
  config.data.data_dir = str(data_dir)
  for name, value in train_overrides.items():
    config.train[name] = value
  return config


def run_steps(config, scene, batch, devices, tx, num_steps):
  exp = dataclasses.replace(
      experiment.setup(config, parallel.make_data_mesh(devices), scene=scene),
      tx=tx)
  state = exp.init_state()
  batch = jax.device_put(batch, parallel.data_sharded(exp.mesh))
  arrays = exp.scene_arrays()
  key = parallel.replicate(jax.random.PRNGKey(0), exp.mesh)
  losses = []
  for _ in range(num_steps):
    state, metrics = exp.train_step(state, batch, arrays, key)
    losses.append(float(metrics['loss']))
  # The semantic sampler's running class losses: one value on every device.
  shards = [np.asarray(x.data) for x in
            state.sampler.class_loss_ema.addressable_shards]
  assert len(shards) == len(devices)
  for shard in shards[1:]:
    np.testing.assert_array_equal(shard, shards[0])
  return jax.device_get(state.params), losses, jax.device_get(metrics)


@pytest.mark.parametrize('torso_warp, strategy', [(False, 'face_rect'),
                                                  (True, 'semantic')])
def test_one_vs_four_devices_same_loss_and_params(torso_warp, strategy):
  # Plain SGD: Adam would hide a gradient scaled by the device count.
  config = tiny.get_config()
  config.train.audio_smoothing_start = 1  # exercise the attention path too
  config.model.torso_warp = torso_warp
  config.sampling.strategy = strategy
  config.sampling.semantic_warmup_steps = 1  # step 2 samples by class loss
  scene = fake_data.random_scene(config)
  batch = fake_data.random_batch(config, scene, num_frames=4)
  tx = optax.sgd(0.5)
  params_1, losses_1, metrics_1 = run_steps(config, scene, batch,
                                            jax.devices()[:1], tx, 2)
  params_4, losses_4, metrics = run_steps(config, scene, batch,
                                          jax.devices()[:4], tx, 2)
  # The running class losses (the semantic sampler's state) agree too.
  np.testing.assert_allclose(metrics_1['class_loss_ema'],
                             metrics['class_loss_ema'], rtol=1e-5)
  assert np.all(metrics['class_loss_ema'] > 0)
  np.testing.assert_allclose(losses_1, losses_4, rtol=1e-5, atol=1e-6)
  assert losses_1[1] != losses_1[0]  # the first update changed something
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5,
                                                       rtol=1e-4),
               params_1, params_4)
  # Per-class metrics cover every ray of the global batch.
  assert metrics['class_rays'].sum() == 4 * config.train.rays_per_frame
  assert np.isfinite(metrics['grad_norm']) and metrics['grad_norm'] > 0
  if torso_warp:  # the warp learns, from finite gradients
    exp = experiment.setup(config, scene=scene)
    init = exp.host_init_state().params['params']['warp']
    for before, after in zip(jax.tree.leaves(init),
                             jax.tree.leaves(params_1['params']['warp'])):
      assert np.all(np.isfinite(after))
    assert any(np.any(before != after) for before, after in zip(
        jax.tree.leaves(init), jax.tree.leaves(params_1['params']['warp'])))
    assert np.isfinite(metrics['blend_fine'])


def test_total_loss_against_hand_computation():
  rng = np.random.default_rng(3)
  k = 3
  def level():
    sem = rng.uniform(size=(1, 2, k)).astype(np.float32)
    return {'rgb': rng.uniform(size=(1, 2, 3)).astype(np.float32),
            'acc': rng.uniform(size=(1, 2)).astype(np.float32),
            'semantics': sem / sem.sum(-1, keepdims=True)}
  outputs = {'coarse': level(), 'fine': level()}
  targets = {'rgb': rng.uniform(size=(1, 2, 3)).astype(np.float32),
             'background': rng.uniform(size=(1, 2, 3)).astype(np.float32),
             'class_id': np.array([[0, 2]])}
  weights = ml_collections.ConfigDict({'semantic_weight': 0.5})
  loss, terms = losses.total_loss(outputs, targets, weights)
  expected = 0.0
  for name in ('coarse', 'fine'):
    out = outputs[name]
    for r in range(2):
      rgb = out['rgb'][0, r] + (1 - out['acc'][0, r]) * targets['background'][0, r]
      expected += np.mean((rgb - targets['rgb'][0, r])**2) / 2
      expected -= 0.5 * np.log(out['semantics'][0, r,
                                                targets['class_id'][0, r]]) / 2
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  assert terms['sq_err_fine'].shape == (1, 2)


def test_semantic_stats_update_keeps_unseen_classes_and_starts_new_ones():
  stats = ray_sampling.SemanticStats(jnp.array([-1.0, 0.5, 0.2]))
  # Two "devices" (a named vmap axis): class 0 seen for the first time,
  # class 1 again, class 2 not at all.
  sq_err = jnp.array([[0.1, 0.3], [0.4, 0.6]])
  class_id = jnp.array([[0, 1], [0, 1]])
  update = lambda e, c: stats.update(e, c, 0.9, 'devices')
  new, class_loss, counts = jax.vmap(update, axis_name='devices')(sq_err,
                                                                  class_id)
  np.testing.assert_allclose(counts[0], [2, 2, 0])
  np.testing.assert_allclose(class_loss[0], [0.25, 0.45, 0.0])
  np.testing.assert_allclose(new.class_loss_ema[0],
                             [0.25, 0.9 * 0.5 + 0.1 * 0.45, 0.2], rtol=1e-6)


@pytest.fixture
def data_dir(tiny_data):
  config, _ = tiny_data
  return config.data.data_dir


def read_params(workdir):
  from ssp_nerf_jax.runtime import checkpoints
  manager = checkpoints.create_manager(workdir, tiny.get_config())
  step = manager.latest_step()
  restored = manager.restore(step, args=ocp.args.StandardRestore())
  return step, restored


def test_end_to_end_and_resume(data_dir, tiny_workdir, tmp_path):
  config = tiny_config(data_dir)
  straight = tiny_workdir  # configs/tiny.py trained in one go
  metrics = json.load(open(os.path.join(straight, 'eval_metrics.json')))
  assert metrics['step'] == config.train.num_steps
  assert np.isfinite(metrics['psnr']) and 0 < metrics['ssim'] <= 1
  assert os.path.exists(os.path.join(straight, 'config.json'))
  assert any(name.startswith('events') for name in
             os.listdir(os.path.join(straight, 'tb')))
  assert os.listdir(os.path.join(straight, 'eval', 'step_0000006'))

  resumed = str(tmp_path / 'resumed')
  train.train_and_evaluate(tiny_config(data_dir, num_steps=3), resumed)
  train.train_and_evaluate(config, resumed)
  step_a, state_a = read_params(straight)
  step_b, state_b = read_params(resumed)
  assert step_a == step_b == config.train.num_steps
  jax.tree.map(np.testing.assert_array_equal, state_a, state_b)


def test_non_finite_loss_stops_with_clear_message(data_dir, tmp_path):
  config = tiny_config(data_dir, lr=float('nan'), num_steps=2)
  with pytest.raises(train.NonFiniteLossError, match='step 2'):
    train.train_and_evaluate(config, str(tmp_path / 'nan'))


@pytest.mark.parametrize('section, field, value, message', [
    ('sampling', 'strategy', 'nope', "'nope' is not one of"),
    ('train', 'rays_per_frame', 0, 'rays_per_frame must be a positive'),
    ('model', 'dtype', 'float16', "'float16' is not"),
])
def test_invalid_config_is_one_clear_error(section, field, value, message):
  config = tiny.get_config()
  config[section][field] = value
  with pytest.raises(errors.UserError, match=message):
    experiment.validate_config(config)
