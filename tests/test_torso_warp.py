"""Torso warp: identity at the reference pose, two-bone behaviour, the
blend supervision, training with the warp, and the ablation CLI."""
import functools
import json
import os

import flax
import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np

from configs import tiny
from ssp_nerf_jax.benchmarks import ablation
from ssp_nerf_jax.models import portrait
from ssp_nerf_jax.models import torso_warp
from ssp_nerf_jax.rendering import rays as rays_lib
from ssp_nerf_jax.rendering import rigid
from ssp_nerf_jax import synthetic
from ssp_nerf_jax.training import losses


def pose(yaw, distance=0.87, lift=0.0):
  """Camera-to-head pose: camera `distance` in front, turned by `yaw`."""
  c, s = np.cos(yaw), np.sin(yaw)
  rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
  c2w = np.eye(4)
  c2w[:3, :3] = rot
  c2w[:3, 3] = rot @ np.array([0.0, lift, distance])
  return c2w


REFERENCE = pose(0.05, lift=0.01)


def warp_with(blend_bias, offset_zero=True, seed=0):
  """A TorsoWarp and its parameters: random hidden layers and blend kernel,
  blend bias `blend_bias`, residual head zeroed if `offset_zero`."""
  module = torso_warp.TorsoWarp(reference_c2w=tuple(REFERENCE.ravel()))
  points = jnp.zeros((1, 1, 1, 3))
  params = module.init(jax.random.PRNGKey(seed), points, jnp.eye(4)[None])
  params = flax.core.unfreeze(params)
  p = params['params']
  rng = np.random.default_rng(seed)
  p['blend']['kernel'] = jnp.asarray(rng.normal(size=(64, 1)), jnp.float32)
  p['blend']['bias'] = jnp.full((1,), blend_bias, jnp.float32)
  if not offset_zero:
    p['offset']['kernel'] = jnp.asarray(rng.normal(size=(64, 3)), jnp.float32)
  return module, params


def random_points(num=50, seed=1):
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.uniform(-0.25, 0.25, (1, num, 2, 3)), jnp.float32)


def test_identity_at_the_reference_pose_with_zero_residual():
  module, params = warp_with(blend_bias=0.0)
  points = random_points()
  warped, blend, offset = module.apply(params, points, REFERENCE[None])
  assert 0.05 < float(blend.min()) and float(blend.max()) < 0.95  # varied
  np.testing.assert_array_equal(offset, 0.0)
  np.testing.assert_allclose(warped, points, atol=1e-6)


def test_body_points_land_on_one_canonical_point_from_any_pose():
  # A point still in the camera frame has head coordinates C_t p in frame t;
  # the body bone (blend 1) maps each of them to C_ref p.
  module, params = warp_with(blend_bias=30.0)
  p_cam = np.array([0.03, -0.15, -0.8, 1.0])
  frames = np.stack([pose(-0.3), pose(0.2, lift=0.02), pose(0.4)])
  head_points = jnp.asarray((frames @ p_cam)[:, :3].reshape(3, 1, 1, 3),
                            jnp.float32)
  warped, blend, _ = module.apply(params, head_points, frames)
  np.testing.assert_allclose(blend, 1.0)
  for f in range(3):
    np.testing.assert_allclose(warped[f, 0, 0], (REFERENCE @ p_cam)[:3],
                               atol=1e-5)


def test_at_initialisation_points_barely_move():
  # The untrained blend is 0.01: every point moves by at most 1 % of its
  # body-bone displacement (the residual starts at zero).
  module = torso_warp.TorsoWarp(reference_c2w=tuple(REFERENCE.ravel()))
  points = random_points()
  frame = pose(0.4, lift=0.03)[None]
  params = module.init(jax.random.PRNGKey(3), points, frame)
  warped, _, offset = module.apply(params, points, frame)
  np.testing.assert_array_equal(offset, 0.0)
  body = torso_warp.apply_transform(
      torso_warp.body_transforms(frame, REFERENCE), points)
  moved = np.linalg.norm(warped - points, axis=-1)
  bound = 0.0101 * np.linalg.norm(body - points, axis=-1)
  assert np.all(moved <= bound) and moved.max() > 0


