"""Paper-scale SSP-NeRF on 450 px portraits (AD-NeRF's model and schedule).

Meant for accelerators.  Every other config starts from this one.
"""
import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.data = _data()
  config.model = _model()
  config.render = _render()
  config.sampling = _sampling()
  config.train = _train()
  config.occupancy = _occupancy()
  return config


def _data():
  """Which dataset, how it is built, and what each step reads."""
  data = ml_collections.ConfigDict()
  data.name = 'ssp_portrait'
  data.builder_config = 'synthetic'
  # Where TFDS datasets are built and read; '' means $SSP_NERF_DATA_DIR or
  # ~/.cache/ssp_nerf_jax/tensorflow_datasets.
  data.data_dir = ''
  # Synthetic builder settings (ignored by other builder configs); 450 px is
  # AD-NeRF's frame size.
  data.size = 450
  data.duration_s = 24.0
  data.synthetic_seed = 0
  # Processed-folder settings (builder_config 'adnerf', configs/adnerf.py;
  # ignored by other builder configs).
  data.path = ''  # the AD-NeRF/SSP-NeRF/RAD-NeRF folder
  data.images_dir = 'ori_imgs'  # frames subfolder, AD-NeRF's name
  data.resolution = 0  # longer side in px; 0 keeps the folder's size
  # '' = aud.wav through our features (audio_feature, audio_dim), or
  # a precomputed .npy in the folder: aud.npy (AD-NeRF DeepSpeech [N, 16,
  # 29]), aud_ds.npy / aud_eo.npy (RAD-NeRF), aud_hu.npy (ER-NeRF HuBERT
  # [N, 2, 1024]); audio_dim must then equal its last axis.
  data.audio_file = ''
  # Video settings (builder_config 'video', configs/video.py): a talking-head
  # video, preprocessed on first use into <data_dir>/videos/ (keyed by its
  # content hash) and then read like a processed folder.
  data.video = ''
  data.video_size = 512  # side of the preprocessed square frames, px
  # Audio features: 16 steps of 20 ms per video frame, C features per step;
  # 29 per step is the shape of AD-NeRF's DeepSpeech features.  'logmel' or
  # 'mfcc' (librosa), or 'whisper': a pretrained Whisper encoder's features
  # (C = its width: 384 for tiny, 512 for base) from `speech_model`, a
  # CTranslate2 model folder ('' = the one an installed model package
  # ships, see ssp_nerf_jax/data/whisper_features.py).
  data.audio_feature = 'logmel'
  data.audio_dim = 29
  data.speech_model = ''
  data.audio_context = 8  # neighbouring frames seen by AudioAttNet
  # Frames each device trains on per step.
  data.frames_per_device = 1
  # Device batches prepared ahead in a background thread, so that a step
  # does not wait for its input.
  data.prefetch = 2
  return data


def _model():
  """AD-NeRF's MLP and audio code, and SSP-NeRF's torso warp."""
  model = ml_collections.ConfigDict()
  model.xyz_freqs = 10
  model.dir_freqs = 4
  model.depth = 8
  model.width = 256
  model.skip_layer = 4  # [PE(x), code] re-enters after this layer
  model.view_width = 128
  model.audio_code_dim = 64
  model.share_coarse_fine = False
  model.dtype = 'float32'  # compute dtype: 'float32' or 'bfloat16'
  # Torso warping (SSP-NeRF): one field for head and torso; samples are
  # blended between the head frame and the body frame (models/torso_warp.py).
  model.torso_warp = True
  model.warp_freqs = 6
  model.warp_width = 64
  # Bound of the residual offset, head-space units: it only covers what the
  # two rigid bones miss (neck bending, breathing).
  model.warp_max_offset = 0.02
  # The warp is learned through the coarse pass; the fine pass reuses it
  # without differentiating it (see PortraitNeRF.warp_fine_gradients).
  model.warp_fine_gradients = False
  # The frame's mouth opening as a second input next to the audio code:
  # measured on train frames, predicted from the audio (a ridge read-out
  # fitted on them) elsewhere; needs data with a measured mouth_open (video
  # and synthetic configs).  See ssp_nerf_jax/models/mouth_readout.py.
  model.mouth_condition = False
  model.mouth_freqs = 4  # sinusoids of the opening: pi * 2^k, k < 4
  # The predicted openings are mapped onto the measured ones' distribution
  # through this many quantiles (a piecewise-linear monotone map): ridge
  # predictions crowd around the mean opening, where the field draws one
  # half-open mouth.  0: the raw predictions, clipped to [0, 1].
  model.mouth_quantile_knots = 33
  # > 0: the opening acts only around the mouth, each point getting it times
  # a Gaussian of its distance to the mouth's centre (triangulated from the
  # train frames' parsing) with this radius in mouth widths; 0: every point
  # of the frame gets the same opening.  See ssp_nerf_jax/models/mouth_region.py.
  model.mouth_region_radius = 0.0
  # With the region: the audio code too acts only there (weighted by it, as
  # ER-NeRF's region attention confines the speech), instead of everywhere.
  model.audio_in_mouth_region = False
  return model


