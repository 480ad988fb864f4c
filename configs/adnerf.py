"""Train on an AD-NeRF / SSP-NeRF / RAD-NeRF folder; `:cpu`: demo model, 96 px.

  python train_main.py --config=configs/adnerf.py[:cpu] --config.data.path=D"""
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
    config.data.resolution = 0  # the folder's own size
  config.data.builder_config = 'adnerf'
  config.data.path = ''
  return config