def test_residual_offsets_are_bounded():
  module, params = warp_with(blend_bias=30.0, offset_zero=False)
  _, _, offset = module.apply(params, random_points(), pose(0.3)[None])
  assert float(jnp.abs(offset).max()) <= module.max_offset
  assert float(jnp.abs(offset).max()) > 0.5 * module.max_offset


def test_blend_supervision_pulls_head_rays_to_zero_and_body_rays_to_one():
  names = synthetic.CLASS_NAMES
  body = torso_warp.body_class_mask(names)
  assert [n for n, b in zip(names, body) if b] == ['neck', 'torso']
  class_id = jnp.array([[names.index('skin'), names.index('torso'),
                         names.index('background')]])

  def loss(blend):
    level = {'blend': blend, 'offset_sq': jnp.zeros_like(blend)}
    terms = losses.warp_losses({'coarse': level, 'fine': level}, class_id, body)
    return terms['blend_fine']

  grad = jax.grad(loss)(jnp.full((1, 3), 0.5))
  assert grad[0, 0] > 0  # head ray: lower blend lowers the loss
  assert grad[0, 1] < 0  # torso ray: higher blend
  assert grad[0, 2] == 0  # background rays carry no target
  np.testing.assert_allclose(loss(jnp.array([[1e-6, 1 - 1e-6, 0.3]])), 0.0,
                             atol=1e-3)


@functools.lru_cache(maxsize=None)
def _warped_portrait():
  """`warped_portrait`'s model (no fine gradients), parameters and inputs;
  initialised once, by one jitted init (op by op it compiles every op)."""
  model = portrait.PortraitNeRF(
      num_classes=4, depth=2, width=16, skip_layer=1, view_width=8,
      audio_code_dim=8, num_coarse=6, num_fine=5, near=0.6, far=1.2,
      torso_warp=True, reference_c2w=tuple(REFERENCE.ravel()),
      warp_width=16, warp_freqs=2, warp_fine_gradients=False)
  c2w = jnp.asarray(np.stack([pose(0.3, lift=0.02), pose(-0.2)]), jnp.float32)
  rng = np.random.default_rng(0)
  directions = jnp.asarray(rng.normal(0, 0.2, (2, 6, 3)) - [0, 0, 1],
                           jnp.float32)
  rays = rays_lib.Rays(
      origins=jnp.broadcast_to(c2w[:, None, :3, 3], (2, 6, 3)),
      directions=directions,
      viewdirs=directions / jnp.linalg.norm(directions, axis=-1,
                                            keepdims=True))
  audio = jnp.asarray(rng.normal(size=(2, 8, 16, 4)), jnp.float32)
  init = jax.jit(lambda key: model.init(key, rays, audio, False, c2w=c2w))
  params = flax.core.unfreeze(init(jax.random.PRNGKey(0)))
  warp = params['params']['warp']
  warp['blend']['kernel'] = jnp.asarray(rng.normal(size=(16, 1)), jnp.float32)
  warp['offset']['kernel'] = jnp.asarray(rng.normal(size=(16, 3)),
                                         jnp.float32)
  return model, params, (rays, audio, False), c2w


def warped_portrait(fine_gradients):
  """A tiny PortraitNeRF with the warp, random (non-trivial) warp weights,
  and its inputs: 2 frames x 6 rays at two head poses.  The parameters do
  not depend on `fine_gradients` (it only stops gradients)."""
  model, params, inputs, c2w = _warped_portrait()
  return (model.clone(warp_fine_gradients=fine_gradients),
          jax.tree.map(lambda x: x, params), inputs, c2w)


