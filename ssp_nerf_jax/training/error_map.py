"""torch-ngp's error-map sampler: per train frame (row `frame_id`), a running
error on n x n cells draws rays in proportion.  Cells start at 1, above any
squared error of [0, 1] colours, so each is visited before errors rank them."""
import flax
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from ssp_nerf_jax.runtime import errors as errors_lib


def check_frame_ids(frame_ids, num_train):
  """UserError unless the train `frame_ids` are a permutation of 0 .. T - 1."""
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
  """float32 [H * W] weights: (1 - uniform_mix) cell-error share + uniform."""
  resolution = frame_errors.shape[0]
  cells = pixel_cells(height, width, resolution).reshape(-1)
  errors = jnp.maximum(frame_errors.reshape(-1)[cells], 1e-12)
  return ((1.0 - uniform_mix) * errors / jnp.sum(errors) +
          uniform_mix / errors.size)


def gather_exact(x, axis_name):
  """[D * M] every device's x [M]: a psum of zero-padded blocks, replicated."""
  num_devices = lax.psum(1, axis_name)
  blocks = jnp.zeros((num_devices,) + x.shape, x.dtype)
  blocks = blocks.at[lax.axis_index(axis_name)].set(x)
  return lax.psum(blocks, axis_name).reshape(-1)


@flax.struct.dataclass
class ErrorMap:
  """Running cell errors float32 [T, n, n]; [1, 1, 1] with the sampler off."""
  errors: jax.Array

  @classmethod
  def create(cls, num_frames: int, resolution: int) -> 'ErrorMap':
    return cls(errors=jnp.ones((num_frames, resolution, resolution),
                               jnp.float32))

  def rows(self, frame_id):
    """float32 [F, n, n] the maps of frames `frame_id` int [F]."""
    return self.errors[frame_id]

  def update(self, frame_id, pixels, sq_err, height, width, decay,
             axis_name):
    """Folds every device's rays (frame_id [F], pixels [F, R, 2], sq_err [F, R])
    in: decay * old + (1 - decay) * mean error, where rays fell this step."""
    num_frames, resolution = self.errors.shape[:2]
    cells_per_frame = resolution * resolution
    cell = pixel_cells(height, width, resolution)[pixels[..., 0],
                                                  pixels[..., 1]]
    index = frame_id[:, None] * cells_per_frame + cell
    index, sq_err = (gather_exact(x.reshape(-1), axis_name)
                     for x in (index, sq_err.astype(jnp.float32)))
    size = num_frames * cells_per_frame
    err_sum = jax.ops.segment_sum(sq_err, index, num_segments=size)
    count = jax.ops.segment_sum(jnp.ones_like(sq_err), index,
                                num_segments=size)
    old = self.errors.reshape(-1)
    new = decay * old + (1.0 - decay) * err_sum / jnp.maximum(count, 1.0)
    return ErrorMap(jnp.where(count > 0, new, old).reshape(self.errors.shape))
