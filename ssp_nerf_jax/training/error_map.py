"""The error-map sampler of torch-ngp / RAD-NeRF: per train frame, a
running photometric error on a coarse grid of cells; a frame's rays are
drawn with probability proportional to its cells' errors.

The map is [T, n, n] float32 for T train frames (`config.sampling.
error_map_resolution` = n cells per side, whatever the image's aspect):
4 n^2 bytes per frame (n = 32: 4 KiB; 545 frames of the embedded portrait:
2.1 MiB), replicated on every device.  A frame's row is its `frame_id`
(train frames are 0 .. T-1; `check_frame_ids`).  Cells start at 1, far
above any squared error in [0, 1] colours, so every cell is visited before
the measured errors rank them (torch-ngp's initialisation).

After each step every device's rays are gathered (frame, cell, error) so
that the replicated map is updated identically whatever the device count;
only cells that received rays change: there the map becomes
  decay * old + (1 - decay) * mean squared error of this step's rays.
"""
import flax
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from ssp_nerf_jax.runtime import errors as errors_lib


def check_frame_ids(frame_ids, num_train):
  """UserError unless the train split's `frame_ids` are 0 .. num_train - 1
  in some order (they index the map's rows)."""
  ids = np.sort(np.asarray(frame_ids))
  if not np.array_equal(ids, np.arange(num_train)):
    raise errors_lib.UserError(
        "config.sampling.strategy='error_map' needs train frame_ids 0 .. "
        f'{num_train - 1}; this dataset has {ids[:3].tolist()} .. '
        f'{ids[-1:].tolist()}')


def pixel_cells(height, width, resolution):
  """int32 [H, W] flat cell index (row-major in an n x n grid) of each pixel."""
  rows = jnp.arange(height) * resolution // height
  cols = jnp.arange(width) * resolution // width
  return (rows[:, None] * resolution + cols[None, :]).astype(jnp.int32)


def pixel_weights(frame_errors, height, width, uniform_mix):
  """float32 [H * W] sampling weights of one frame's pixels.

  Args:
    frame_errors: float [n, n] the frame's error map.
    height, width: image size (static).
    uniform_mix: share of rays drawn uniformly over pixels, in [0, 1].
  Returns:
    weights whose normalisation is (1 - uniform_mix) x (pixel's cell error /
    sum over pixels) + uniform_mix / (H W).
  """
  resolution = frame_errors.shape[0]
  cells = pixel_cells(height, width, resolution).reshape(-1)
  errors = jnp.maximum(frame_errors.reshape(-1)[cells], 1e-12)
  return ((1.0 - uniform_mix) * errors / jnp.sum(errors) +
          uniform_mix / errors.size)


def gather_exact(x, axis_name):
  """[D * M] every device's x [M] in mesh order, the same on every device.

  A psum of zero-padded blocks: adding zeros is exact, and unlike
  all_gather the result is known to be replicated (the map stays so).
  """
  num_devices = lax.psum(1, axis_name)
  blocks = jnp.zeros((num_devices,) + x.shape, x.dtype)
  blocks = blocks.at[lax.axis_index(axis_name)].set(x)
  return lax.psum(blocks, axis_name).reshape(-1)


@flax.struct.dataclass
class ErrorMap:
  """Running per-cell photometric error of every train frame."""
  errors: jax.Array  # float32 [T, n, n]; [1, 1, 1] when the sampler is off

  @classmethod
  def create(cls, num_frames: int, resolution: int) -> 'ErrorMap':
    return cls(errors=jnp.ones((num_frames, resolution, resolution),
                               jnp.float32))

  def rows(self, frame_id):
    """float32 [F, n, n] the maps of frames `frame_id` int [F]."""
    return self.errors[frame_id]

  def update(self, frame_id, pixels, sq_err, height, width, decay,
             axis_name):
    """Folds one step's rays (all devices') into the map.

    Args:
      frame_id: int [F] this device's frames (their rows).
      pixels: int [F, R, 2] (row, col) of their rays.
      sq_err: float [F, R] the rays' squared errors.
      height, width: image size (static).
      decay: weight of the old value, in [0, 1).
      axis_name: the mesh axis the frames are spread over.
    Returns:
      the updated map; cells without rays this step are unchanged.
    """
    num_frames, resolution = self.errors.shape[:2]
    cells_per_frame = resolution * resolution
    cell = pixel_cells(height, width, resolution)[pixels[..., 0],
                                                  pixels[..., 1]]
    index = frame_id[:, None] * cells_per_frame + cell  # [F, R]
    index, sq_err = (gather_exact(x.reshape(-1), axis_name)
                     for x in (index, sq_err.astype(jnp.float32)))
    size = num_frames * cells_per_frame
    err_sum = jax.ops.segment_sum(sq_err, index, num_segments=size)
    count = jax.ops.segment_sum(jnp.ones_like(sq_err), index,
                                num_segments=size)
    old = self.errors.reshape(-1)
    new = decay * old + (1.0 - decay) * err_sum / jnp.maximum(count, 1.0)
    return ErrorMap(jnp.where(count > 0, new, old).reshape(self.errors.shape))
