"""Encoding, audio encoders, NeRF MLP and the full PortraitNeRF."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from ssp_nerf_jax.models import audio as audio_lib
from ssp_nerf_jax.models import encoding
from ssp_nerf_jax.models import nerf
from ssp_nerf_jax.models import portrait
from ssp_nerf_jax.rendering import rays as rays_lib

NUM_CLASSES = 11


def random_params(init_fn, *args, seed=0, **kwargs):
  """Parameters of `init_fn`'s shapes, drawn in numpy.

  `init_fn` is only traced (jax.eval_shape), never compiled: on CPU, XLA
  spends seconds compiling the threefry draws of a real `init`, which would
  dominate these tests.  Kernels get torch's U(+-1/sqrt(fan_in)), biases a
  small U(+-0.1) so that zero-bias symmetries do not hide bugs.
  """
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(init_fn, jax.random.PRNGKey(0), *args, **kwargs)

  def draw(x):
    bound = 0.1 if x.ndim == 1 else 1.0 / np.sqrt(np.prod(x.shape[:-1]))
    return jnp.asarray(rng.uniform(-bound, bound, x.shape), x.dtype)

  return jax.tree.map(draw, shapes)


def test_positional_encoding_layout():
  x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
  for freqs, dim in ((10, 63), (4, 27)):
    pe = np.asarray(encoding.positional_encoding(x, freqs))
    assert pe.shape == (4, dim) == (4, encoding.encoded_dim(freqs))
    # The torch reference: cat([x, sin(x), cos(x), sin(2x), cos(2x), ...]).
    blocks = [x]
    for k in range(freqs):
      blocks += [np.sin(x * 2.0**k), np.cos(x * 2.0**k)]
    np.testing.assert_allclose(pe, np.concatenate(blocks, -1), atol=1e-5)


def test_multi_input_dense_equals_concatenation_dense():
  rng = np.random.default_rng(1)
  a = jnp.asarray(rng.normal(size=(2, 3, 4, 5)), jnp.float32)  # per sample
  b = jnp.asarray(rng.normal(size=(2, 1, 1, 6)), jnp.float32)  # per frame
  c = jnp.asarray(rng.normal(size=(2, 3, 1, 7)), jnp.float32)  # per ray
  layer = nerf.MultiInputDense(8)
  params = random_params(layer.init, [a, b, c])
  split = layer.apply(params, [a, b, c])
  tiled = jnp.concatenate([a, jnp.broadcast_to(b, (2, 3, 4, 6)),
                           jnp.broadcast_to(c, (2, 3, 4, 7))], -1)
  plain = nn.Dense(8).apply(params, tiled)  # same {'kernel', 'bias'} tree
  assert split.shape == (2, 3, 4, 8)
  np.testing.assert_allclose(split, plain, atol=1e-5)


def mlp_inputs(num_frames=2, num_rays=3, num_samples=4, code_dim=64):
  rng = np.random.default_rng(2)
  dirs = rng.normal(size=(num_frames, num_rays, 3))
  return (jnp.asarray(rng.normal(size=(num_frames, num_rays, num_samples, 3)),
                      jnp.float32),
          jnp.asarray(dirs / np.linalg.norm(dirs, axis=-1, keepdims=True),
                      jnp.float32),
          jnp.asarray(rng.normal(size=(num_frames, code_dim)), jnp.float32))


def test_default_mlp_has_adnerf_layer_shapes():
  """Paper-scale shapes, by abstract evaluation only (nothing compiles)."""
  params = jax.eval_shape(
      nerf.NeRFMLP(NUM_CLASSES).init, jax.random.PRNGKey(0),
      *mlp_inputs())['params']
  shapes = {name: p['kernel'].shape for name, p in params.items()}
  inp = 63 + 64  # [PE(x), audio code]
  expected = {f'trunk_{i}': (256, 256) for i in range(8)}
  expected.update(trunk_0=(inp, 256), trunk_5=(inp + 256, 256),
                  sigma=(256, 1), semantic=(256, NUM_CLASSES),
                  view_0=(256 + 27, 128), view_1=(128, 128),
                  view_2=(128, 128), rgb=(128, 3))
  assert shapes == expected
  # Same parameter count as AD-NeRF's FaceNeRF as used (its unused
  # feature_linear aside) plus the parsing head.
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  adnerf = (inp * 256 + 256 + 6 * (256 * 256 + 256) + (inp + 256) * 256 + 256
            + 257 + (283 * 128 + 128) + 2 * (128 * 128 + 128) + 128 * 3 + 3)
  assert count == adnerf + 256 * NUM_CLASSES + NUM_CLASSES


def test_small_mlp_forward_with_skip_and_bfloat16():
  points, viewdirs, code = mlp_inputs(code_dim=5)
  kwargs = dict(num_classes=NUM_CLASSES, xyz_freqs=2, dir_freqs=1, depth=3,
                width=16, skip_layer=0, view_width=8)
  mlp = nerf.NeRFMLP(**kwargs)
  params = random_params(mlp.init, points, viewdirs, code)
  assert params['params']['trunk_1']['kernel'].shape == (15 + 5 + 16, 16)
  out = jax.jit(mlp.apply)(params, points, viewdirs, code)
  assert out['rgb'].shape == (2, 3, 4, 3)
  assert out['raw_sigma'].shape == (2, 3, 4)
  assert out['logits'].shape == (2, 3, 4, NUM_CLASSES)
  assert np.all((out['rgb'] >= 0) & (out['rgb'] <= 1))

  mlp16 = nerf.NeRFMLP(**kwargs, dtype='bfloat16')
  out16 = jax.jit(mlp16.apply)(params, points, viewdirs, code)
  for k in out:
    assert out16[k].dtype == jnp.float32, k
    np.testing.assert_allclose(out16[k], out[k], atol=0.1, err_msg=k)
  fresh = jax.eval_shape(mlp16.init, jax.random.PRNGKey(0), points, viewdirs,
                         code)
  assert {x.dtype for x in jax.tree.leaves(fresh)} == {jnp.dtype('float32')}


def test_audio_net_and_attention():
  windows = jnp.asarray(
      np.random.default_rng(3).normal(size=(2, 8, 16, 29)), jnp.float32)
  audio_net = audio_lib.AudioNet(64)
  codes = jax.jit(audio_net.apply)(random_params(audio_net.init, windows),
                                   windows)
  assert codes.shape == (2, 8, 64)

  att = audio_lib.AudioAttNet()
  smoothed, state = jax.jit(
      lambda v, c: att.apply(v, c, mutable=['intermediates']))(
          random_params(att.init, codes, seed=1), codes)
  (weights,) = state['intermediates']['attention']
  assert smoothed.shape == (2, 64) and weights.shape == (2, 8)
  np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
  assert np.all(weights >= 0)
  np.testing.assert_allclose(
      smoothed, np.einsum('fn,fna->fa', weights, codes), atol=1e-5)


# ----------------------------------------------------------- PortraitNeRF
NEAR, FAR = 0.6, 1.4
HEIGHT, WIDTH = 3, 5


def plain_config():
  """configs/tiny.py without the torso warp (tested in test_torso_warp)."""
  config = tiny.get_config()
  config.model.torso_warp = False
  return config


@pytest.fixture(scope='module')
def tiny_setup():
  """Tiny model, two frames of rays (every pixel) and parameters."""
  config = plain_config()
  model = portrait.PortraitNeRF.from_config(config, NUM_CLASSES, NEAR, FAR)
  focal = 4.0
  frames = []
  for shift in (0.0, 0.05):
    c2w = np.eye(4, dtype=np.float32)
    c2w[:3, 3] = [shift, 0.0, 1.0]
    frames.append(rays_lib.frame_rays(c2w, HEIGHT, WIDTH, focal, WIDTH / 2,
                                      HEIGHT / 2))
  frame_rays = jax.tree.map(lambda *x: jnp.stack(x), *frames)  # [2, H, W]
  batch_rays = frame_rays.reshape(2, HEIGHT * WIDTH)
  audio = jnp.asarray(
      np.random.default_rng(4).normal(
          size=(2, config.data.audio_context, 16, config.data.audio_dim)),
      jnp.float32)
  variables = random_params(model.init, batch_rays, audio, True,
                            jax.random.PRNGKey(1))
  for level in ('coarse', 'fine'):
    # Positive density on average, so that renders are not all background.
    sigma = variables['params'][level]['sigma']
    sigma['bias'] = sigma['bias'] + 2.0
  return dict(model=model, params=variables['params'],
              rays=batch_rays, audio=audio)


def check_level(level, num_samples):
  assert level['rgb'].shape == (2, HEIGHT * WIDTH, 3)
  assert level['acc'].shape == level['depth'].shape == (2, HEIGHT * WIDTH)
  assert level['semantics'].shape == (2, HEIGHT * WIDTH, NUM_CLASSES)
  assert level['z'].shape == level['weights'].shape == (2, HEIGHT * WIDTH,
                                                        num_samples)
  for value in level.values():
    assert value.dtype == jnp.float32 and np.all(np.isfinite(value))
  np.testing.assert_allclose(level['semantics'].sum(-1), 1.0, atol=1e-5)
  assert np.all(np.diff(level['z'], axis=-1) >= 0)
  np.testing.assert_allclose(level['z'][..., -1], FAR, atol=1e-5)


def test_portrait_train_forward_with_key(tiny_setup):
  s = tiny_setup
  out = jax.jit(s['model'].apply)({'params': s['params']}, s['rays'],
                                  s['audio'], jnp.array(False),
                                  jax.random.PRNGKey(2))
  assert set(out) == {'coarse', 'fine'}
  check_level(out['coarse'], 8)
  check_level(out['fine'], 16)
  assert set(s['params']) == {'audio_net', 'audio_att', 'coarse', 'fine'}


def test_portrait_eval_forward_and_smoothing_switch(tiny_setup):
  s = tiny_setup
  apply = jax.jit(s['model'].apply)
  variables = {'params': s['params']}
  plain = apply(variables, s['rays'], s['audio'], jnp.array(False))
  smooth = apply(variables, s['rays'], s['audio'], jnp.array(True))
  again = apply(variables, s['rays'], s['audio'], jnp.array(True))
  assert apply._cache_size() == 1  # switching smoothing does not recompile
  check_level(plain['fine'], 16)
  for k in ('rgb', 'semantics', 'z'):
    np.testing.assert_array_equal(smooth['fine'][k], again['fine'][k])
  assert 0.05 < np.mean(plain['fine']['acc']) < 0.999
  assert not np.allclose(plain['fine']['rgb'], smooth['fine']['rgb'])



def test_portrait_audio_code_is_centre_frame_without_smoothing(tiny_setup):
  s = tiny_setup
  audio_code = jax.jit(
      lambda v, a: s['model'].apply(v, a, False, method='audio_code'))
  code = audio_code({'params': s['params']}, s['audio'])
  audio_net = audio_lib.AudioNet(s['model'].audio_code_dim)
  centre = jax.jit(audio_net.apply)({'params': s['params']['audio_net']},
                                    s['audio'][:, 4])
  np.testing.assert_allclose(code, centre, atol=1e-5)


def test_portrait_variants_by_abstract_evaluation(tiny_setup):
  """Shared MLP, bfloat16 and missing bounds; traced only, not compiled."""
  s = tiny_setup
  config = plain_config()
  args = (s['rays'], s['audio'], jnp.array(True), jax.random.PRNGKey(0))
  shared = portrait.PortraitNeRF.from_config(config, NUM_CLASSES, NEAR, FAR,
                                             share_coarse_fine=True)
  params = jax.eval_shape(shared.init, jax.random.PRNGKey(0), *args)
  assert set(params['params']) == {'audio_net', 'audio_att', 'nerf'}

  config.model.dtype = 'bfloat16'
  half = portrait.PortraitNeRF.from_config(config, NUM_CLASSES, NEAR, FAR)
  params = jax.eval_shape(half.init, jax.random.PRNGKey(0), *args)
  out = jax.eval_shape(half.apply, params, *args)
  dtypes = {x.dtype for x in jax.tree.leaves((params, out))}
  assert dtypes == {jnp.dtype('float32')}

  unbounded = portrait.PortraitNeRF.from_config(plain_config(), NUM_CLASSES)
  with pytest.raises(ValueError, match='near/far'):
    jax.eval_shape(unbounded.init, jax.random.PRNGKey(0), *args)
  # Bounds given per call work without fields.
  jax.eval_shape(
      lambda k: unbounded.init(k, *args, near=NEAR, far=FAR),
      jax.random.PRNGKey(0))

  # The torso warp adds its parameters and per-ray outputs, and needs poses.
  warped = portrait.PortraitNeRF.from_config(
      tiny.get_config(), NUM_CLASSES, NEAR, FAR, reference_c2w=np.eye(4))
  c2w = jnp.broadcast_to(jnp.eye(4), (s['rays'].origins.shape[0], 4, 4))
  params = jax.eval_shape(
      lambda k: warped.init(k, *args[:3], c2w=c2w), jax.random.PRNGKey(0))
  assert 'warp' in params['params']
  out = jax.eval_shape(lambda p: warped.apply(p, *args, c2w=c2w), params)
  assert out['fine']['blend'].shape == s['rays'].origins.shape[:2]
  with pytest.raises(ValueError, match='poses'):
    jax.eval_shape(warped.apply, params, *args)
  with pytest.raises(ValueError, match='reference pose'):
    portrait.PortraitNeRF.from_config(tiny.get_config(), NUM_CLASSES)
