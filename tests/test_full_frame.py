"""Full-frame output: the render pasted into the source frame (exact outside
the crop, feathered inside), source frames in the track's order, the
source video's checks.  The end-to-end render_main --full_frame run is in
test_preprocess.py, next to the video-trained workdir it uses."""
import json
import types

import ml_collections
import numpy as np
import pytest

from ssp_nerf_jax.data import input_pipeline
from ssp_nerf_jax.offline import full_frame
from ssp_nerf_jax.offline import job_inputs
from ssp_nerf_jax.offline import mp4
from ssp_nerf_jax.preprocess import decode
from ssp_nerf_jax.preprocess import pipeline
from ssp_nerf_jax.rendering import rigid
from ssp_nerf_jax.runtime import errors

FRAME_HW = (40, 60)


def random_frame(seed=0):
  return np.random.default_rng(seed).integers(
      0, 256, (*FRAME_HW, 3)).astype(np.uint8)


def outside(box, hw=FRAME_HW):
  """bool [H, W]: pixels outside box (x, y, side)."""
  x, y, side = box
  rows, cols = np.mgrid[:hw[0], :hw[1]]
  return ~((rows >= y) & (rows < y + side) & (cols >= x) & (cols < x + side))


@pytest.mark.parametrize('box', [(30, 5, 30),    # touches the right edge
                                 (10, -4, 20),   # crosses the top edge
                                 (-6, 25, 24)])  # crosses left and bottom
def test_composite_is_the_source_outside_the_box(box):
  frame = random_frame()
  render = np.full((12, 12, 3), 200, np.uint8)
  out = full_frame.composite(frame, render, np.ones((12, 12), np.uint8), box)
  assert out.shape == frame.shape and out.dtype == np.uint8
  np.testing.assert_array_equal(out[outside(box)], frame[outside(box)])
  assert np.any(out[~outside(box)] != frame[~outside(box)])


def test_composite_feathers_sides_inside_the_frame_only():
  """Box (30, 5, 30) in a 60 x 40 frame: its left and top sides have
  source beyond them (blended), its right side is the frame edge (not)."""
  frame = np.zeros((*FRAME_HW, 3), np.uint8)
  box = (30, 5, 30)
  render = np.full((10, 10, 3), 255, np.uint8)
  out = full_frame.composite(frame, render, np.ones((10, 10), np.uint8), box)
  weight = out[..., 0].astype(np.float64) / 255
  border = full_frame.FEATHER_SHARE * box[2]
  middle_row = box[1] + box[2] // 2
  # The left side ramps up from the box edge, the right is full weight.
  ramp = weight[middle_row, 30:30 + int(border) + 2]
  assert 0 < ramp[0] < 0.5 and np.all(np.diff(ramp) >= 0) and ramp[-1] == 1
  assert weight[middle_row, FRAME_HW[1] - 1] == 1
  np.testing.assert_allclose(ramp[0], 0.5 / border, atol=1 / 255)
  # Top side too; bottom (row 35 < 40) also has source below it.
  assert 0 < weight[5, 45] < 0.5 and 0 < weight[34, 45] < 0.5


def test_background_class_keeps_the_source():
  frame = random_frame(1)
  box = (10, 5, 30)
  class_id = np.zeros((10, 10), np.uint8)
  class_id[2:8, 2:8] = 9  # torso in the middle only
  out = full_frame.composite(frame, np.full((10, 10, 3), 255, np.uint8),
                             class_id, box)
  alpha = full_frame.person_alpha(class_id, 30)
  inside = out[5:35, 10:40]
  np.testing.assert_array_equal(inside[alpha == 0], frame[5:35, 10:40][
      alpha == 0])
  assert np.any(alpha > 0.999) and np.all(inside[alpha > 0.999] >= 254)


def test_feather_weights_shape_and_range():
  weights = full_frame.feather_weights((5, 5, 20), (40, 40), 4)
  assert weights.shape == (20, 20) and weights.dtype == np.float32
  assert weights.min() > 0 and weights.max() == 1
  np.testing.assert_array_equal(weights, weights.T)
  np.testing.assert_array_equal(
      full_frame.feather_weights((0, 0, 40), (40, 40), 4), 1)


@pytest.fixture(scope='module')
def numbered_video(tmp_path_factory):
  """A 2 s, 50-frame mp4 whose frame k is grey level 4 k (+ its frames as
  read_frames decodes them)."""
  frames = np.repeat(np.arange(0, 200, 4, dtype=np.uint8), 16 * 24 * 3)
  path = str(tmp_path_factory.mktemp('video') / 'numbered.mp4')
  mp4.write_mp4(path, frames.reshape(50, 16, 24, 3), 25.0)
  return path, np.stack(list(decode.read_frames(path)))


def test_frames_in_order_follow_the_ping_pong_track(numbered_video):
  path, decoded = numbered_video
  ids = np.arange(10, 30)[rigid.ping_pong_indices(55, 20)]
  got = list(full_frame.frames_in_order(path, ids, 25.0))
  assert len(got) == 55
  for frame, i in zip(got, ids):
    np.testing.assert_array_equal(frame, decoded[i])
  # Repeats and a still frame too.
  got = list(full_frame.frames_in_order(path, [3, 3, 1, 49], 25.0))
  np.testing.assert_array_equal(np.stack(got), decoded[[3, 3, 1, 49]])


def test_track_frame_ids_are_the_pose_tracks_frames(tiny_data):
  config, builder = tiny_data
  run = types.SimpleNamespace(builder=builder, config=config)
  poses = job_inputs.pose_track('train', run, 130)
  ids = full_frame.track_frame_ids(run, 130)
  train = input_pipeline.load_split(config, builder, 'train')
  by_id = dict(zip(train['frame_id'].tolist(), train['c2w']))
  assert len(ids) == 130 and ids.max() == train['frame_id'].max()
  for pose, i in zip(poses, ids):
    np.testing.assert_array_equal(pose, by_id[int(i)])


def fake_run(folder):
  config = ml_collections.ConfigDict({'data': {'builder_config': 'adnerf',
                                               'path': str(folder)}})
  return types.SimpleNamespace(config=config)


def test_source_video_checks(numbered_video, tmp_path):
  path, _ = numbered_video
  info = {'source': str(tmp_path / 'moved.mp4'), 'source_size': [24, 16],
          'source_sha256': pipeline.file_digest(path), 'fps': 25.0,
          'crop': {'x': 4, 'y': 0, 'side': 16}}
  run = fake_run(tmp_path)
  with pytest.raises(errors.UserError, match='needs the preprocess.json'):
    full_frame.load_source(run)
  assert full_frame.find_source(run, None, required=False) is None
  (tmp_path / pipeline.INFO_FILE).write_text(json.dumps(info))
  with pytest.raises(errors.UserError,
                     match=r'moved.mp4 .*--source_video=PATH$'):
    full_frame.load_source(run)
  source = full_frame.load_source(run, path)
  assert source == (path, (4, 0, 16), 24, 16, 25.0)
  other = tmp_path / 'other.mp4'
  mp4.write_mp4(str(other), np.zeros((50, 16, 24, 3), np.uint8), 25.0)
  with pytest.raises(errors.UserError, match='not the video'):
    full_frame.load_source(run, str(other))
