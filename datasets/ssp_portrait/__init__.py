"""TFDS dataset folder for `ssp_portrait` (the builder lives in ssp_nerf_jax).

This folder follows TFDS's dataset-folder layout but is not an installable
package (`datasets` would shadow Hugging Face's).  Build with
`python -m ssp_nerf_jax.data --config=configs/synthetic.py`: the `tfds build`
tool needs TensorFlow.
"""
from .ssp_portrait_dataset_builder import Builder
