"""Preemption notices (SIGTERM) turned into the step at which to stop.

Schedulers (SLURM, Kubernetes, Cloud TPU) send SIGTERM some time before
they kill a preempted job.  Training then saves a checkpoint at the current
step and stops; the same command resumes from it.

One process: a Python SIGTERM handler records the notice.  Several
processes: the notice may reach only some of them, and all must save the
same step together (orbax's save is collective).  JAX's preemption sync
manager, started by jax.distributed.initialize, catches SIGTERM on whichever
process gets it and agrees with the others on a step at which all of them
stop.
"""
import signal
import threading

import jax
from jax.experimental import multihost_utils

# EX_TEMPFAIL (sysexits.h): a temporary failure, run again to continue.  Not
# 0, so that a scheduler or a retry loop does not take the job as finished.
EXIT_CODE = 75


class Preempted(Exception):
  """Training stopped on a preemption notice after saving `step`."""

  def __init__(self, step: int, workdir: str):
    super().__init__(f'preempted at step {step}: checkpoint saved in '
                     f'{workdir}; run the same command to resume')
    self.step = step
    self.workdir = workdir


class Watcher:
  """Context manager; `reached(step)` is True at the step to stop at.

  Every process must call `reached` at every step (the multi-process sync
  protocol counts on it).
  """

  def __init__(self):
    self._notified = False
    self._previous_handler = None
    self._distributed = False

  def __enter__(self):
    self._distributed = jax.distributed.is_initialized()
    # Python can only install handlers in the main thread; elsewhere SIGTERM
    # keeps its default (the process dies, and resumes from the last
    # periodic checkpoint).
    if (not self._distributed and
        threading.current_thread() is threading.main_thread()):
      self._previous_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
    return self

  def __exit__(self, *exc_info):
    if self._previous_handler is not None:
      signal.signal(signal.SIGTERM, self._previous_handler)
      self._previous_handler = None

  def _on_sigterm(self, signum, frame):  # pylint: disable=unused-argument
    # Only a flag: the loop saves at its next step boundary, where the state
    # is consistent.
    self._notified = True

  def reached(self, step: int) -> bool:
    """Whether to save `step` and stop (on every process alike)."""
    if self._distributed:
      return multihost_utils.reached_preemption_sync_point(step)
    return self._notified
