"""A run's report: a progress bar, TensorBoard summaries, eval lines."""
import os
from typing import Optional

import jax
import numpy as np
import tensorboardX
import tqdm

from ssp_nerf_jax.runtime import parallel


class StepTimer:
  """Seconds spent in train steps: over the current log window (for the
  rays/s figure) and over the run without its first, compiling, step."""

  def __init__(self):
    self.window_steps, self.window_time = 0, 0.0
    self.timed_steps, self.timed_time = 0, 0.0
    self._first = True

  def add(self, seconds: float) -> None:
    self.window_steps += 1
    self.window_time += seconds
    if not self._first:
      self.timed_steps += 1
      self.timed_time += seconds
    self._first = False

  def window_rate(self, items_per_step: float) -> float:
    """Items per second over the window, which then starts afresh."""
    rate = items_per_step * self.window_steps / max(self.window_time, 1e-9)
    self.window_steps, self.window_time = 0, 0.0
    return rate

  def mean_step_time(self) -> Optional[float]:
    """Mean seconds per step bar the first; None before the second step."""
    return self.timed_time / self.timed_steps if self.timed_steps else None


def write_summaries(writer, step, metrics, class_names):
  for name, value in metrics.items():
    value = np.asarray(value)
    if value.ndim == 0:
      writer.add_scalar(f'train/{name}', float(value), step)
    else:
      for k, class_name in enumerate(class_names):
        writer.add_scalar(f'train_{name}/{class_name}', float(value[k]), step)


class Progress:
  """The run's report: a progress bar, and on process 0 TensorBoard
  summaries and a line per evaluation."""

  def __init__(self, config, workdir, class_names, start_step):
    self.config, self.workdir, self.class_names = config, workdir, class_names
    self.timer = StepTimer()
    self.rays_per_step = (config.train.rays_per_frame *
                          global_batch_size(config))
    is_main = parallel.is_main_process()
    self.writer = (tensorboardX.SummaryWriter(os.path.join(workdir, 'tb'))
                   if is_main else None)
    self.bar = tqdm.tqdm(total=config.train.num_steps, initial=start_step,
                         disable=not is_main, dynamic_ncols=True, desc='train')

  def step(self, step, seconds, loss, metrics):
    """Counts a step; on the log schedule, shows and records its metrics."""
    self.timer.add(seconds)
    self.bar.update(1)
    train_config = self.config.train
    if step % train_config.log_every and step != train_config.num_steps:
      return
    rays_per_s = self.timer.window_rate(self.rays_per_step)
    metrics = jax.device_get(metrics)
    self.bar.set_postfix(loss=f'{loss:.4f}',
                         psnr=f'{float(metrics["psnr"]):.2f}',
                         rays_s=f'{rays_per_s:.0f}')
    if self.writer:
      write_summaries(self.writer, step, metrics, self.class_names)
      self.writer.add_scalar('train/rays_per_s', rays_per_s, step)

  def evaluated(self, step, eval_metrics):
    if not self.writer:
      return
    self.bar.write(f'step {step}: val psnr={eval_metrics["psnr"]:.2f} '
                   f'ssim={eval_metrics["ssim"]:.4f} '
                   f'miou={eval_metrics["miou"]:.4f}')
    for name in ('psnr', 'ssim', 'miou'):
      self.writer.add_scalar(f'eval/{name}', eval_metrics[name], step)

  def close(self):
    self.bar.close()
    if self.writer:
      self.writer.close()


def global_batch_size(config):
  """Frames per global step."""
  return config.data.frames_per_device * jax.device_count()
