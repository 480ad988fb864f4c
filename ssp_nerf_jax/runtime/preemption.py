"""Preemption notices (SIGTERM) turned into the step where all processes
stop."""
import signal
import threading

import jax
from jax.experimental import multihost_utils

# EX_TEMPFAIL: not 0, so schedulers and retry loops run the job again.
EXIT_CODE = 75


class Preempted(Exception):
  """Training stopped on a preemption notice after saving `step`."""

  def __init__(self, step: int, workdir: str):
    super().__init__(f'preempted at step {step}: checkpoint saved in '
                     f'{workdir}; run the same command to resume')
    self.step = step
    self.workdir = workdir


class Watcher:
  """Context manager; `reached(step)`, called every step, says when to stop."""

  def __init__(self):
    self._notified = False
    self._previous_handler = None
    self._distributed = False

  def __enter__(self):
    self._distributed = jax.distributed.is_initialized()
    if (not self._distributed and
        threading.current_thread() is threading.main_thread()):
      self._previous_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
    return self

  def __exit__(self, *exc_info):
    if self._previous_handler is not None:
      signal.signal(signal.SIGTERM, self._previous_handler)
      self._previous_handler = None

  def _on_sigterm(self, signum, frame):  # pylint: disable=unused-argument
    self._notified = True

  def reached(self, step: int) -> bool:
    """Whether to save `step` and stop (on every process alike)."""
    if self._distributed:
      return multihost_utils.reached_preemption_sync_point(step)
    return self._notified
