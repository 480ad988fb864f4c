"""Train on a talking-head video (preprocessed once); `:cpu` is a laptop trial.

  python train_main.py --config=configs/video.py[:cpu] --config.data.video=F"""
from configs import adnerf


def get_config(config_string=None):
  """`config_string`: None/'' (accelerator) or 'cpu'."""
  if config_string not in (None, '', 'cpu'):
    raise ValueError(f"configs/video.py takes '' or ':cpu', got "
                     f'{config_string!r}')
  config = adnerf.get_config(config_string)
  config.data.builder_config = 'video'
  config.data.video = ''
  # Mouth opening (from audio on new speech) and speech act only near the
  # lips (radius in mouth widths): the audio code alone keeps an average mouth.
  config.model.mouth_condition = True
  config.model.mouth_region_radius = 0.6
  config.model.audio_in_mouth_region = True
  # Blinks: the measured eye openness acts near the eyes.
  config.model.eye_condition = True
  # Per-frame pose corrections learned with the field (fitted poses are off
  # by a few degrees); val poses refined against their frames for scoring.
  config.pose_refinement.enabled = True
  # Whisper tiny's encoder predicts the mouth from audio better than MFCC.
  config.data.audio_feature = 'whisper'
  config.data.audio_dim = 384
  if config_string == 'cpu':
    # Openings are learnt from rays near the mouth.
    config.sampling.mouth_share = 0.25
    # Adam at 1e-3 leaves even the train frames a blurred, banded average;
    # 3e-3 (decaying 10x) fits the face in time.
    config.train.lr = 3e-3
    # The field is far from converged at this budget: many small steps
    # (the same rays per second as fewer large ones) fit it further.
    config.train.rays_per_frame = 128
    config.train.num_steps = 12800
    config.train.lr_decay_steps = 12800
    config.train.audio_smoothing_start = 6400
    config.train.eval_every = 6400
    config.train.checkpoint_every = 6400
    # Half the samples per ray over [near, far]: more steps for the time.
    config.occupancy.train = True
    config.occupancy.train_grid = 'none'
    config.occupancy.train_sample_fraction = 0.5
    # Off: in 12800 steps of one frame each, a frame is in a batch 11-28 times,
    # too few for its correction to learn (measured on two real clips: no
    # gain on one, a loss on the one whose head moves most; see results).
    config.pose_refinement.enabled = False
  return config
