"""Real `train_main.py` / `render_main.py` processes for the multi-host,
preemption and rendering tests.

The test process itself already runs JAX with 4 simulated CPU devices
(conftest.py), so a run with another device count, or one of several
processes, is a subprocess told its device count through XLA_FLAGS before
it imports JAX.  Subprocesses share the session's compilation cache, and
every wait is bounded: a hung collective fails the test instead of hanging
CI.
"""
import os
import re
import socket
import struct
import subprocess
import sys
import time

import jax
import orbax.checkpoint as ocp
from tensorboardX.proto import event_pb2

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_MAIN = os.path.join(REPO, 'train_main.py')
RENDER_MAIN = os.path.join(REPO, 'render_main.py')


def free_port() -> int:
  """A TCP port on 127.0.0.1 that nothing listens on right now."""
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def subprocess_env(num_devices: int) -> dict[str, str]:
  """Environment of a JAX process with `num_devices` simulated CPUs."""
  env = dict(os.environ)
  flags = [f for f in env.get('XLA_FLAGS', '').split()
           if not f.startswith('--xla_force_host_platform_device_count')]
  env['XLA_FLAGS'] = ' '.join(
      flags + [f'--xla_force_host_platform_device_count={num_devices}'])
  env['JAX_PLATFORMS'] = 'cpu'
  env['PYTHONUNBUFFERED'] = '1'  # a killed process's log is complete
  cache = jax.config.jax_compilation_cache_dir
  if cache:
    env['JAX_COMPILATION_CACHE_DIR'] = cache
    env['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = str(
        jax.config.jax_persistent_cache_min_compile_time_secs)
  # The tests run from the worktree: make its package win over any other
  # installed copy.
  env['PYTHONPATH'] = os.pathsep.join(
      [REPO] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p])
  return env


def train_command(workdir, data_dir, overrides, *flags) -> list[str]:
  """`python train_main.py` on configs/tiny.py with config.train overrides."""
  return ([sys.executable, TRAIN_MAIN, '--config=configs/tiny.py',
           f'--workdir={workdir}', f'--config.data.data_dir={data_dir}'] +
          [f'--config.train.{k}={v}' for k, v in overrides.items()] +
          list(flags))


def render_command(workdir, out, *flags) -> list[str]:
  """`python render_main.py` on a trained workdir, writing to `out`."""
  return [sys.executable, RENDER_MAIN, f'--workdir={workdir}', f'--out={out}',
          *flags]


def distributed_flags(port, num_processes, process_id) -> list[str]:
  return [f'--coordinator_address=127.0.0.1:{port}',
          f'--num_processes={num_processes}', f'--process_id={process_id}']


class Run:
  """A subprocess whose combined output goes to a log file."""

  def __init__(self, command, num_devices, log_path, extra_env=None):
    self.log_path = str(log_path)
    self._log = open(self.log_path, 'wb')
    self.process = subprocess.Popen(
        command, cwd=REPO, env={**subprocess_env(num_devices),
                                **(extra_env or {})},
        stdout=self._log, stderr=subprocess.STDOUT)

  @property
  def pid(self):
    return self.process.pid

  def output(self) -> str:
    with open(self.log_path, errors='replace') as f:
      return f.read()

  def wait(self, timeout) -> int:
    """The exit status; kills the process and fails after `timeout` s."""
    try:
      return self.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
      self.kill()
      raise AssertionError(f'{self.log_path}: still running after {timeout} '
                           f's; output ends with:\n{self.output()[-3000:]}')
    finally:
      self._log.close()

  def kill(self):
    """SIGKILL (no clean-up of any kind), if still running."""
    if self.process.poll() is None:
      self.process.kill()
      self.process.wait()
    self._log.close()


def wait_until(condition, timeout, runs, what):
  """Polls `condition()` until true; fails if a run ends first or time's up."""
  deadline = time.monotonic() + timeout
  while not condition():
    for run in runs:
      if run.process.poll() is not None:
        raise AssertionError(f'{run.log_path} ended ({run.process.returncode}) '
                             f'before {what}:\n{run.output()[-3000:]}')
    if time.monotonic() > deadline:
      for run in runs:
        run.kill()
      raise AssertionError(f'no {what} after {timeout} s')
    time.sleep(0.005)


def checkpoint_names(workdir) -> list[str]:
  """Entries of `<workdir>/checkpoints` (complete steps and tmp dirs)."""
  path = os.path.join(workdir, 'checkpoints')
  return os.listdir(path) if os.path.isdir(path) else []


def complete_steps(workdir) -> list[int]:
  return sorted(int(n) for n in checkpoint_names(workdir) if n.isdigit())


def partial_steps(workdir) -> list[int]:
  """Steps whose checkpoint orbax was still writing (its tmp dirs)."""
  return sorted(int(m.group(1)) for n in checkpoint_names(workdir)
                if (m := re.fullmatch(r'(\d+)\.orbax-checkpoint-tmp.*', n)))


def read_checkpoint(workdir):
  """(step, state) of the newest complete checkpoint, on one device.

  Works whatever the saving job's device layout (e.g. 2 processes x 2
  devices): the target names this process's first device.
  """
  manager = ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), 'checkpoints'),
      options=ocp.CheckpointManagerOptions(read_only=True),
      item_handlers=ocp.StandardCheckpointHandler())  # for item_metadata
  step = manager.latest_step()
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
      manager.item_metadata(step))
  return step, manager.restore(step, args=ocp.args.StandardRestore(target))


def event_files(workdir) -> list[str]:
  tb = os.path.join(workdir, 'tb')
  return sorted(os.path.join(tb, n) for n in os.listdir(tb)
                if n.startswith('events'))


def read_scalars(workdir, tag) -> dict[int, float]:
  """{step: value} of a TensorBoard scalar written by tensorboardX."""
  values = {}
  for path in event_files(workdir):
    with open(path, 'rb') as f:
      data = f.read()
    offset = 0
    # TFRecord framing: uint64 length, uint32 crc, payload, uint32 crc.
    while offset < len(data):
      (length,) = struct.unpack('<Q', data[offset:offset + 8])
      event = event_pb2.Event.FromString(
          data[offset + 12:offset + 12 + length])
      offset += 16 + length
      for value in event.summary.value:
        if value.tag == tag:
          values[event.step] = value.simple_value
  return values