def _render():
  """Samples along a ray, ray bounds, and the eval chunk size."""
  render = ml_collections.ConfigDict()
  render.num_coarse = 64
  render.num_fine = 128
  # Ray bounds; negative means "from the dataset" (mean head distance
  # -0.2 / +0.4, as AD-NeRF).
  render.near = -1.0
  render.far = -1.0
  # Rays per device per chunk at eval: host memory grows with it, and 2048
  # renders a 450 px frame on CPU within 2 GiB (README, "Measured").
  render.chunk = 2048
  return render


def _sampling():
  """Which pixels of a frame become the step's rays."""
  sampling = ml_collections.ConfigDict()
  # 'uniform', 'face_rect' (AD-NeRF), 'semantic' (SSP-NeRF) or 'error_map'
  # (torch-ngp / RAD-NeRF).
  sampling.strategy = 'face_rect'
  sampling.face_rect_fraction = 0.95  # AD-NeRF's share inside the face box
  # Semantic sampler (ray_sampling.class_shares): class k gets a share
  #   uniform_mix * n_k / N + (1 - uniform_mix) * s_k,
  #   s_k ~ n_k**size_exponent * L_k**power,
  # of the rays (n_k pixels, L_k running loss), at least `floor` per present
  # class.  Power and size exponent 1 make s importance sampling of the
  # loss: rays go where the error is.  Weighting the loss harder (power 2
  # or 3) gives the mouth more rays but not more PSNR: the mouth waits for
  # the audio -> shape mapping, not for rays (README, "Measured").
  sampling.semantic_power = 1.0
  sampling.semantic_size_exponent = 1.0
  # Half the rays uniform: every class keeps at least half its area share,
  # so the background (whose small loss would give it few rays) does not
  # grow floaters, while the small classes keep their gain (README,
  # "Which pixel sampler for which goal").
  sampling.semantic_uniform_mix = 0.5
  sampling.semantic_floor = 0.01  # no present class is ever left unsampled
  sampling.semantic_ema_decay = 0.95  # of the per-class loss L_k
  # Uniform sampling first, while the running losses L_k have too little
  # history to rank the classes.
  sampling.semantic_warmup_steps = 100
  # The background (class 0) keeps its area share of the rays and the rule
  # above shares the rest among the other classes: few background rays let
  # the model leave floaters there.
  sampling.semantic_background_area = False
  # This share of the semantic sampler's rays, taken from its loss-driven
  # part (at most 1 - semantic_uniform_mix; the uniform part keeps its
  # share, so the background keeps the rays that keep it empty), drawn
  # uniformly in a box around the lips and mouth interior (their bounding
  # box grown mouth_box_scale times), where the speech changes the frame:
  # the mouth is a few hundred pixels, and its look at each opening is
  # learned from the rays that land there.  0: off.
  sampling.mouth_share = 0.0
  sampling.mouth_box_scale = 2.0
  # Train on the importance-weighted loss: each ray's photometric error
  # times 1 / (H W p(pixel)), so that the loss is an unbiased estimate of
  # the uniform-pixel loss whatever the sampler (the parsing loss stays per
  # ray).  Weights above `unbiased_max_weight` are clipped (0: no clip):
  # rarely drawn pixels otherwise make single rays dominate a step.
  sampling.unbiased = False
  sampling.unbiased_max_weight = 0.0
  # Error-map sampler (error_map.py; torch-ngp / RAD-NeRF): a running error
  # per cell of an n x n grid per train frame (4 n^2 bytes per frame),
  # updated where rays landed as decay * old + (1 - decay) * new error
  # (torch-ngp keeps 0.1 of the old value).
  sampling.error_map_resolution = 32
  sampling.error_map_decay = 0.1
  # Share of the error-map sampler's rays drawn uniformly over pixels
  # (torch-ngp: none).
  sampling.error_map_uniform_mix = 0.0
  return sampling


