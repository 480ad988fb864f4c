"""When training samples by an occupancy grid (config.occupancy.train).

`create_schedule(exp, state)` gives the loop an object with
`refresh(state, step)` (the state, its grid measured when due), `active`
(use the occupancy train step) and `report()` (figures for the eval record).
"""
import time

import jax

from ssp_nerf_jax.data import input_pipeline
from ssp_nerf_jax.rendering import occupancy
from ssp_nerf_jax.training import train_step


def create_schedule(exp, state):
  """The schedule of config.occupancy.train_grid."""
  if exp.config.occupancy.train_grid in ('step', 'none'):
    return AfterWarmup(exp.config.occupancy)
  return ClipGrid(exp, state)


class AfterWarmup:
  """train_grid 'step' (the step measures its frames' grids) or 'none':
  nothing to keep; the occupancy step from the end of warm-up on."""

  def __init__(self, settings):
    occupancy.check_settings(settings)
    self.warmup = settings.train_warmup_steps
    self.active = False

  def refresh(self, state, state_step: int):
    self.active = state_step >= self.warmup
    return state

  def report(self) -> dict:
    return {}


class ClipGrid:
  """train_grid 'clip': keeps the state's clip-wide grid, the largest
  density over a fixed set of train frames (`occupancy.grid_frames`),
  measured at the end of warm-up and every train_update_every steps after;
  the occupancy step once it is measured.  The schedule depends only on
  the step, so a resumed run refreshes as an uninterrupted one."""

  def __init__(self, exp, state):
    settings = exp.config.occupancy
    occupancy.check_settings(settings)
    self.settings = settings
    self.train_config = exp.config.train
    picks = occupancy.grid_frames(
        input_pipeline.load_poses(exp.builder, 'train'),
        input_pipeline.load_feature(exp.builder, 'train', 'mouth_open'),
        settings.train_pose_frames)
    frames = input_pipeline.load_split(exp.config, exp.builder, 'train',
                                       picks)
    self.c2w, self.audio = frames['c2w'], frames['audio']
    self.grids = occupancy.FrameGrids(
        exp.model, settings, exp.state_defaults()['occupancy'].box, exp.mesh,
        resolution=settings.train_resolution)
    self.active = occupancy.measured(state.occupancy)
    self.seconds, self.count, self.first_seconds = 0.0, 0, None

  def due(self, state_step: int) -> bool:
    """Whether the grid is measured before the step from `state_step`:
    at the end of warm-up, every train_update_every steps after, and
    whenever warm-up is over and the grid was never measured (a resumed
    run of a state without one)."""
    warmup = self.settings.train_warmup_steps
    if state_step < warmup:
      return False
    return (not self.active or
            (state_step - warmup) % self.settings.train_update_every == 0)

  def refresh(self, state, state_step: int):
    """`state` with its grid measured if `due`."""
    if not self.due(state_step):
      return state
    start = time.perf_counter()
    smooth = train_step.is_smoothing_on(state_step, self.train_config)
    grid = self.grids.largest(state.params, self.c2w, self.audio, smooth)
    jax.block_until_ready(grid)
    seconds = time.perf_counter() - start
    if self.first_seconds is None:
      self.first_seconds = seconds  # with its compilation
    else:
      self.seconds += seconds
    self.count += 1
    self.active = True
    return state.replace(occupancy=grid)

  def report(self) -> dict:
    """The grid's figures for the eval record."""
    return {'grid_refreshes': self.count,
            # The first (compiling) refresh apart from the others' total.
            'grid_first_refresh_s': self.first_seconds,
            'grid_refresh_s': self.seconds,
            'grid_frames': len(self.c2w)}