def test_fine_pass_uses_the_warp_of_its_own_depths():
  # The fine pass reuses the coarse samples' warp; per sample it must still
  # see exactly what warping the fine depths directly gives.
  # Both passes in one jitted function (one compile, not one per op).
  model, params, inputs, c2w = warped_portrait(fine_gradients=False)

  @jax.jit
  def fine_and_direct_blend(params):
    fine = model.apply(params, *inputs, key=jax.random.PRNGKey(1),
                       c2w=c2w)['fine']
    rays = inputs[0]
    points = (rays.origins[..., None, :] +
              rays.directions[..., None, :] * fine['z'][..., None])
    _, blend, _ = model.apply(params, points, c2w,
                              method=lambda m, p, c: m.warp(p, c))
    return fine, blend

  fine, blend = fine_and_direct_blend(params)
  weights = fine['weights'] / fine['weights'].sum(-1, keepdims=True)
  np.testing.assert_allclose(fine['blend'], (weights * blend).sum(-1),
                             rtol=1e-5, atol=1e-6)


def test_warp_learns_through_the_fine_pass_only_when_asked():
  grads = {}
  for fine_gradients in (False, True):
    model, params, inputs, c2w = warped_portrait(fine_gradients)

    def level_loss(p, level, model=model, inputs=inputs, c2w=c2w):
      out = model.apply(p, *inputs, key=jax.random.PRNGKey(1), c2w=c2w)
      return jnp.sum(out[level]['rgb']) + jnp.sum(out[level]['blend'])

    # Both levels' gradients in one jitted function: one compile per model.
    grads[fine_gradients] = jax.jit(lambda p, level_loss=level_loss: {
        level: jax.grad(level_loss)(p, level)['params']['warp']
        for level in ('coarse', 'fine')})(params)
  norm = lambda tree: float(sum(jnp.sum(x**2) for x in jax.tree.leaves(tree)))
  assert norm(grads[False]['fine']) == 0.0
  assert norm(grads[True]['fine']) > 0.0
  # The coarse pass trains the warp either way, identically.
  assert norm(grads[False]['coarse']) > 0.0
  jax.tree.map(np.testing.assert_array_equal, grads[False]['coarse'],
               grads[True]['coarse'])


def test_mean_pose_of_symmetric_turns_is_the_middle_pose():
  poses = np.stack([pose(-0.2), pose(0.0), pose(0.2)])
  mean = rigid.mean_pose(poses)
  np.testing.assert_allclose(mean[:3, :3], np.eye(3), atol=1e-9)
  np.testing.assert_allclose(mean[:3, 3], poses[:, :3, 3].mean(0), atol=1e-9)


def test_ablation_cli_on_the_tiny_config(tiny_data, tmp_path):
  config, _ = tiny_data
  out = str(tmp_path / 'ablation')
  results = ablation.run_ablation(config, num_steps=4, seeds=1, eval_frames=1,
                                  out_dir=out)
  on_disk = json.load(open(os.path.join(out, 'results.json')))
  assert set(on_disk) == {'warp_off', 'warp_on'}
  for name in ablation.VARIANTS:
    # Means over seeds, their spread and each seed's figures (sweep.py).
    assert set(on_disk[name]) == {'psnr', 'miou', 'step_time_s', 'steps',
                                  'std', 'per_seed'}
    assert len(on_disk[name]['per_seed']) == 1
    assert set(on_disk[name]['psnr']) == {'full', 'mouth', 'eyes', 'face',
                                          'hair', 'neck_torso', 'background'}
    assert np.isfinite(on_disk[name]['psnr']['full'])
    assert on_disk[name]['step_time_s'] > 0
  assert results['warp_on']['psnr'] == on_disk['warp_on']['psnr']
  strip = iio.imread(os.path.join(out, 'strip.png'))
  size = tiny.get_config().data.size
  assert strip.shape == (size, 3 * size, 3)
  assert 'warp_on' in open(os.path.join(out, 'results.md')).read()
