"""TFDS data source -> grain -> global batches on the ('data',) mesh.

Training batches come from grain's random-access `MapDataset`:

  split source (TFDS array_record, no TensorFlow)
    -> this process's shard: frames p, p + P, p + 2P, ... (P processes)
    -> shuffle (seed from config.seed and p), reshuffled every epoch
    -> repeat forever
    -> batch(frames_per_device * local devices)

Element s of that dataset is the batch for step s, a pure function of
(seed, s, process count), so a run resumed at `start_step` starts reading at
element `start_step` and sees exactly the batches an uninterrupted run
would.  Reading/decoding runs in grain threads, and a further background
thread assembles the global jax.Arrays, so the training loop only dequeues.
"""
import atexit
import functools
from typing import Any, Iterator, Optional, Sequence
import weakref

import flax
import grain
import jax
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np
import tensorflow_datasets as tfds

from ssp_nerf_jax import portrait_dataset
from ssp_nerf_jax.models import torso_warp

DATA_AXIS = 'data'
# Per-frame features and their dtypes (scalars decode as Python numbers).
FEATURE_DTYPES = {
    'image': np.uint8,  # [H, W, 3]
    'parsing': np.uint8,  # [H, W]
    'audio': np.float32,  # [A, 16, C]
    'c2w': np.float32,  # [4, 4]
    'face_rect': np.int32,  # [4]
    'frame_id': np.int32,  # []
    'mouth_open': np.float32,  # []
}
_READ_THREADS = 4
_READ_BUFFER = 8


@flax.struct.dataclass
class SceneInfo:
  """Per-dataset constants (everything but `background` is static)."""
  background: np.ndarray  # float32 [H, W, 3] in [0, 1].
  height: int = flax.struct.field(pytree_node=False)
  width: int = flax.struct.field(pytree_node=False)
  focal: float = flax.struct.field(pytree_node=False)
  cx: float = flax.struct.field(pytree_node=False)
  cy: float = flax.struct.field(pytree_node=False)
  near: float = flax.struct.field(pytree_node=False)
  far: float = flax.struct.field(pytree_node=False)
  fps: float = flax.struct.field(pytree_node=False)
  num_classes: int = flax.struct.field(pytree_node=False)
  class_names: tuple[str, ...] = flax.struct.field(pytree_node=False)
  num_train: int = flax.struct.field(pytree_node=False)
  num_val: int = flax.struct.field(pytree_node=False)
  # Audio settings (defaults: configs/default.py) so that tests can build a
  # SceneInfo by hand without them.
  audio_feature: str = flax.struct.field(pytree_node=False, default='logmel')
  audio_dim: int = flax.struct.field(pytree_node=False, default=29)
  audio_context: int = flax.struct.field(pytree_node=False, default=8)
  # Feature steps per frame window: 16 (ours, DeepSpeech), 2 (HuBERT).
  audio_window_steps: int = flax.struct.field(pytree_node=False, default=16)
  # Frame offsets of the context windows: frame i sees i-4 .. i+3.
  audio_context_offsets: tuple[int, ...] = flax.struct.field(
      pytree_node=False, default=(-4, -3, -2, -1, 0, 1, 2, 3))
  # The torso warp's reference pose: the mean training pose as 16 floats
  # (row-major 4x4); None for hand-built scenes without poses.
  reference_c2w: tuple[float, ...] | None = flax.struct.field(
      pytree_node=False, default=None)


def load_scene_info(builder) -> SceneInfo:
  """SceneInfo from a prepared builder's metadata."""
  meta = builder.info.metadata
  audio = meta['audio']
  return SceneInfo(
      background=np.asarray(meta['background'], np.float32) / 255.0,
      height=int(meta['height']), width=int(meta['width']),
      focal=float(meta['focal']), cx=float(meta['cx']), cy=float(meta['cy']),
      near=float(meta['near']), far=float(meta['far']),
      fps=float(meta['fps']),
      num_classes=int(meta['num_classes']),
      class_names=tuple(meta['class_names']),
      num_train=int(meta['num_train']), num_val=int(meta['num_val']),
      audio_feature=str(audio['feature']), audio_dim=int(audio['dim']),
      audio_context=int(audio['context']),
      audio_window_steps=int(audio['window_steps']),
      audio_context_offsets=tuple(int(o) for o in audio['context_offsets']),
      reference_c2w=tuple(torso_warp.mean_pose(load_poses(builder, 'train'))
                          .reshape(-1).tolist()))


def load_poses(builder, split: str) -> np.ndarray:
  """float32 [N, 4, 4] camera-to-head poses of a split, in frame order.

  Images and parsing maps are skipped, not decoded: a fraction of a second
  even for paper-scale splits.
  """
  skip = tfds.decode.SkipDecoding()
  source = builder.as_data_source(split, decoders={'image': skip,
                                                   'parsing': skip})
  return np.asarray([source[i]['c2w'] for i in range(len(source))],
                    np.float32).reshape(-1, 4, 4)


def load_waveform(builder) -> np.ndarray:
  """The clip's audio, float32 [T] at 16 kHz mono (e.g. to mux into video)."""
  return np.asarray(builder.info.metadata['waveform'], np.float32)


def check_builder_matches(config, builder) -> None:
  """Raises DatasetError if `builder` was built for other config.data."""
  wanted = portrait_dataset.config_from_data_config(config.data).params()
  built = builder.builder_config.params()
  if wanted != built:
    raise portrait_dataset.DatasetError(
        f'builder parameters {built} do not match config.data {wanted}')


