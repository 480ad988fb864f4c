"""Preemption with real `train_main.py` processes: SIGTERM, then kill -9.

One job, interrupted twice and resumed twice with the same command, must
end with exactly the parameters of an uninterrupted run.
"""
import os
import re
import signal

import jax
import numpy as np

from configs import tiny
from processes import Run, train_command
import processes
from ssp_nerf_jax.runtime import preemption
from ssp_nerf_jax.training import train

# A checkpoint every 5 steps; eval only at the end.  Each save takes a good
# fraction of a second, which leaves time to signal mid-run and to catch a
# save in progress (the SIGTERM lands a step or two after step 5, the kill
# at the first save after that: both well before step 20).
OVERRIDES = {'num_steps': 20, 'checkpoint_every': 5, 'eval_every': 20,
             'log_every': 20}
TIMEOUT_S = 240


def resumed_from(output):
  match = re.search(r'Resuming from the checkpoint at step (\d+)', output)
  return int(match.group(1)) if match else None


def test_sigterm_then_kill_9_then_resume_equals_an_uninterrupted_run(
    tiny_data, tmp_path):
  config, _ = tiny_data
  data_dir = config.data.data_dir
  workdir = str(tmp_path / 'preempted')
  command = train_command(workdir, data_dir, OVERRIDES)

  # 1. SIGTERM once training is under way: save the current step, exit 75.
  run = Run(command, num_devices=4, log_path=tmp_path / 'sigterm.log')
  processes.wait_until(lambda: 5 in processes.complete_steps(workdir),
                       TIMEOUT_S, [run], 'checkpoint at step 5')
  run.process.send_signal(signal.SIGTERM)
  assert run.wait(TIMEOUT_S) == preemption.EXIT_CODE, run.output()[-3000:]
  match = re.search(r'preempted at step (\d+): checkpoint saved in',
                    run.output())
  assert match, run.output()[-3000:]
  preempted_step = int(match.group(1))
  assert 5 <= preempted_step < OVERRIDES['num_steps']
  assert processes.complete_steps(workdir)[-1] == preempted_step

  # 2. The same command resumes there; kill -9 while it writes a checkpoint.
  run = Run(command, num_devices=4, log_path=tmp_path / 'kill.log')
  processes.wait_until(
      lambda: any(s > preempted_step
                  for s in processes.partial_steps(workdir)),
      TIMEOUT_S, [run], 'a checkpoint being written')
  run.kill()
  assert resumed_from(run.output()) == preempted_step
  partial = [s for s in processes.partial_steps(workdir) if s > preempted_step]
  complete = processes.complete_steps(workdir)
  # The kill landed mid-save: that step's checkpoint is incomplete.
  assert partial and partial[0] not in complete, (partial, complete)

  # 3. The same command again: resumes from the last complete checkpoint,
  # never from the partial one, and finishes.
  run = Run(command, num_devices=4, log_path=tmp_path / 'final.log')
  assert run.wait(TIMEOUT_S) == 0, run.output()[-3000:]
  assert resumed_from(run.output()) == complete[-1] < partial[0]
  assert not processes.partial_steps(workdir)  # orbax removed the leftover

  # Uninterrupted: the same config in this process (1 process x 4 devices).
  straight = str(tmp_path / 'straight')
  config = tiny.get_config()
  config.data.data_dir = data_dir
  config.train.update(OVERRIDES)
  assert jax.device_count() == 4  # conftest
  train.train_and_evaluate(config, straight)
  step_a, state_a = processes.read_checkpoint(workdir)
  step_b, state_b = processes.read_checkpoint(straight)
  assert step_a == step_b == OVERRIDES['num_steps']
  jax.tree.map(np.testing.assert_array_equal, state_a, state_b)
  assert os.path.exists(os.path.join(workdir, 'eval_metrics.json'))
