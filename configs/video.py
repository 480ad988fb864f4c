"""Train on a talking-head video: preprocessed on first use, then trained.

  python train_main.py --config=configs/video.py:cpu --config.data.video=clip.mp4
  python train_main.py --config=configs/video.py --config.data.video=clip.mp4

The video is preprocessed once (`python -m ssp_nerf_jax.preprocess` does the
same by hand) into `<data_dir>/videos/`, keyed by its content hash, into
square frames of `config.data.video_size` px; the folder is then read like
an AD-NeRF/SSP-NeRF processed folder (configs/adnerf.py).  The plain config
is the accelerator starting point (paper-scale model at the preprocessed
size); `:cpu` is a laptop trial: the synthetic demo's model and step
count on frames resized to 96 px, twice its rays at half the samples.
"""
from configs import adnerf


def get_config(config_string=None):
  """`config_string`: None/'' (accelerator) or 'cpu'."""
  if config_string not in (None, '', 'cpu'):
    raise ValueError(f"configs/video.py takes '' or ':cpu', got "
                     f'{config_string!r}')
  config = adnerf.get_config(config_string)
  config.data.builder_config = 'video'
  config.data.video = ''  # required: --config.data.video=clip.mp4
  # Preprocessing measures every frame's mouth opening, so the field is
  # given it (predicted from the audio on new speech): the learned audio
  # code alone barely varies across frames at the CPU budget, and the
  # rendered mouth stays the average one (README, "Measured").
  config.model.mouth_condition = True
  # The opening acts only around the mouth (a Gaussian of 0.6 mouth widths
  # around the lips' centre, triangulated from the train parsing): given to
  # the whole face it moved pixels everywhere but the lips (README,
  # "Measured").
  config.model.mouth_region_radius = 0.6
  # The speech (the audio code) acts there too, as ER-NeRF's region
  # attention confines it: given to the whole frame, the code of unseen
  # speech moved the rest of the face (README, "Measured").
  config.model.audio_in_mouth_region = True
  # A pretrained speech model's features: Whisper tiny's encoder (384 per
  # 20 ms step) predicts the mouth opening from the audio better than MFCC
  # or log-mel on real clips of 20 s and more (README, "Measured").
  config.data.audio_feature = 'whisper'
  config.data.audio_dim = 384
  if config_string == 'cpu':
    # A quarter of the rays (out of the semantic sampler's loss-driven
    # half) in a box around the mouth: at this budget the field learns the
    # look of each opening only from the rays that land there.
    config.sampling.mouth_share = 0.25
    # Twice the rays at half the samples each (16 + 16 after 200 steps of
    # full sampling, no grid): about the step time of 256 rays at 32 + 32,
    # and the quarter above no longer costs the rest of the frame its rays
    # (the torso needs the full-sampling start).
    config.train.rays_per_frame = 512
    config.occupancy.train = True
    config.occupancy.train_grid = 'none'
    config.occupancy.train_sample_fraction = 0.5
  return config
