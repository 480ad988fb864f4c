"""Paper-scale SSP-NeRF on 450 px portraits (AD-NeRF's model and schedule).

Meant for accelerators.  Every other config starts from this one.
"""
import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = ml_collections.ConfigDict()
  config.data.name = 'ssp_portrait'
  config.data.builder_config = 'synthetic'
  # Where TFDS datasets are built and read; '' means $SSP_NERF_DATA_DIR or
  # ~/.cache/ssp_nerf_jax/tensorflow_datasets.
  config.data.data_dir = ''
  # Synthetic builder settings (ignored by other builder configs).
  config.data.size = 450
  config.data.duration_s = 24.0
  config.data.synthetic_seed = 0
  # Processed-folder settings (builder_config 'adnerf', configs/adnerf.py;
  # ignored by other builder configs).
  config.data.path = ''  # the AD-NeRF/SSP-NeRF/RAD-NeRF folder
  config.data.images_dir = 'ori_imgs'  # frames subfolder
  config.data.resolution = 0  # longer side in px; 0 keeps the folder's size
  # '' = aud.wav through our librosa features (audio_feature, audio_dim), or
  # a precomputed .npy in the folder: aud.npy (AD-NeRF DeepSpeech [N, 16,
  # 29]), aud_ds.npy / aud_eo.npy (RAD-NeRF), aud_hu.npy (ER-NeRF HuBERT
  # [N, 2, 1024]); audio_dim must then equal its last axis.
  config.data.audio_file = ''
  # Video settings (builder_config 'video', configs/video.py): a talking-head
  # video, preprocessed on first use into <data_dir>/videos/ (keyed by its
  # content hash) and then read like a processed folder.
  config.data.video = ''
  config.data.video_size = 512  # side of the preprocessed square frames, px
  # Audio features: 16 steps of 20 ms per video frame, C features per step.
  config.data.audio_feature = 'logmel'  # 'logmel' or 'mfcc'
  config.data.audio_dim = 29
  config.data.audio_context = 8  # neighbouring frames seen by AudioAttNet
  # Frames each device trains on per step.
  config.data.frames_per_device = 1
  config.data.prefetch = 2

  config.model = ml_collections.ConfigDict()
  config.model.xyz_freqs = 10
  config.model.dir_freqs = 4
  config.model.depth = 8
  config.model.width = 256
  config.model.skip_layer = 4  # [PE(x), code] re-enters after this layer
  config.model.view_width = 128
  config.model.audio_code_dim = 64
  config.model.share_coarse_fine = False
  config.model.dtype = 'float32'  # compute dtype: 'float32' or 'bfloat16'
  # Torso warping (SSP-NeRF): one field for head and torso; samples are
  # blended between the head frame and the body frame (models/torso_warp.py).
  config.model.torso_warp = True
  config.model.warp_freqs = 6
  config.model.warp_width = 64
  config.model.warp_max_offset = 0.02  # head-space units
  # The warp is learned through the coarse pass; the fine pass reuses it
  # without differentiating it (see PortraitNeRF.warp_fine_gradients).
  config.model.warp_fine_gradients = False

  config.render = ml_collections.ConfigDict()
  config.render.num_coarse = 64
  config.render.num_fine = 128
  # Ray bounds; negative means "from the dataset" (mean head distance
  # -0.2 / +0.4, as AD-NeRF).
  config.render.near = -1.0
  config.render.far = -1.0
  # Rays per device per chunk at eval: 2048 keeps a 450 px frame under 2 GiB
  # of host memory on CPU (8192: 5.2 GiB).
  config.render.chunk = 2048

  config.sampling = ml_collections.ConfigDict()
  # 'uniform', 'face_rect' (AD-NeRF) or 'semantic' (SSP-NeRF).
  config.sampling.strategy = 'face_rect'
  config.sampling.face_rect_fraction = 0.95
  # Semantic sampler (ray_sampling.class_shares): class k gets a share
  #   uniform_mix * n_k / N + (1 - uniform_mix) * s_k,
  #   s_k ~ n_k**size_exponent * L_k**power,
  # of the rays (n_k pixels, L_k running loss), at least `floor` per present
  # class.  Measured on the synthetic demo (2 seeds, 256 rays): these
  # defaults (importance sampling of the loss) gave mouth +0.6 / +0.7 dB,
  # eyes +1.9 / +2.3 dB and full +0.2 / -0.1 dB against uniform at 700 /
  # 900 steps.  More mouth rays (power 2 or 3, size_exponent 0.5, a higher
  # floor) gave no more mouth PSNR and cost full PSNR: there the mouth waits
  # for the audio -> shape mapping, not for rays (README, "Measured").
  config.sampling.semantic_power = 1.0
  config.sampling.semantic_size_exponent = 1.0
  config.sampling.semantic_uniform_mix = 0.0
  config.sampling.semantic_floor = 0.01
  config.sampling.semantic_ema_decay = 0.95  # of the per-class loss L_k
  config.sampling.semantic_warmup_steps = 100  # uniform sampling before

  config.train = ml_collections.ConfigDict()
  config.train.num_steps = 400_000
  config.train.rays_per_frame = 2048
  # Rays per frame rendered at once inside a step (a scan accumulates the
  # gradients of the chunks); bounds activation memory.
  config.train.ray_chunk = 64
  config.train.lr = 5e-4
  config.train.lr_decay_steps = 250_000  # lr * lr_decay_rate**(step/steps)
  config.train.lr_decay_rate = 0.1
  config.train.semantic_weight = 0.1  # lambda on the parsing cross-entropy
  # Torso warp regularisers: parsing supervision of the blend, residual L2.
  config.train.warp_blend_weight = 0.1
  config.train.warp_offset_weight = 1.0
  config.train.audio_smoothing_start = 200_000
  config.train.log_every = 100
  config.train.eval_every = 10_000
  config.train.checkpoint_every = 10_000
  config.train.keep_checkpoints = 3
  config.train.eval_frames = 4
  return config
