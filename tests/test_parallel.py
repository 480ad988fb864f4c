"""Joining a multi-process job (only when asked; settings are checked
before JAX is) and the one private JAX API parallel uses."""
import subprocess
import sys

import jax
import pytest

import processes
from ssp_nerf_jax.runtime import errors
from ssp_nerf_jax.runtime import parallel


@pytest.mark.parametrize('kwargs, message', [
    ({'coordinator_address': '127.0.0.1:1234'},
     '--coordinator_address also needs --num_processes, --process_id'),
    ({'num_processes': 2, 'process_id': 0},
     '--num_processes, --process_id also needs --coordinator_address'),
    ({'coordinator_address': '127.0.0.1:1234', 'num_processes': 2,
      'process_id': 2}, r'--process_id=2 is not in \[0, --num_processes=2\)'),
    ({'coordinator_address': '127.0.0.1:1234', 'num_processes': 2,
      'process_id': -1}, r'--process_id=-1 is not in'),
    ({'coordinator_address': '127.0.0.1:1234', 'num_processes': 0,
      'process_id': 0}, '--num_processes must be positive, got 0'),
    ({'coordinator_address': 'localhost', 'num_processes': 2,
      'process_id': 0}, "--coordinator_address='localhost' is not HOST:PORT"),
    ({'coordinator_address': 'host:99999', 'num_processes': 2,
      'process_id': 0}, 'is not HOST:PORT'),
    ({'heartbeat_timeout_s': 0},
     '--heartbeat_timeout_s must be a positive integer, got 0'),
])
def test_bad_settings_are_one_clear_error(kwargs, message):
  with pytest.raises(errors.UserError, match=message):
    parallel.initialize_distributed(**kwargs)


@pytest.fixture
def fake_initialize(monkeypatch):
  """Calls of jax.distributed.initialize, recorded instead of made (this
  process already uses JAX, too late to join a job); the gloo setting
  is restored afterwards."""
  calls = []
  monkeypatch.setattr(jax.distributed, 'initialize',
                      lambda *args, **kwargs: calls.append((args, kwargs)))
  name = 'jax_cpu_collectives_implementation'
  before = getattr(jax.config, name)
  yield calls
  jax.config.update(name, before)


def test_without_settings_it_is_a_single_process_run(fake_initialize):
  # Whatever cluster this runs in: joining one is opt-in.
  assert not parallel.initialize_distributed()
  assert not fake_initialize


def test_distributed_lets_jax_detect_the_job(fake_initialize):
  assert parallel.initialize_distributed(heartbeat_timeout_s=7,
                                         detect_cluster=True)
  assert fake_initialize == [((None, None, None),
                              {'heartbeat_timeout_seconds': 7})]


def test_distributed_with_explicit_flags_is_one_clear_error(fake_initialize):
  with pytest.raises(errors.UserError, match='--distributed finds the job '
                     'itself: give it or --coordinator_address, '
                     '--num_processes, --process_id, not both'):
    parallel.initialize_distributed('127.0.0.1:1234', 2, 0,
                                    detect_cluster=True)
  assert not fake_initialize


def test_the_private_barrier_is_where_wait_for_all_processes_calls_it():
  """The one private JAX API (no public barrier that is not a collective).

  Fails on a JAX that moved it: find its new place, or a public barrier
  that gloo's 30 s first-collective window does not constrain.
  """
  where = ('parallel.wait_for_all_processes calls jax._src.distributed.'
           'global_state.client.wait_at_barrier(name, timeout_in_ms=), '
           f'checked against JAX 0.10.2; JAX {jax.__version__} moved it')
  try:
    from jax._src import distributed  # pylint: disable=g-import-not-at-top
    state = distributed.global_state
    client_type = state.__annotations__['client']
    from jax._src.lib import _jax  # pylint: disable=g-import-not-at-top
    barrier = _jax.DistributedRuntimeClient.wait_at_barrier
  except (ImportError, AttributeError, KeyError) as e:
    pytest.fail(f'{where} ({type(e).__name__}: {e})')
  assert hasattr(state, 'client'), where
  assert 'DistributedRuntimeClient' in str(client_type), where
  assert 'wait_at_barrier(self, barrier_id: str, timeout_in_ms: int' in (
      barrier.__doc__ or ''), f'{where}: {barrier.__doc__}'


def test_a_one_process_job_passes_the_barrier(tmp_path):
  """The private barrier for real, in a job of one process (fast)."""
  script = (
      'import sys\n'
      'from ssp_nerf_jax.runtime import parallel\n'
      'assert parallel.initialize_distributed(sys.argv[1], 1, 0)\n'
      'parallel.wait_for_all_processes("test", timeout_s=30)\n'
      'parallel.wait_for_all_processes("test", timeout_s=30)\n'
      'print("passed")\n')
  result = subprocess.run(
      [sys.executable, '-c', script, f'127.0.0.1:{processes.free_port()}'],
      cwd=tmp_path, env=processes.subprocess_env(1), capture_output=True,
      text=True, timeout=120, check=False)
  assert result.returncode == 0 and result.stdout == 'passed\n', (
      result.stderr[-3000:])


def no_cluster_env():
  """A one-device subprocess environment with no trace of a cluster that
  jax.distributed.initialize() would detect (should the tests run in one)."""
  env = processes.subprocess_env(1)
  return {k: v for k, v in env.items()
          if not k.startswith(('SLURM_', 'OMPI_', 'PMIX_', 'KUBERNETES_',
                               'TPU_', 'MEGASCALE_', 'JAX_COORDINATOR'))}


@pytest.mark.parametrize('main, flags, line', [
    ('train_main.py', ['--coordinator_address=127.0.0.1:1234',
                       '--num_processes=2', '--process_id=2'],
     'error: --process_id=2 is not in [0, --num_processes=2)'),
    ('render_main.py', ['--out=OUT', '--split=val', '--distributed'],
     'error: --distributed: cannot join the job JAX detects (Cloud TPU, '
     'SLURM, Open MPI, Kubernetes; elsewhere give --coordinator_address, '
     '--num_processes, --process_id): '),  # then JAX's reason
])
def test_entry_points_report_bad_flags_in_one_line(tmp_path, main, flags,
                                                   line):
  flags = [f.replace('OUT', str(tmp_path / 'out')) for f in flags]
  result = subprocess.run(
      [sys.executable, main, f'--workdir={tmp_path}', *flags],
      cwd=processes.REPO, env=no_cluster_env(), capture_output=True,
      text=True, timeout=120, check=False)
  assert result.returncode == 1, result.stderr[-3000:]
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(line), lines
