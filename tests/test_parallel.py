"""Joining a multi-process job: settings are checked before JAX is."""
import subprocess
import sys

import pytest

from processes import REPO
from processes import subprocess_env
from ssp_nerf_jax import errors
from ssp_nerf_jax import parallel


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


def test_without_settings_or_cluster_it_is_a_single_process_run():
  if parallel.detected_cluster():
    pytest.skip(f'running inside a {parallel.detected_cluster()} job')
  assert not parallel.initialize_distributed()


def test_train_main_reports_bad_flags_in_one_line(tmp_path):
  result = subprocess.run(
      [sys.executable, 'train_main.py', f'--workdir={tmp_path}',
       '--coordinator_address=127.0.0.1:1234', '--num_processes=2',
       '--process_id=2'],
      cwd=REPO, env=subprocess_env(1), capture_output=True, text=True,
      timeout=120, check=False)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      'error: --process_id=2 is not in [0, --num_processes=2)']
