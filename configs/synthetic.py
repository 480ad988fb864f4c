"""Embedded CPU demo: the procedural talking portrait, trained end to end.

Sized so that `python train_main.py` (this config) trains in a quarter of
an hour on a 2-core CPU (README, "Measured", has the figures).  Override any
value on the command line, e.g. `--config=configs/synthetic.py
--config.train.num_steps=100`.
"""
from configs import default


def get_config():
  config = default.get_config()
  config.data.builder_config = 'synthetic'
  config.data.size = 96
  config.data.duration_s = 24.0
  config.data.synthetic_seed = 0

  config.model.depth = 4
  config.model.width = 128
  config.model.skip_layer = 2
  config.model.view_width = 64

  # SSP-NeRF's semantic sampler: half the rays uniform, the rest per class
  # by the class's running loss (see the sampling benchmark in README for
  # the comparison).
  config.sampling.strategy = 'semantic'
  # With strategy=face_rect: half the rays in the face rectangle (AD-NeRF's
  # 0.95 starves torso and background here).
  config.sampling.face_rect_fraction = 0.5

  config.render.num_coarse = 32
  config.render.num_fine = 32
  config.render.chunk = 4096

  # 3200 steps of 256 rays: per ray, steps of 256 rays learn faster than
  # steps of 512 (README, "Measured": the demo against 2400 x 512 rays).
  config.train.num_steps = 3200
  config.train.rays_per_frame = 256
  config.train.lr = 1e-3  # a short schedule: start higher, decay 10x
  config.train.lr_decay_steps = 3200
  config.train.audio_smoothing_start = 1600
  config.train.log_every = 100
  config.train.eval_every = 1600
  config.train.checkpoint_every = 1600
  config.train.eval_frames = 4
  return config
