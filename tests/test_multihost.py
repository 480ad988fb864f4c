"""Two real processes x 2 simulated CPU devices, over 127.0.0.1 with gloo.

Each process is `train_main.py` with --coordinator_address, --num_processes
and --process_id, training on its own shard of the data (--distributed, the
cluster JAX detects, is checked on a simulated SLURM job step).  Their results must
match one process with the same 4 devices, and a dead peer must stop the
other within a bounded time.  (Two `render_main.py` processes: see
test_offline_jobs.py.)
"""
import os
import re
import signal
import sys

import jax
import numpy as np
import pytest

from processes import Run, distributed_flags, free_port, train_command
import processes
from ssp_nerf_jax.runtime import preemption
from ssp_nerf_jax.training import train

# Step-by-step losses; eval (replicated rendering) and a checkpoint at the
# end.
OVERRIDES = {'num_steps': 4, 'log_every': 1, 'eval_every': 4,
             'checkpoint_every': 4}
TIMEOUT_S = 300  # compilation on 2 shared cores; a hang fails after this


@pytest.fixture
def data_dir(tiny_data):
  config, _ = tiny_data
  return config.data.data_dir


def start_pair(tmp_path, command_for):
  """Processes 0 and 1 of a 2-process job, 2 devices each.

  `command_for(flags)`: the command line of a process, given its
  --coordinator_address, --num_processes and --process_id flags.
  """
  port = free_port()
  return [Run(command_for(distributed_flags(port, 2, i)), num_devices=2,
              log_path=tmp_path / f'process_{i}.log')
          for i in range(2)]


def train_pair(tmp_path, workdir, data_dir, overrides, *flags):
  return start_pair(tmp_path, lambda distributed: train_command(
      workdir, data_dir, overrides, *distributed, *flags))


@pytest.fixture(scope='module')
def two_processes(tiny_data, tmp_path_factory):
  """(workdir, [process 0 output, process 1 output]) of a finished job."""
  config, _ = tiny_data
  tmp_path = tmp_path_factory.mktemp('two_processes')
  workdir = str(tmp_path / 'workdir')
  runs = train_pair(tmp_path, workdir, config.data.data_dir, OVERRIDES)
  for run in runs:
    assert run.wait(TIMEOUT_S) == 0, run.output()[-3000:]
  return workdir, [run.output() for run in runs]


@pytest.fixture(scope='module')
def one_process(tiny_data, tmp_path_factory):
  """The workdir of the same job run here: 1 process x 4 devices."""
  config, _ = tiny_data
  config = config.copy_and_resolve_references()
  config.train.update(OVERRIDES)
  assert jax.device_count() == 4 and jax.process_count() == 1  # conftest
  workdir = str(tmp_path_factory.mktemp('one_process') / 'workdir')
  train.train_and_evaluate(config, workdir)
  return workdir


def test_two_processes_train_like_one_with_the_same_devices(two_processes,
                                                            one_process):
  two, outputs = two_processes
  one = one_process
  losses_two = processes.read_scalars(two, 'train/loss')
  losses_one = processes.read_scalars(one, 'train/loss')
  assert sorted(losses_one) == [1, 2, 3, 4]
  assert sorted(losses_two) == sorted(losses_one)
  np.testing.assert_allclose([losses_two[s] for s in range(1, 5)],
                             [losses_one[s] for s in range(1, 5)], rtol=1e-5)
  assert losses_one[1] != losses_one[4]  # training moved
  step_two, state_two = processes.read_checkpoint(two)
  step_one, state_one = processes.read_checkpoint(one)
  assert step_two == step_one == 4
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-6),
               state_two['params'], state_one['params'])
  # Only process 0 wrote summaries and eval results.
  assert len(processes.event_files(two)) == 1
  assert os.path.exists(os.path.join(two, 'eval_metrics.json'))
  assert 'step 4: val psnr=' in outputs[0]
  assert 'val psnr' not in outputs[1]


def test_sigterm_to_one_process_stops_both_at_the_same_step(data_dir,
                                                            tmp_path):
  workdir = str(tmp_path / 'job')
  runs = train_pair(tmp_path, workdir, data_dir,
                    {'num_steps': 100000, 'checkpoint_every': 2,
                     'eval_every': 100000})
  try:
    processes.wait_until(lambda: 2 in processes.complete_steps(workdir),
                         TIMEOUT_S, runs, 'checkpoint at step 2')
    # The scheduler's notice reaches process 1 only.
    runs[1].process.send_signal(signal.SIGTERM)
    statuses = [run.wait(TIMEOUT_S) for run in runs]
  finally:
    for run in runs:
      run.kill()
  assert statuses == [preemption.EXIT_CODE] * 2, runs[0].output()[-3000:]
  steps = {int(re.search(r'preempted at step (\d+)', run.output()).group(1))
           for run in runs}
  assert len(steps) == 1  # both saved the same step, together
  assert processes.complete_steps(workdir)[-1] == steps.pop()


def test_a_dead_peer_stops_the_other_process_in_bounded_time(data_dir,
                                                             tmp_path):
  workdir = str(tmp_path / 'job')
  heartbeat_s = 5
  runs = train_pair(tmp_path, workdir, data_dir,
                    {'num_steps': 100000, 'eval_every': 100000},
                    f'--heartbeat_timeout_s={heartbeat_s}')
  try:
    # Process 0's progress bar: both are past the set-up barriers and about
    # to block in the first step's collectives.
    processes.wait_until(lambda: 'train:' in runs[0].output(), TIMEOUT_S,
                         runs, 'the training loop')
    runs[1].kill()  # SIGKILL: no goodbye to the coordination service
    status = runs[0].wait(heartbeat_s + 55)  # fails the test if it hangs
  finally:
    for run in runs:
      run.kill()
  assert status != 0
  output = runs[0].output()
  assert 'JAX distributed service detected fatal errors' in output, (
      output[-3000:])
  assert 'stopped sending heartbeats' in output


# What a SLURM job step's process sees (of the variables JAX reads); the
# coordinator is the step's first node, at JAX_COORDINATOR_PORT.
JOIN_SCRIPT = """
import sys
from absl import flags
from ssp_nerf_jax import cli
from ssp_nerf_jax.runtime import parallel
cli.define_process_flags()
flags.FLAGS(sys.argv)
assert cli.join_processes_from_flags()
parallel.wait_for_all_processes('joined')
import jax
print('process', jax.process_index(), 'of', jax.process_count(), 'with',
      jax.device_count(), 'devices')
"""


def test_distributed_joins_the_job_jax_detects(tmp_path):
  """--distributed and no other flag: JAX finds the job (here SLURM's) and
  both processes pass the coordination-service barrier."""
  port = free_port()
  runs = [Run([sys.executable, '-c', JOIN_SCRIPT, '--distributed'],
              num_devices=2, log_path=tmp_path / f'process_{i}.log',
              extra_env={'SLURM_JOB_ID': '1', 'SLURM_STEP_NODELIST':
                         '127.0.0.1', 'SLURM_NTASKS': '2',
                         'SLURM_PROCID': str(i), 'SLURM_LOCALID': str(i),
                         'JAX_COORDINATOR_PORT': str(port)})
          for i in range(2)]
  try:
    statuses = [run.wait(120) for run in runs]
  finally:
    for run in runs:
      run.kill()
  for i, run in enumerate(runs):
    assert statuses[i] == 0, run.output()[-3000:]
    assert f'process {i} of 2 with 4 devices' in run.output()
