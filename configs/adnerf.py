"""Train on an AD-NeRF / SSP-NeRF / RAD-NeRF processed-data folder.

  python train_main.py --config=configs/adnerf.py --config.data.path=DIR
  python train_main.py --config=configs/adnerf.py:cpu --config.data.path=DIR

The plain config is the accelerator starting point: the paper-scale model
and schedule (configs/default.py) at the folder's own resolution.  `:cpu`
is a CPU trial with the model size and step budget of the synthetic demo
(configs/synthetic.py) on frames resized to 96 px, to see a real folder
train on a laptop in minutes.  Precomputed audio features instead of
aud.wav: `--config.data.audio_file=aud.npy` (then audio_dim must equal the
file's last axis, e.g. 29 for DeepSpeech, 44 for RAD-NeRF's wav2vec, 1024
for HuBERT).
"""
from configs import default
from configs import synthetic


def get_config(config_string=None):
  """`config_string`: None/'' (accelerator) or 'cpu'."""
  if config_string not in (None, '', 'cpu'):
    raise ValueError(f"configs/adnerf.py takes '' or ':cpu', got "
                     f'{config_string!r}')
  if config_string == 'cpu':
    config = synthetic.get_config()
    config.data.resolution = 96
  else:
    config = default.get_config()
    config.data.resolution = 0  # the folder's own size (450 px in AD-NeRF)
  config.data.builder_config = 'adnerf'
  config.data.path = ''  # required: --config.data.path=DIR
  return config
