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
  config.pose_refinement = _pose_refinement()
  return config


def _data():
  """Which dataset, how it is built, and what each step reads."""
  data = ml_collections.ConfigDict()
  data.name = 'ssp_portrait'
  data.builder_config = 'synthetic'
  # Where TFDS datasets are built and read; '' means $SSP_NERF_DATA_DIR or
  # ~/.cache/ssp_nerf_jax/tensorflow_datasets.
  data.data_dir = ''
  # Synthetic builder settings; 450 px is AD-NeRF's frame size.
  data.size = 450
  data.duration_s = 24.0
  data.synthetic_seed = 0
  # Processed-folder settings (builder_config 'adnerf', configs/adnerf.py;
  # ignored by other builder configs).
  data.path = ''  # the AD-NeRF/SSP-NeRF/RAD-NeRF folder
  data.images_dir = 'ori_imgs'  # frames subfolder, AD-NeRF's name
  data.resolution = 0  # longer side in px; 0 keeps the folder's size
  # '' = aud.wav through audio_feature, or a precomputed .npy in the folder
  # (aud.npy DeepSpeech [N, 16, 29], aud_ds/aud_eo.npy, aud_hu.npy HuBERT
  # [N, 2, 1024]); audio_dim must equal its last axis.
  data.audio_file = ''
  # Video (builder_config 'video'): preprocessed on first use into
  # <data_dir>/videos/ (keyed by content hash), then read like a folder.
  data.video = ''
  data.video_size = 512  # side of the preprocessed square frames, px
  # 16 steps of 20 ms per video frame, audio_dim features each: 'logmel' or
  # 'mfcc' (librosa), or 'whisper' (a Whisper encoder, audio_dim = its
  # width) from `speech_model`, a CTranslate2 folder ('' = the packaged one).
  data.audio_feature = 'logmel'
  data.audio_dim = 29
  data.speech_model = ''
  data.audio_context = 8  # neighbouring frames seen by AudioAttNet
  data.frames_per_device = 1  # frames each device trains on per step
  data.prefetch = 2  # device batches prepared ahead in a background thread
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
  # Torso warping (SSP-NeRF): samples blended between the head frame and
  # the body frame, so one field holds both (models/torso_warp.py).
  model.torso_warp = True
  model.warp_freqs = 6
  model.warp_width = 64
  # Residual offset bound (head units): only what the rigid bones miss.
  model.warp_max_offset = 0.02
  model.warp_fine_gradients = False  # the warp learns through the coarse pass
  # The frame's mouth opening as an input next to the audio code: measured
  # on train frames, predicted from the audio elsewhere
  # (models/mouth_readout.py).
  model.mouth_condition = False
  model.mouth_freqs = 4  # sinusoids of the opening: pi * 2^k, k < 4
  # Quantiles mapping predicted openings onto the measured distribution
  # (ridge predictions crowd the mean); 0: raw predictions clipped to [0, 1].
  model.mouth_quantile_knots = 33
  # > 0: the opening acts only near the mouth, weighted by a Gaussian of
  # this radius (mouth widths) around its centre (models/mouth_region.py).
  model.mouth_region_radius = 0.0
  # With the region: the audio code acts only there too.
  model.audio_in_mouth_region = False
  # The frame's eye openness (the dataset's eye_openness: lids blink) as an
  # input acting only within eye_region_radius (widths across both eyes)
  # of the eyes' centre; frames without it get no eye input.
  model.eye_condition = False
  model.eye_freqs = 2  # sinusoids of the normalised openness
  model.eye_region_radius = 0.7
  return model


def _render():
  """Samples along a ray, ray bounds, and the eval chunk size."""
  render = ml_collections.ConfigDict()
  render.num_coarse = 64
  render.num_fine = 128
  # Ray bounds; negative means from the dataset (AD-NeRF's rule).
  render.near = -1.0
  render.far = -1.0
  render.chunk = 2048  # rays per device per eval chunk: bounds host memory
  return render


def _sampling():
  """Which pixels of a frame become the step's rays."""
  sampling = ml_collections.ConfigDict()
  # 'uniform', 'face_rect' (AD-NeRF), 'semantic' (SSP-NeRF) or 'error_map'
  # (torch-ngp / RAD-NeRF).
  sampling.strategy = 'face_rect'
  sampling.face_rect_fraction = 0.95  # AD-NeRF's share inside the face box
  # Semantic sampler (ray_sampling.class_shares): class k gets
  #   uniform_mix * n_k / N + (1 - uniform_mix) * s_k,
  #   s_k ~ n_k**size_exponent * L_k**power
  # of the rays (n_k pixels, L_k running loss), at least `floor` each.
  sampling.semantic_power = 1.0
  sampling.semantic_size_exponent = 1.0
  # The uniform part keeps the background (small loss) sampled: no floaters.
  sampling.semantic_uniform_mix = 0.5
  sampling.semantic_floor = 0.01  # no present class is ever left unsampled
  sampling.semantic_ema_decay = 0.95  # of the per-class loss L_k
  # Uniform first, while L_k has too little history to rank the classes.
  sampling.semantic_warmup_steps = 100
  # The background keeps its area share; the rule shares out the rest.
  sampling.semantic_background_area = False
  # Share of the semantic sampler's rays (taken from its loss-driven part)
  # drawn uniformly in the mouth box: the lips and mouth interior's bounding
  # box grown mouth_box_scale times, where the speech changes the frame.
  sampling.mouth_share = 0.0
  sampling.mouth_box_scale = 2.0
  # The same for the eyes' box (both eyes) grown eye_box_scale times: the
  # lids are a few pixels, and a blink changes only them.
  sampling.eye_share = 0.0
  sampling.eye_box_scale = 2.0
  # Photometric loss weighted by 1 / (H W p(pixel)): an unbiased estimate of
  # the uniform-pixel loss; weights clipped at unbiased_max_weight (0: none).
  sampling.unbiased = False
  sampling.unbiased_max_weight = 0.0
  # Error-map sampler (torch-ngp / RAD-NeRF): a running error per cell of an
  # n x n grid per train frame, updated as decay * old + (1 - decay) * new.
  sampling.error_map_resolution = 32
  sampling.error_map_decay = 0.1
  sampling.error_map_uniform_mix = 0.0  # its share of uniform rays
  return sampling


