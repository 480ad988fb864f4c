"""`ssp_portrait` builder (TFDS dataset-folder convention: class `Builder`).

The implementation is `ssp_nerf_jax.data.portrait_dataset.SspPortrait`; see its
module docstring for features, splits, metadata and cache keying.
"""
from ssp_nerf_jax.data.portrait_dataset import SspPortrait as Builder

__all__ = ['Builder']