def _train():
  """AD-NeRF's schedule and SSP-NeRF's loss weights."""
  train = ml_collections.ConfigDict()
  train.num_steps = 400_000
  train.rays_per_frame = 2048
  # Rays per frame rendered at once inside a step (a scan accumulates the
  # gradients of the chunks); bounds activation memory.
  train.ray_chunk = 64
  train.lr = 5e-4
  train.lr_decay_steps = 250_000  # lr * lr_decay_rate**(step/steps)
  train.lr_decay_rate = 0.1
  train.semantic_weight = 0.1  # lambda on the parsing cross-entropy
  # Torso warp regularisers: parsing supervision of the blend, residual L2.
  train.warp_blend_weight = 0.1
  train.warp_offset_weight = 1.0
  # Half-way: AudioAttNet starts smoothing the audio code over neighbouring
  # frames once the per-frame code has been learned.
  train.audio_smoothing_start = 200_000
  train.log_every = 100
  train.eval_every = 10_000
  train.checkpoint_every = 10_000
  train.keep_checkpoints = 3
  train.eval_frames = 4
  return train


def _occupancy():
  """Offline renders (render_main.py) with occupancy grids
  (ssp_nerf_jax/rendering/occupancy.py): each frame's field is measured on a coarse
  grid first; rays that cross no occupied cell are not rendered, the
  others are sampled only between their first occupied cell and where the
  frame's surface turns opaque.  Training uses its own grids (the
  train_* settings) and its periodic eval none."""
  occupancy = ml_collections.ConfigDict()
  # Render each frame with its own grid (render_main.py --nooccupancy turns
  # it off for one run).
  occupancy.enabled = True
  # Cells per side of the grid over the head box: finer culls more empty
  # space but costs more per frame (resolution**3 field queries).
  occupancy.resolution = 48
  # The box: the reference camera's frustum between near and far, grown by
  # this fraction of its size each side (other poses' frusta poke out of
  # it; what is outside counts as occupied, so this trades culling for
  # safety).
  occupancy.box_padding = 0.05
  # A cell is occupied when its density makes one cell's length this
  # opaque; lower keeps fainter matter (and culls less).
  occupancy.threshold = 0.01
  # Occupied cells are dilated by this many cells, and a ray's interval
  # ends this many cells behind its opaque depth, so that matter between
  # the measured cell centres is never cut.
  occupancy.margin = 1
  # Steps of the march that finds a ray's interval: about two per cell
  # crossed, so that no occupied cell is stepped over.
  occupancy.march_steps = 128
  # A ray's interval ends where the grid has let less than this share of
  # its light through (0: at its last occupied cell, which keeps the
  # samples inside and behind the head).
  occupancy.stop_transmittance = 0.01
  # Samples per ray inside its interval, as a fraction of config.render's
  # coarse and fine counts: the interval is a small part of [near, far],
  # so the samples there are still denser than a full render's.
  occupancy.sample_fraction = 0.35
  # Field queries per call while measuring a grid (bounds memory).
  occupancy.points_per_call = 16384
  # Training (train.py): off samples as without a grid.  On, each step
  # after train_warmup_steps of full sampling samples its rays with
  # train_sample_fraction of the coarse and fine counts, over the interval
  # train_grid gives them (threshold, margin and march_steps above):
  #   'clip': one clip-wide grid in the train state, the largest density
  #     over a few train frames (train_pose_frames poses spread over the
  #     track, the most open and most closed mouths), train_resolution a
  #     side, measured at the end of warm-up and every train_update_every
  #     steps after; rays go from their first to their last occupied cell
  #     (no opaque stop: the union's front lies before many frames' torso).
  #   'step': each step measures its own frames' coarse field on a
  #     train_step_resolution^3 grid and stops each ray a margin behind
  #     where that grid turns it opaque (stop_transmittance), as renders
  #     do.  Measured no better than 'none' on the demo, for more CPU
  #     time (README, "Measured").
  #   'none': [near, far], the fewer samples alone (the control).
  # Off by default: no grid trained better than the fewer samples alone
  # ('none'), and none reached full sampling's PSNR in half its time.
  occupancy.train = False
  occupancy.train_grid = 'clip'
  occupancy.train_resolution = 32
  occupancy.train_step_resolution = 16
  occupancy.train_pose_frames = 4
  occupancy.train_warmup_steps = 200
  occupancy.train_update_every = 200
  occupancy.train_sample_fraction = 0.5
  return occupancy
