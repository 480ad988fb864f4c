"""Device mesh, data-parallel helpers and the multi-process job.

One 1-D mesh with axis 'data' spans every device of every process, so the
same program runs on one CPU, eight GPUs or a TPU pod.  Parameters are
replicated; frames (and the rays drawn from them) are split along 'data'.

Several processes (hosts) join one job through `initialize_distributed`,
which the entry points call before JAX touches a device.  A job is joined
only when asked (as big_vision does): by --distributed on a cluster JAX
detects, or by --coordinator_address, --num_processes and --process_id.
"""
import sys
from typing import Optional

import jax
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np

from ssp_nerf_jax.runtime import errors

DATA_AXIS = 'data'
# JAX's default: a process silent for this long is declared dead, and the
# coordination service then stops every other process with an error.
DEFAULT_HEARTBEAT_TIMEOUT_S = 100
# What jax.distributed.initialize() recognises by itself (its docstring).
DETECTED_CLUSTERS = 'Cloud TPU, SLURM, Open MPI, Kubernetes'
EXPLICIT_FLAGS = ('--coordinator_address', '--num_processes', '--process_id')


def initialize_distributed(
    coordinator_address: Optional[str] = None,
    num_processes: Optional[int] = None,
    process_id: Optional[int] = None,
    heartbeat_timeout_s: int = DEFAULT_HEARTBEAT_TIMEOUT_S,
    detect_cluster: bool = False) -> bool:
  """Joins a multi-process job if asked to; otherwise does nothing.

  With all three of `coordinator_address`, `num_processes` and `process_id`
  the job is the one they describe.  With `detect_cluster` (--distributed)
  `jax.distributed.initialize()` finds the job itself (Cloud TPU VMs and
  pod slices, SLURM, Open MPI, Kubernetes).  With neither this is a
  single-process run and JAX's distributed runtime is never started.
  Must run before JAX touches a device.

  Returns:
    Whether jax.distributed was initialised.
  Raises:
    errors.UserError: an incomplete or invalid setting (named), or a job
      that could not be joined.
  """
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
  # Cross-process collectives of the CPU backend (a CPU-only job, or the
  # tests' simulated devices) need an implementation; gloo runs over TCP.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  try:
    # All three None (--distributed): JAX detects the cluster.
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
  """Prints a progress line on process 0 (stderr), before a start-up stage
  that takes more than a few seconds, so that a user never waits in
  silence."""
  if is_main_process():
    print(line, file=sys.stderr, flush=True)


def all_processes_agree(ok: bool) -> bool:
  """Whether `ok` holds on every process (a collective; `ok` alone when
  there is one process)."""
  if jax.process_count() == 1:
    return ok
  return bool(np.all(multihost_utils.process_allgather(np.int32(ok))))


def from_main_process(values: np.ndarray) -> np.ndarray:
  """Process 0's `values`, an array of the same shape and dtype on every
  process (a collective)."""
  if jax.process_count() == 1:
    return values
  return np.asarray(multihost_utils.broadcast_one_to_all(values))


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


def data_sharded(mesh, axis: int = 0) -> NamedSharding:
  """Axis `axis` (default the leading one) split over 'data'."""
  return NamedSharding(mesh, P(*([None] * axis), DATA_AXIS))


def replicate(tree, mesh):
  """Places a pytree, the same on every process, on every device of the mesh.

  `tree` holds host values or arrays on this process's devices.
  """
  sharding = replicated(mesh)
  if not sharding.is_fully_addressable:
    # Device-to-device copies to other processes' devices are unsupported
    # (CPU) or slow; every process has the values, so each one places its
    # own copies from host memory.
    tree = jax.device_get(tree)
  return jax.device_put(tree, sharding)


def wait_for_all_processes(name: str, timeout_s: int = 1800) -> None:
  """Blocks until every process has reached the barrier `name`.

  A no-op unless jax.distributed is initialised.  Uses the coordination
  service, not a collective: on CPU, gloo gives the first collective over a
  set of devices only 30 s to find every peer, less than what comes before
  it can take (compiling the train step on a busy host, process 0 building
  the dataset), so processes line up here first.  Every process calls it with the same
  `name`.
  """
  if not jax.distributed.is_initialized():
    return
  # The only private JAX API of the project, checked against JAX 0.10.2:
  # JAX has no public barrier that is not a collective
  # (multihost_utils.sync_global_devices is one).  The client is
  # jax.distributed's connection to the coordination service;
  # tests/test_parallel.py fails if it moves.
  from jax._src import distributed  # pylint: disable=g-import-not-at-top
  distributed.global_state.client.wait_at_barrier(
      name, timeout_in_ms=timeout_s * 1000)
