"""The error-map sampler: its update, its sampling, its device parity."""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from ssp_nerf_jax.runtime import parallel
from ssp_nerf_jax.training import error_map
from ssp_nerf_jax.training import ray_sampling

P = jax.sharding.PartitionSpec
HEIGHT, WIDTH, CELLS = 12, 16, 4  # cells of 3 x 4 pixels


def update_on(devices, errors, frame_id, pixels, sq_err, decay=0.25):
  """ErrorMap.update over a mesh of `devices`, frames sharded over it."""
  mesh = parallel.make_data_mesh(devices)
  def per_device(errors, frame_id, pixels, sq_err):
    return error_map.ErrorMap(errors).update(
        frame_id, pixels, sq_err, HEIGHT, WIDTH, decay,
        parallel.DATA_AXIS).errors
  data = P(parallel.DATA_AXIS)
  run = jax.jit(jax.shard_map(per_device, mesh=mesh,
                              in_specs=(P(), data, data, data),
                              out_specs=P()))
  return np.asarray(run(errors, frame_id, pixels, sq_err))


def random_rays(seed, num_frames=4, num_rays=6):
  rng = np.random.default_rng(seed)
  pixels = np.stack([rng.integers(0, HEIGHT, (num_frames, num_rays)),
                     rng.integers(0, WIDTH, (num_frames, num_rays))], -1)
  return (pixels.astype(np.int32),
          rng.uniform(0, 0.1, (num_frames, num_rays)).astype(np.float32))


def test_update_changes_the_cells_where_rays_landed_and_only_those():
  errors = error_map.ErrorMap.create(6, CELLS).errors
  frame_id = np.array([4, 1], np.int32)
  # Frame 4: two rays in cell (0, 0), one in (3, 3); frame 1: one in (1, 2).
  pixels = np.array([[[0, 0], [2, 3], [11, 15]],
                     [[3, 8], [4, 9], [5, 11]]], np.int32)
  sq_err = np.array([[0.1, 0.3, 0.5], [0.2, 0.4, 0.6]], np.float32)
  new = update_on(jax.devices()[:1], errors, frame_id, pixels, sq_err)
  expected = np.ones((6, CELLS, CELLS), np.float32)
  expected[4, 0, 0] = 0.25 + 0.75 * 0.2  # decay x old + (1 - decay) x mean
  expected[4, 3, 3] = 0.25 + 0.75 * 0.5
  expected[1, 1, 2] = 0.25 + 0.75 * 0.4
  np.testing.assert_allclose(new, expected, rtol=1e-6)


def test_update_is_identical_on_one_and_four_devices():
  errors = jnp.asarray(np.random.default_rng(0).uniform(
      0, 1, (8, CELLS, CELLS)), jnp.float32)
  frame_id = np.array([3, 0, 7, 3, 5, 1, 2, 6], np.int32)  # 3 twice
  pixels, sq_err = random_rays(1, num_frames=8)
  one = update_on(jax.devices()[:1], errors, frame_id, pixels, sq_err)
  four = update_on(jax.devices()[:4], errors, frame_id, pixels, sq_err)
  np.testing.assert_array_equal(one, four)
  assert np.sum(one != np.asarray(errors)) > 20


def test_sampling_follows_the_map():
  frame_errors = np.full((CELLS, CELLS), 0.01, np.float32)
  frame_errors[1, 2] = 0.5  # a hot cell of 12 pixels
  frame_errors[3, 0] = 0.2
  weights = error_map.pixel_weights(jnp.asarray(frame_errors), HEIGHT, WIDTH,
                                    uniform_mix=0.1)
  draw = jax.jit(functools.partial(ray_sampling.sample_from_pixel_weights,
                                   num_rays=512, pixel_weights=weights,
                                   width=WIDTH))
  cells = np.asarray(error_map.pixel_cells(HEIGHT, WIDTH, CELLS))
  counts = np.zeros(CELLS * CELLS)
  for seed in range(20):
    pixels, _ = draw(jax.random.PRNGKey(seed))
    pixels = np.asarray(pixels)
    counts += np.bincount(cells[pixels[:, 0], pixels[:, 1]],
                          minlength=CELLS * CELLS)
  # Every cell has 12 pixels: its share is 0.9 x error share + 0.1 / 16.
  expected = (0.9 * frame_errors.ravel() / frame_errors.sum() +
              0.1 / CELLS**2)
  np.testing.assert_allclose(counts / counts.sum(), expected, atol=0.01)
  assert counts[1 * CELLS + 2] / counts.sum() > 0.45
