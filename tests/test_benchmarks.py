"""The throughput benchmark's analytic FLOP count matches the real model."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from configs import tiny
from ssp_nerf_jax.benchmarks import checkpoint_integrity
from ssp_nerf_jax.benchmarks import render_speed
from ssp_nerf_jax.benchmarks import throughput
from ssp_nerf_jax.models import portrait
from ssp_nerf_jax.rendering import rays as rays_lib


def test_macs_per_point_equal_kernel_sizes_minus_per_frame_and_per_ray_rows():
  config = default.get_config()
  config.model.torso_warp = False
  num_classes = 11
  model = portrait.PortraitNeRF.from_config(config, num_classes, 0.5, 1.2)
  rays = rays_lib.Rays(*(jnp.ones((1, 1, 3)),) * 3)
  audio = jnp.zeros((1, 8, 16, config.data.audio_dim))
  shapes = jax.eval_shape(functools.partial(model.init, smooth_audio=True),
                          jax.random.PRNGKey(0), rays, audio)
  kernels = jax.tree_util.tree_leaves_with_path(shapes['params']['coarse'])
  kernel_macs = sum(np.prod(x.shape) for path, x in kernels
                    if 'kernel' in jax.tree_util.keystr(path))
  m = config.model
  code_rows = 2 * m.audio_code_dim * m.width  # trunk_0 and the skip layer
  dir_rows = (3 + 6 * m.dir_freqs) * m.view_width  # PE(d) in view_0
  assert throughput.mlp_macs_per_point(m, num_classes) == (
      kernel_macs - code_rows - dir_rows)


def test_warp_macs_equal_its_kernel_sizes_minus_the_pose_rows():
  config = default.get_config()
  config.model.torso_warp = True
  model = portrait.PortraitNeRF.from_config(config, 11, 0.5, 1.2,
                                            reference_c2w=np.eye(4))
  rays = rays_lib.Rays(*(jnp.ones((1, 1, 3)),) * 3)
  audio = jnp.zeros((1, 8, 16, config.data.audio_dim))
  shapes = jax.eval_shape(functools.partial(model.init, smooth_audio=True),
                          jax.random.PRNGKey(0), rays, audio,
                          c2w=jnp.eye(4)[None])
  kernels = jax.tree_util.tree_leaves_with_path(shapes['params']['warp'])
  kernel_macs = sum(np.prod(x.shape) for path, x in kernels
                    if 'kernel' in jax.tree_util.keystr(path))
  pose_rows = 12 * config.model.warp_width
  assert throughput.warp_macs_per_point(config.model) == kernel_macs - pose_rows
  config.model.torso_warp = False
  assert throughput.warp_macs_per_point(config.model) == 0


def test_gflop_per_step_scales_with_rays_and_samples():
  config = default.get_config()
  config.model.torso_warp = False
  one = throughput.model_gflop_per_step(config, 11, num_frames=1)
  assert throughput.model_gflop_per_step(config, 11, num_frames=2) == 2 * one
  # AD-NeRF's step: 2048 rays x (64 coarse + 192 fine) points, ~0.6 MMAC each.
  assert 1500 < one < 2500


def test_render_speed_times_chunks_of_a_full_frame():
  config = tiny.get_config()
  config.render.chunk = 64  # 4 devices x 64 rays: 4 chunks of a 32 px frame
  result = render_speed.measure(config, num_chunks=2)
  assert result['measured_chunks'] == 2
  assert result['chunks_per_frame'] * result['rays_per_chunk'] >= 32 * 32
  assert result['seconds_per_frame'] == pytest.approx(
      result['chunk_time_s'] * result['chunks_per_frame'])
  assert result['seconds_per_frame'] > 0


def test_render_speed_of_a_workdir_with_and_without_occupancy(tiny_workdir):
  result = render_speed.measure_workdir(tiny_workdir, size=32, count=2,
                                        overrides={'sample_fraction': 0.5})
  assert result['frames'] == 2 and result['occupancy']['sample_fraction'] == 0.5
  assert result['speedup'] == pytest.approx(
      result['seconds_per_frame_full'] / result['seconds_per_frame_occupancy'])
  assert 0 <= result['hit_fraction'] <= 1
  # The dataset's own size: scored against the truth too.
  for name in ('full', 'occupancy'):
    assert np.isfinite(result[f'psnr_{name}_vs_truth'])
    assert set(result[f'region_psnr_{name}_vs_truth']) == set(
        result['region_psnr_between'])


def test_checkpoint_integrity_times_save_manifest_verify_and_restore():
  # One device: orbax's first save to a 4-device mesh takes seconds more.
  result = checkpoint_integrity.measure(tiny.get_config(), repeats=1,
                                        devices=jax.devices()[:1])
  for name in ('save_s', 'manifest_s', 'verify_s', 'restore_s'):
    assert result[name] > 0, name
  assert result['manifest_percent'] == pytest.approx(
      100 * result['manifest_s'] / result['save_s'])
  assert result['checkpoint_mib'] > 0
