"""Seconds-scale config for tests and smoke runs: tiny data, tiny model."""
from configs import synthetic


def get_config():
  config = synthetic.get_config()
  config.data.size = 32
  config.data.duration_s = 2.0
  config.data.audio_dim = 8

  config.model.xyz_freqs = 4
  config.model.dir_freqs = 2
  config.model.depth = 2
  config.model.width = 32
  config.model.skip_layer = 1
  config.model.view_width = 16
  config.model.audio_code_dim = 8

  config.render.num_coarse = 8
  config.render.num_fine = 8
  config.render.chunk = 1024

  config.train.num_steps = 6
  config.train.rays_per_frame = 64
  config.train.ray_chunk = 32  # two chunks: exercises gradient accumulation
  config.train.lr_decay_steps = 100
  config.train.audio_smoothing_start = 3
  config.train.log_every = 2
  config.train.eval_every = 6
  config.train.checkpoint_every = 3
  config.train.eval_frames = 1
  return config
