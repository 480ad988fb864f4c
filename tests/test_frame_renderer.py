"""Chunked full-frame rendering over the mesh, and the helpers of the
periodic evaluation (frame picks, parsing palette)."""
import jax
import jax.numpy as jnp
import numpy as np

from configs import tiny
from ssp_nerf_jax.benchmarks import fake_data
from ssp_nerf_jax.data import parsing_schemes
from ssp_nerf_jax.evaluation import periodic_eval
from ssp_nerf_jax.rendering import frame_renderer
from ssp_nerf_jax.rendering import rays as rays_lib
from ssp_nerf_jax.runtime import parallel
from ssp_nerf_jax.training import experiment


def test_chunked_render_on_4_devices_equals_1_device_and_direct_apply():
  config = tiny.get_config()
  config.data.size = 10  # 100 rays: chunks of 4 x 7, the last one padded
  config.render.chunk = 7
  scene = fake_data.random_scene(config)
  exp = experiment.setup(config, scene=scene)
  model, params = exp.model, exp.host_init_state().params
  batch = fake_data.random_batch(config, scene, num_frames=1)
  c2w, audio = batch['c2w'][0], batch['audio'][0]

  images = []
  for devices in (jax.devices()[:4], jax.devices()[:1]):
    mesh = parallel.make_data_mesh(devices)
    renderer = frame_renderer.FrameRenderer(config, model, scene, mesh)
    images.append(renderer.render(parallel.replicate(params, mesh), c2w,
                                  audio, smooth=True))
  assert images[0]['rgb'].shape == (10, 10, 3)
  for key in ('rgb', 'acc', 'depth', 'semantics'):
    np.testing.assert_allclose(images[0][key], images[1][key], atol=1e-5)

  rays = rays_lib.frame_rays(jnp.asarray(c2w), 10, 10, scene.focal, scene.cx,
                             scene.cy).reshape(1, 100)
  # Jitted: one compile instead of one per op.
  direct = jax.jit(lambda p: model.apply(
      p, rays, jnp.asarray(audio)[None], smooth_audio=True,
      c2w=jnp.asarray(c2w)[None]))(params)['fine']
  expected = (direct['rgb'][0] + (1 - direct['acc'][0, :, None]) *
              scene.background.reshape(100, 3))
  np.testing.assert_allclose(images[0]['rgb'].reshape(100, 3), expected,
                             atol=1e-5)
  np.testing.assert_array_equal(images[0]['class_id'],
                                images[0]['semantics'].argmax(-1))


def test_chunk_size_is_a_multiple_of_devices_and_at_most_a_frame():
  config = tiny.get_config()
  config.render.chunk = 1000
  assert frame_renderer.chunk_size(config, 100) == 100  # 25 per device x 4
  assert frame_renderer.chunk_size(config, 101) == 104
  config.render.chunk = 8
  assert frame_renderer.chunk_size(config, 1000) == 32


def test_evenly_spaced_and_palette():
  assert periodic_eval.evenly_spaced(3, 9) == [0, 4, 8]
  assert periodic_eval.evenly_spaced(5, 2) == [0, 1]
  palette = parsing_schemes.palette(11)
  assert palette.shape == (11, 3) and tuple(palette[0]) == (255, 255, 255)
  # AD-NeRF's 4 classes in their own colours: white, blue head, green, red.
  np.testing.assert_array_equal(
      parsing_schemes.palette(4),
      [[255, 255, 255], [0, 0, 255], [0, 255, 0], [255, 0, 0]])
  assert parsing_schemes.palette(5).shape == (5, 3)
