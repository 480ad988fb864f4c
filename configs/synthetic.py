"""Embedded CPU demo: the procedural talking portrait, trained on a laptop."""
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

  # SSP-NeRF's sampler: half the rays uniform, the rest by class loss.
  config.sampling.strategy = 'semantic'
  # For strategy=face_rect: AD-NeRF's 0.95 starves torso and background.
  config.sampling.face_rect_fraction = 0.5

  config.render.num_coarse = 32
  config.render.num_fine = 32
  config.render.chunk = 4096

  # Per ray, steps of 256 rays learn faster than steps of 512.
  config.train.num_steps = 3200
  config.train.rays_per_frame = 256
  config.train.lr = 1e-3  # a short schedule starts higher
  config.train.lr_decay_steps = 3200
  config.train.audio_smoothing_start = 1600
  config.train.log_every = 100
  config.train.eval_every = 1600
  config.train.checkpoint_every = 1600
  config.train.eval_frames = 4
  return config
