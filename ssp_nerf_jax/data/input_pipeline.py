"""TFDS data source -> grain -> global batches on the ('data',) mesh.

Step s's batch depends only on (seed, s, mesh size, frames_per_device)."""
import atexit
import functools
from typing import Any, Iterator, Optional, Sequence
import weakref

import grain
import jax
from jax.sharding import NamedSharding
import numpy as np
import tensorflow_datasets as tfds

from ssp_nerf_jax.data import portrait_dataset
from ssp_nerf_jax.runtime import parallel

# Per frame: image [H, W, 3], parsing [H, W], audio [A, 16, C], c2w [4, 4],
# face_rect [4], scalars (TFDS decodes those as Python numbers).
FEATURE_DTYPES = {
    'image': np.uint8,
    'parsing': np.uint8,
    'audio': np.float32,
    'c2w': np.float32,
    'face_rect': np.int32,
    'frame_id': np.int32,
    'mouth_open': np.float32,
    'eye_openness': np.float32,
}
# Features that builds of older versions lack, read as this value instead.
MISSING_VALUES = {'eye_openness': np.nan}
_READ_THREADS = 4
_READ_BUFFER = 8


def load_feature(builder, split: str, name: str) -> np.ndarray:
  """One per-frame feature of a split, [N, ...] (images are not decoded)."""
  skip = tfds.decode.SkipDecoding()
  source = builder.as_data_source(split, decoders={'image': skip,
                                                   'parsing': skip})
  missing = MISSING_VALUES.get(name)
  return np.asarray([source[i].get(name, missing)
                     for i in range(len(source))], FEATURE_DTYPES[name])


def load_parsing(builder, split: str,
                 frames: Sequence[int]) -> np.ndarray:
  """uint8 [len(frames), H, W] parsing maps of some frames of a split."""
  source = builder.as_data_source(
      split, decoders={'image': tfds.decode.SkipDecoding()})
  return np.stack([np.asarray(source[int(i)]['parsing'], np.uint8)
                   for i in frames])


def load_poses(builder, split: str) -> np.ndarray:
  """float32 [N, 4, 4] camera-to-head poses of a split, in frame order."""
  return load_feature(builder, split, 'c2w').reshape(-1, 4, 4)


def load_dataset_waveform(builder) -> np.ndarray:
  """The clip's audio, float32 [T] at 16 kHz mono."""
  return np.asarray(builder.info.metadata['waveform'], np.float32)


def check_builder_matches(config, builder) -> None:
  """Raises DatasetError if `builder` was built for other config.data."""
  wanted = portrait_dataset.config_from_data_config(config.data).params()
  built = builder.builder_config.params()
  if wanted != built:
    raise portrait_dataset.DatasetError(
        f'builder parameters {built} do not match config.data {wanted}')


def cast_example(example: dict[str, Any]) -> dict[str, np.ndarray]:
  """Numpy arrays of the declared dtypes (TFDS decodes scalars to Python);
  features of older builds' versions that lack them: MISSING_VALUES."""
  return {k: np.asarray(example.get(k, MISSING_VALUES.get(k)), dtype)
          for k, dtype in FEATURE_DTYPES.items()}


def data_shard(dataset: grain.MapDataset, index: int,
               count: int) -> grain.MapDataset:
  """Elements index, index + count, ...: each shard spans the whole clip."""
  if not 0 <= index < count:
    raise ValueError(f'shard index {index} not in [0, {count})')
  return dataset[index::count]


def split_dataset(builder, split: str) -> grain.MapDataset:
  """The split as a random-access grain dataset of cast examples."""
  source = builder.as_data_source(split)
  return grain.MapDataset.source(source).map(cast_example)


