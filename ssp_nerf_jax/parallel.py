"""Device mesh and data-parallel helpers.

One 1-D mesh with axis 'data' spans every device of every process, so the
same program runs on one CPU, eight GPUs or a TPU pod.  Parameters are
replicated; frames (and the rays drawn from them) are split along 'data'.
"""
import jax
from jax.sharding import NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'


def make_data_mesh(devices=None) -> jax.sharding.Mesh:
  """A ('data',) mesh over `devices` (default: all devices of all hosts).

  Axes are Auto so that ops outside shard_map may reshard silently (JAX's
  default Explicit axes reject e.g. concatenating sharded with replicated).
  """
  devices = jax.devices() if devices is None else list(devices)
  return jax.make_mesh((len(devices),), (DATA_AXIS,),
                       axis_types=(jax.sharding.AxisType.Auto,),
                       devices=devices)


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh) -> NamedSharding:
  """Leading axis split over 'data'."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicate(tree, mesh):
  """Places a host pytree on every device of the mesh."""
  return jax.device_put(tree, replicated(mesh))
