"""Device mesh over all processes' devices, data-parallel helpers, the job."""
import sys
from typing import Optional

import jax
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np

from ssp_nerf_jax.runtime import errors

DATA_AXIS = 'data'
# JAX's default: a process silent this long is dead and the job stops.
DEFAULT_HEARTBEAT_TIMEOUT_S = 100
DETECTED_CLUSTERS = 'Cloud TPU, SLURM, Open MPI, Kubernetes'
EXPLICIT_FLAGS = ('--coordinator_address', '--num_processes', '--process_id')


def initialize_distributed(
    coordinator_address: Optional[str] = None,
    num_processes: Optional[int] = None,
    process_id: Optional[int] = None,
    heartbeat_timeout_s: int = DEFAULT_HEARTBEAT_TIMEOUT_S,
    detect_cluster: bool = False) -> bool:
  """Joins the job of the three explicit settings or JAX's detected one.

  Returns whether it did (run before JAX touches a device); UserError if not."""
  explicit = dict(zip(EXPLICIT_FLAGS,
                      (coordinator_address, num_processes, process_id)))
  given = [name for name, value in explicit.items() if value is not None]
  if given and len(given) < len(explicit):
    missing = [name for name in explicit if name not in given]
    raise errors.UserError(f'{", ".join(given)} also needs '
                           f'{", ".join(missing)}')
  if given and detect_cluster:
    raise errors.UserError('--distributed finds the job itself: give it or '
                           f'{", ".join(EXPLICIT_FLAGS)}, not both')
  if not isinstance(heartbeat_timeout_s, int) or heartbeat_timeout_s < 1:
    raise errors.UserError('--heartbeat_timeout_s must be a positive integer, '
                           f'got {heartbeat_timeout_s!r}')
  if given:
    _check_explicit(coordinator_address, num_processes, process_id)
    where = ('cannot join the multi-process job (coordinator '
             f'{coordinator_address}, process {process_id} of '
             f'{num_processes})')
  elif detect_cluster:
    where = ('--distributed: cannot join the job JAX detects '
             f'({DETECTED_CLUSTERS}; elsewhere give '
             f'{", ".join(EXPLICIT_FLAGS)})')
  else:
    return False
  # The CPU backend's cross-process collectives need one (gloo: TCP).
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  try:
    jax.distributed.initialize(coordinator_address, num_processes, process_id,
                               heartbeat_timeout_seconds=heartbeat_timeout_s)
  except (RuntimeError, ValueError) as e:
    message = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
    raise errors.UserError(f'{where}: {message}') from None
  return True


def _check_explicit(coordinator_address, num_processes, process_id):
  host, _, port = coordinator_address.rpartition(':')
  if not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise errors.UserError(f'--coordinator_address={coordinator_address!r} '
                           'is not HOST:PORT')
  if num_processes < 1:
    raise errors.UserError(f'--num_processes must be positive, got '
                           f'{num_processes}')
  if not 0 <= process_id < num_processes:
    raise errors.UserError(f'--process_id={process_id} is not in [0, '
                           f'--num_processes={num_processes})')


def is_main_process() -> bool:
  """Whether this is process 0, the one that writes files and logs."""
  return jax.process_index() == 0


def progress(line: str) -> None:
  """Prints a progress line to stderr on process 0."""
  if is_main_process():
    print(line, file=sys.stderr, flush=True)


def all_processes_agree(ok: bool) -> bool:
  """Whether `ok` holds on every process (a collective)."""
  if jax.process_count() == 1:
    return ok
  return bool(np.all(multihost_utils.process_allgather(np.int32(ok))))


def from_main_process(values: np.ndarray) -> np.ndarray:
  """Process 0's `values`, same shape and dtype everywhere (a collective)."""
  if jax.process_count() == 1:
    return values
  return np.asarray(multihost_utils.broadcast_one_to_all(values))


def make_data_mesh(devices=None) -> jax.sharding.Mesh:
  """A ('data',) mesh over `devices` (default: all devices of all hosts).

  Auto axes: Explicit ones reject e.g. concatenating sharded and replicated."""
  devices = jax.devices() if devices is None else list(devices)
  return jax.make_mesh((len(devices),), (DATA_AXIS,),
                       axis_types=(jax.sharding.AxisType.Auto,),
                       devices=devices)


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh, axis: int = 0) -> NamedSharding:
  """Axis `axis` (default the leading one) split over 'data'."""
  return NamedSharding(mesh, P(*([None] * axis), DATA_AXIS))


def replicate(tree, mesh):
  """Places a pytree, the same on every process, on every device of the mesh."""
  sharding = replicated(mesh)
  if not sharding.is_fully_addressable:
    # Copies to other processes' devices are unsupported (CPU) or slow.
    tree = jax.device_get(tree)
  return jax.device_put(tree, sharding)


def wait_for_all_processes(name: str, timeout_s: int = 1800) -> None:
  """Blocks until every process has reached the barrier `name` (if distributed).

  Not a collective: gloo's first collective waits only briefly for peers.
  Every process calls it with the same `name`."""
  if not jax.distributed.is_initialized():
    return
  # The project's only private JAX API: JAX has no public barrier that is not
  # a collective.  tests/test_parallel.py fails if it moves.
  from jax._src import distributed  # pylint: disable=g-import-not-at-top
  distributed.global_state.client.wait_at_barrier(
      name, timeout_in_ms=timeout_s * 1000)