def device_batches(config, builder, *, position: int,
                   num_positions: int) -> grain.MapDataset:
  """Infinite dataset: element s is mesh position `position`'s step-s frames."""
  split = split_dataset(builder, 'train')
  dataset = data_shard(split, position, num_positions)
  if len(dataset) == 0:  # pylint: disable=g-explicit-length-test
    raise portrait_dataset.DatasetError(
        f'the train split has {len(split)} frames, fewer than the '
        f'{num_positions} devices; device {position} would have none')
  # One seed per position: a shared one would permute equal shards alike.
  seed = np.random.SeedSequence([config.seed, position]).generate_state(1)
  # Repeat before batch: every batch is full and step s maps to fixed frames.
  return (dataset.shuffle(seed=int(seed[0])).repeat()
          .batch(config.data.frames_per_device, drop_remainder=True))


def train_batches(config, builder, *, positions: Sequence[int],
                  num_positions: int) -> grain.MapDataset:
  """Infinite dataset: element s is this process's part of batch s.

  Elements: dicts of [frames_per_device * len(positions), ...] arrays."""
  streams = [device_batches(config, builder, position=m,
                            num_positions=num_positions) for m in positions]
  return grain.experimental.ZipMapDataset(streams).map(_concatenate)


def _concatenate(parts):
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def local_positions(mesh: jax.sharding.Mesh) -> list[int]:
  """Mesh positions of this process's devices, ascending (as rows map)."""
  return [m for m, device in enumerate(mesh.devices.flat)
          if device.process_index == jax.process_index()]


def to_global(batch: dict[str, np.ndarray],
              sharding: NamedSharding) -> dict[str, jax.Array]:
  """Process-local [b, ...] arrays -> global [b * processes, ...] arrays."""
  return {k: jax.make_array_from_process_local_data(sharding, v)
          for k, v in batch.items()}


def create_train_iterator(
    config, builder, mesh: jax.sharding.Mesh,
    start_step: int = 0) -> Iterator[dict[str, jax.Array]]:
  """Yields global batches of FEATURE_DTYPES from step `start_step`.

  Sharded on the frame axis: B = frames_per_device * mesh size."""
  check_builder_matches(config, builder)
  if mesh.axis_names != (parallel.DATA_AXIS,):
    raise ValueError(f"mesh must be 1-D with axis {parallel.DATA_AXIS!r}, got "
                     f'{mesh.axis_names}')
  batches = train_batches(config, builder, positions=local_positions(mesh),
                          num_positions=mesh.devices.size)
  sharding = parallel.data_sharded(mesh)
  dataset = (
      batches[start_step:]
      .to_iter_dataset(grain.ReadOptions(num_threads=_READ_THREADS,
                                         prefetch_buffer_size=_READ_BUFFER))
      .map(functools.partial(to_global, sharding=sharding)))
  dataset = grain.experimental.ThreadPrefetchIterDataset(
      dataset, prefetch_buffer_size=max(1, config.data.prefetch))
  return _ClosingIterator(iter(dataset))


class _ClosingIterator:
  """A grain iterator closed at exit (its late __del__ prints errors)."""

  def __init__(self, iterator):
    self._iterator = iterator
    atexit.register(_close_if_alive, weakref.ref(self))

  def __iter__(self):
    return self

  def __next__(self):
    if self._iterator is None:
      raise StopIteration
    return next(self._iterator)

  def close(self) -> None:
    """Stops the prefetch threads; later next() calls raise StopIteration."""
    if self._iterator is not None:
      self._iterator.close()
      self._iterator = None


def _close_if_alive(ref) -> None:
  iterator = ref()
  if iterator is not None:
    iterator.close()


def load_split(
    config, builder, split: str,
    indices: Optional[Sequence[int]] = None) -> dict[str, np.ndarray]:
  """Frames of a split (default: all) as [n, ...] arrays of FEATURE_DTYPES."""
  check_builder_matches(config, builder)
  dataset = split_dataset(builder, split)
  if indices is None:
    indices = range(len(dataset))
  examples = [dataset[int(i)] for i in indices]
  if not examples:
    return {k: np.zeros((0, *builder.info.features[k].shape), dtype)
            if k in builder.info.features else np.zeros(0, dtype)
            for k, dtype in FEATURE_DTYPES.items()}
  return {k: np.stack([e[k] for e in examples]) for k in FEATURE_DTYPES}