def cast_example(example: dict[str, Any]) -> dict[str, np.ndarray]:
  """Numpy arrays of the declared dtypes (TFDS decodes scalars to Python)."""
  return {k: np.asarray(example[k], dtype) for k, dtype in
          FEATURE_DTYPES.items()}


def shard_for_process(dataset: grain.MapDataset, process_index: int,
                      process_count: int) -> grain.MapDataset:
  """Elements process_index, process_index + process_count, ... .

  Every process reads only its own, disjoint shard; together the shards
  cover the split.  (Strided rather than contiguous so that each shard
  spans the whole clip: poses and mouth shapes vary over time.)
  """
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index {process_index} not in '
                     f'[0, {process_count})')
  return dataset[process_index::process_count]


def split_dataset(builder, split: str) -> grain.MapDataset:
  """The split as a random-access grain dataset of cast examples."""
  source = builder.as_data_source(split)
  return grain.MapDataset.source(source).map(cast_example)


def train_batches(config, builder, *, local_batch_size: int,
                  process_index: int, process_count: int) -> grain.MapDataset:
  """Infinite dataset whose element s is this process's batch for step s.

  Args:
    config: run config (config.seed).
    builder: prepared portrait_dataset builder.
    local_batch_size: frames per step read by this process.
    process_index: this process (jax.process_index()).
    process_count: number of processes (jax.process_count()).

  Returns:
    grain.MapDataset of dicts of [local_batch_size, ...] numpy arrays.
  """
  dataset = shard_for_process(split_dataset(builder, 'train'), process_index,
                              process_count)
  if len(dataset) == 0:  # pylint: disable=g-explicit-length-test
    raise portrait_dataset.DatasetError(
        f'process {process_index} of {process_count} has no training frames')
  # Each process shuffles with its own seed: with one shared seed, the
  # equally long shards would be permuted alike and frames p, p+1, ...
  # would always share a global batch.
  seed = np.random.SeedSequence([config.seed, process_index]).generate_state(1)
  # Epoch boundaries are not batch boundaries: with repeat before batch
  # every batch is full and step s maps to fixed frames.
  return (dataset.shuffle(seed=int(seed[0])).repeat()
          .batch(local_batch_size, drop_remainder=True))


def to_global(batch: dict[str, np.ndarray],
              sharding: NamedSharding) -> dict[str, jax.Array]:
  """Process-local [b, ...] arrays -> global [b * processes, ...] arrays."""
  return {k: jax.make_array_from_process_local_data(sharding, v)
          for k, v in batch.items()}


def create_train_iterator(
    config, builder, mesh: jax.sharding.Mesh,
    start_step: int = 0) -> Iterator[dict[str, jax.Array]]:
  """Yields global training batches, the first one for step `start_step`.

  Args:
    config: run config (config.seed, config.data.frames_per_device,
      config.data.prefetch).
    builder: prepared portrait_dataset builder (see data.build_dataset).
    mesh: 1-D ('data',) mesh over all devices of all processes.
    start_step: index of the first batch (a resumed run's step).

  Yields:
    dicts of jax.Arrays sharded NamedSharding(mesh, P('data')) on the frame
    axis, B = frames_per_device * mesh size: image uint8 [B, H, W, 3],
    parsing uint8 [B, H, W], audio float32 [B, A, 16, C], c2w float32
    [B, 4, 4], face_rect int32 [B, 4], frame_id int32 [B], mouth_open
    float32 [B].
  """
  check_builder_matches(config, builder)
  if mesh.axis_names != (DATA_AXIS,):
    raise ValueError(f"mesh must be 1-D with axis {DATA_AXIS!r}, got "
                     f'{mesh.axis_names}')
  local_batch_size = config.data.frames_per_device * len(mesh.local_devices)
  batches = train_batches(config, builder, local_batch_size=local_batch_size,
                          process_index=jax.process_index(),
                          process_count=jax.process_count())
  sharding = NamedSharding(mesh, P(DATA_AXIS))
  dataset = (
      batches[start_step:]
      .to_iter_dataset(grain.ReadOptions(num_threads=_READ_THREADS,
                                         prefetch_buffer_size=_READ_BUFFER))
      .map(functools.partial(to_global, sharding=sharding)))
  # Device placement runs in a background thread too, `prefetch` ahead.
  dataset = grain.experimental.ThreadPrefetchIterDataset(
      dataset, prefetch_buffer_size=max(1, config.data.prefetch))
  return _ClosingIterator(iter(dataset))


class _ClosingIterator:
  """A grain iterator that is closed and dropped before interpreter exit.

  A grain prefetch iterator still alive at exit is closed by its __del__
  after module globals are gone, which prints "Exception ignored ...
  'NoneType' object has no attribute ...".  An atexit hook (holding only a
  weak reference) releases it while everything still works.
  """

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
  """Frames of a split stacked into numpy arrays, in frame order.

  Args:
    config: run config (checked against the builder).
    builder: prepared portrait_dataset builder.
    split: 'train' or 'val'.
    indices: positions within the split (default: all; mind memory at
      paper scale).

  Returns:
    dict of [n, ...] numpy arrays with the keys and dtypes of
    FEATURE_DTYPES.
  """
  check_builder_matches(config, builder)
  dataset = split_dataset(builder, split)
  if indices is None:
    indices = range(len(dataset))
  examples = [dataset[int(i)] for i in indices]
  if not examples:
    return {k: np.zeros((0, *builder.info.features[k].shape), dtype)
            for k, dtype in FEATURE_DTYPES.items()}
  return {k: np.stack([e[k] for e in examples]) for k in FEATURE_DTYPES}
