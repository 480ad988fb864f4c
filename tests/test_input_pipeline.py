"""grain pipeline: per-device shards, global batch shardings, resumability."""
import jax
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

from ssp_nerf_jax.data import input_pipeline
from ssp_nerf_jax.data import portrait_dataset


def data_mesh():
  return jax.make_mesh((jax.device_count(),), ('data',),
                       axis_types=(jax.sharding.AxisType.Auto,))


def frame_ids(dataset):
  return [int(dataset[i]['frame_id']) for i in range(len(dataset))]


@pytest.mark.parametrize('count', [1, 2, 3, 4])
def test_shards_are_disjoint_and_cover_the_split(tiny_data, count):
  _, builder = tiny_data
  split = input_pipeline.split_dataset(builder, 'train')
  shards = [frame_ids(input_pipeline.data_shard(split, m, count))
            for m in range(count)]
  everything = sorted(sum(shards, []))
  assert everything == list(range(45))  # Disjoint and covering.
  assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_each_device_reads_only_its_shard_and_each_epoch_covers_it(
    tiny_data):
  config, builder = tiny_data
  config = config.copy_and_resolve_references()
  config.data.frames_per_device = 2
  for m in range(4):
    shard = frame_ids(input_pipeline.data_shard(
        input_pipeline.split_dataset(builder, 'train'), m, 4))
    batches = input_pipeline.device_batches(config, builder, position=m,
                                            num_positions=4)
    seen = np.concatenate([batches[s]['frame_id'] for s in range(12)])
    assert set(seen) == set(shard)
    # Repeat-before-batch: the first len(shard) frames are one epoch.
    assert sorted(seen[:len(shard)]) == shard
    assert sorted(seen[len(shard):2 * len(shard)]) == shard
    assert list(seen[:len(shard)]) != list(seen[len(shard):2 * len(shard)])


def test_process_part_of_a_batch_does_not_depend_on_the_process_split(
    tiny_data):
  # 1 process x 4 devices and 2 processes x 2 devices read the same global
  # batch at every step: each process reads its devices' rows of it.
  config, builder = tiny_data
  whole = input_pipeline.train_batches(config, builder,
                                       positions=[0, 1, 2, 3],
                                       num_positions=4)
  halves = [input_pipeline.train_batches(config, builder, positions=part,
                                         num_positions=4)
            for part in ([0, 1], [2, 3])]
  for step in (0, 7, 30):
    np.testing.assert_array_equal(
        whole[step]['frame_id'],
        np.concatenate([half[step]['frame_id'] for half in halves]))


def test_too_few_frames_for_the_devices_is_a_clear_error(tiny_data):
  config, builder = tiny_data
  with pytest.raises(portrait_dataset.DatasetError,
                     match='45 frames, fewer than the 64 devices'):
    input_pipeline.device_batches(config, builder, position=50,
                                  num_positions=64)


def test_global_batch_shapes_and_shardings(tiny_data):
  config, builder = tiny_data
  config = config.copy_and_resolve_references()
  config.data.frames_per_device = 2
  mesh = data_mesh()
  assert mesh.devices.size == 4  # tests/conftest.py
  batch = next(input_pipeline.create_train_iterator(config, builder, mesh))
  b = 2 * 4
  expected = {
      'image': ((b, 32, 32, 3), np.uint8),
      'parsing': ((b, 32, 32), np.uint8),
      'audio': ((b, 8, 16, 8), np.float32),
      'c2w': ((b, 4, 4), np.float32),
      'face_rect': ((b, 4), np.int32),
      'frame_id': ((b,), np.int32),
      'mouth_open': ((b,), np.float32),
      'eye_openness': ((b,), np.float32),
  }
  assert set(batch) == set(expected)
  for key, (shape, dtype) in expected.items():
    array = batch[key]
    assert isinstance(array, jax.Array), key
    assert array.shape == shape and array.dtype == dtype, key
    assert array.sharding.spec == P('data') and array.sharding.mesh == mesh
    assert {s.data.shape[0] for s in array.addressable_shards} == {2}
  ids = np.asarray(batch['frame_id'])
  assert len(set(ids)) == b and ids.max() < 45  # Train frames only.


def test_batch_at_step_is_independent_of_where_iteration_starts(tiny_data):
  config, builder = tiny_data
  mesh = data_mesh()
  straight = input_pipeline.create_train_iterator(config, builder, mesh)
  from_zero = [jax.device_get(next(straight)) for _ in range(16)]
  for start in (5, 13):
    resumed = input_pipeline.create_train_iterator(config, builder, mesh,
                                                   start_step=start)
    for step in range(start, 16):
      batch = jax.device_get(next(resumed))
      for key in batch:
        np.testing.assert_array_equal(batch[key], from_zero[step][key])
    resumed.close()
  # Steps 0..11 of 4 frames cross the 45-frame epoch boundary: all frames.
  seen = np.concatenate([b['frame_id'] for b in from_zero[:12]])
  assert set(seen) == set(range(45))

  other_seed = config.copy_and_resolve_references()
  other_seed.seed = config.seed + 1
  other = next(input_pipeline.create_train_iterator(other_seed, builder, mesh))
  assert list(other['frame_id']) != list(from_zero[0]['frame_id'])


def test_load_split_in_frame_order(tiny_data):
  config, builder = tiny_data
  val = input_pipeline.load_split(config, builder, 'val')
  np.testing.assert_array_equal(val['frame_id'], np.arange(45, 50))
  assert val['image'].shape == (5, 32, 32, 3)
  assert val['audio'].dtype == np.float32
  picked = input_pipeline.load_split(config, builder, 'train', indices=[7, 2])
  np.testing.assert_array_equal(picked['frame_id'], [7, 2])
  empty = input_pipeline.load_split(config, builder, 'val', indices=[])
  assert empty['image'].shape == (0, 32, 32, 3)


def test_builder_for_other_config_is_refused(tiny_data):
  config, builder = tiny_data
  other = config.copy_and_resolve_references()
  other.data.audio_dim = 9
  with pytest.raises(portrait_dataset.DatasetError, match='do not match'):
    input_pipeline.load_split(other, builder, 'val')