def _train():
  """AD-NeRF's schedule and SSP-NeRF's loss weights."""
  train = ml_collections.ConfigDict()
  train.num_steps = 400_000
  train.rays_per_frame = 2048
  # Rays per frame rendered at once in a step (a scan sums the chunks'
  # gradients); bounds activation memory.
  train.ray_chunk = 64
  train.lr = 5e-4
  train.lr_decay_steps = 250_000  # lr * lr_decay_rate**(step/steps)
  train.lr_decay_rate = 0.1
  train.semantic_weight = 0.1  # lambda on the parsing cross-entropy
  # Torso warp regularisers: parsing supervision of the blend, residual L2.
  train.warp_blend_weight = 0.1
  train.warp_offset_weight = 1.0
  # AudioAttNet smooths the audio code over neighbouring frames once the
  # per-frame code is learned.
  train.audio_smoothing_start = 200_000
  train.log_every = 100
  train.eval_every = 10_000
  train.checkpoint_every = 10_000
  train.keep_checkpoints = 3
  train.eval_frames = 4
  return train


def _occupancy():
  """Occupancy grids: offline renders measure each frame's field on a grid
  first, skip rays that cross no occupied cell and sample the others only
  over their occupied interval (rendering/occupancy.py).  The train_*
  settings are training's own grids."""
  occupancy = ml_collections.ConfigDict()
  occupancy.enabled = True  # render_main.py --nooccupancy: off for one run
  # Cells per side over the head box: finer culls more, costs resolution**3
  # field queries per frame.
  occupancy.resolution = 48
  # The reference frustum between near and far, grown by this fraction each
  # side; outside counts as occupied (safety over culling).
  occupancy.box_padding = 0.05
  # Occupied: one cell's length of the density is at least this opaque.
  occupancy.threshold = 0.01
  # Cells of dilation, and of interval kept behind the opaque depth, so that
  # matter between cell centres is never cut.
  occupancy.margin = 1
  occupancy.march_steps = 128  # about two per cell crossed
  # A ray's interval ends where less than this share of light gets through.
  occupancy.stop_transmittance = 0.01
  # Samples in the interval, as a fraction of config.render's counts.
  occupancy.sample_fraction = 0.35
  occupancy.points_per_call = 16384  # field queries per call (memory)
  # Training: after train_warmup_steps of full sampling, rays get
  # train_sample_fraction of the samples over train_grid's interval:
  #   'clip': one clip-wide grid in the state (the largest density over
  #     train_pose_frames poses and the extreme mouths), refreshed every
  #     train_update_every steps; first to last occupied cell.
  #   'step': each step's frames' coarse field on a train_step_resolution^3
  #     grid, stopping where it turns opaque, as renders do.
  #   'none': [near, far] (the control: fewer samples alone).
  occupancy.train = False
  occupancy.train_grid = 'clip'
  occupancy.train_resolution = 32
  occupancy.train_step_resolution = 16
  occupancy.train_pose_frames = 4
  occupancy.train_warmup_steps = 200
  occupancy.train_update_every = 200
  occupancy.train_sample_fraction = 0.5
  return occupancy


def _pose_refinement():
  """Per-frame head-pose corrections learned with the field (nerfstudio's
  camera optimiser): fitted poses are off by a few degrees, and a field
  trained on them blurs what they disagree on."""
  poses = ml_collections.ConfigDict()
  poses.enabled = False
  # Adam's rate for the corrections (radians, head units), its own: poses
  # must settle while the field still changes.
  poses.lr = 1e-3
  # L2 penalties on each frame's rotation vector and translation: they keep
  # the corrections small and the clip's frame (a turn of every pose and of
  # the field together changes nothing else) where the fit put it.
  # Corrections are frozen until the field has the clip's coarse shape:
  # earlier, their gradients are mostly noise and they drift.
  poses.start_step = 10_000
  # Each step removes the corrections' mean: one turn of every pose, matched
  # by a turn of the head field but not of the static background plate,
  # would drift and have the field repaint the plate.
  poses.fix_gauge = True
  poses.rotation_penalty = 1e-3
  poses.translation_penalty = 1e-2
  # After training, val poses are refined against their frames with the
  # field frozen: steps, frames per device and rays per frame of each step.
  poses.val_steps = 300
  poses.val_frames_per_device = 8
  poses.val_rays_per_frame = 64
  return poses
