"""Pose refinement: the correction math against scipy, a perturbed camera
moved back towards the truth, and refined poses saved and rendered."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.spatial import transform

from configs import tiny
from ssp_nerf_jax import synthetic
from ssp_nerf_jax.data import input_pipeline
from ssp_nerf_jax.data import scene as scene_lib
from ssp_nerf_jax.offline import jobs
from ssp_nerf_jax.offline import trained as trained_lib
from ssp_nerf_jax.rendering import pose_correction
from ssp_nerf_jax.runtime import parallel
from ssp_nerf_jax.training import experiment
from ssp_nerf_jax.training import pose_refinement


def test_rotation_matrix_matches_scipy_and_is_smooth_at_zero():
  rng = np.random.default_rng(0)
  rotvecs = np.concatenate([rng.normal(size=(5, 3)), 1e-6 * rng.normal(
      size=(2, 3)), np.zeros((1, 3))]).astype(np.float32)
  np.testing.assert_allclose(
      pose_correction.rotation_matrix(jnp.asarray(rotvecs)),
      transform.Rotation.from_rotvec(rotvecs).as_matrix(), atol=2e-6)
  grad = jax.grad(lambda v: jnp.sum(pose_correction.rotation_matrix(v) *
                                    jnp.arange(9.0).reshape(3, 3)))(
                                        jnp.zeros(3))
  assert np.all(np.isfinite(grad)) and np.any(grad != 0)
  delta = np.array([0.1, -0.2, 0.05, 0.01, 0.02, -0.03], np.float32)
  c2w = np.eye(4, dtype=np.float32)
  c2w[2, 3] = 0.9
  expected = np.eye(4)
  expected[:3, :3] = transform.Rotation.from_rotvec(delta[:3]).as_matrix()
  expected[:3, 3] = delta[3:]
  np.testing.assert_allclose(pose_correction.apply_correction(c2w, delta),
                             expected @ c2w, atol=1e-6)


def synthetic_scene_and_frames(config, num_frames):
  """A SceneInfo and input_pipeline-style frames of a synthetic clip."""
  clip = synthetic.generate_clip(size=config.data.size, duration_s=2.0)
  picks = np.linspace(0, clip.num_frames - 1, num_frames).round().astype(int)
  scene = scene_lib.SceneInfo(
      background=clip.background.astype(np.float32) / 255,
      height=clip.images.shape[1], width=clip.images.shape[2],
      focal=clip.focal, cx=clip.cx, cy=clip.cy,
      near=clip.near, far=clip.far, fps=clip.fps,
      num_classes=len(clip.class_names), class_names=clip.class_names,
      num_train=num_frames, num_val=1, audio_dim=config.data.audio_dim)
  frames = {
      'image': clip.images[picks], 'parsing': clip.parsing[picks],
      'audio': np.zeros((num_frames, config.data.audio_context, 16,
                         config.data.audio_dim), np.float32),
      'c2w': clip.c2w[picks].astype(np.float32),
      'face_rect': clip.face_rect[picks].astype(np.int32),
      'frame_id': np.arange(num_frames, dtype=np.int32),
      'mouth_open': clip.mouth_open[picks].astype(np.float32),
      'eye_openness': np.full(num_frames, np.nan, np.float32)}
  return scene, frames


TURN = np.array([0.03, -0.06, 0.02, 0.02, -0.02, 0.0], np.float32)


# Head points a few centimetres around the origin (corners of a cube).
HEAD_POINTS = 0.08 * np.stack(np.meshgrid(*[[-1.0, 1.0]] * 3), -1).reshape(
    -1, 3)


def image_error(c2w, truth, focal):
  """Mean distance in pixels between HEAD_POINTS seen from c2w [..., 4, 4]
  and from `truth`: what a pose error does to the picture."""
  def project(pose):
    w2c = np.linalg.inv(pose)
    cam = np.einsum('...ij,pj->...pi', w2c[..., :3, :3], HEAD_POINTS) + (
        w2c[..., None, :3, 3])
    return focal * cam[..., :2] / -cam[..., 2:3]
  return np.linalg.norm(project(c2w) - project(truth), axis=-1).mean(-1)


@pytest.fixture(scope='module')
def trained_with_one_bad_pose():
  """A tiny field trained on 8 synthetic frames, frame 0's camera turned by
  TURN (4 degrees, a shift of 3 % of the camera distance)."""
  config = tiny.get_config()
  config.model.torso_warp = False
  config.data.frames_per_device = 8
  config.train.rays_per_frame = 128
  config.train.ray_chunk = 128
  config.train.lr_decay_steps = 10_000
  config.train.lr = 5e-3
  config.pose_refinement.enabled = True
  config.pose_refinement.start_step = 250  # the field first
  config.pose_refinement.val_steps = 150
  config.pose_refinement.val_frames_per_device = 2
  config.pose_refinement.val_rays_per_frame = 128
  scene, frames = synthetic_scene_and_frames(config, 8)
  truth = frames['c2w'].copy()
  turn = np.zeros((8, 6), np.float32)
  turn[0] = TURN
  frames['c2w'] = np.asarray(pose_correction.apply_correction(truth, turn))
  exp = experiment.setup(config, parallel.make_data_mesh(jax.devices()[:1]),
                         scene=scene)
  state = exp.init_state()
  batch = jax.device_put(frames, parallel.data_sharded(exp.mesh))
  arrays = exp.scene_arrays()
  key = parallel.replicate(jax.random.PRNGKey(0), exp.mesh)
  for _ in range(400):
    state, _ = exp.train_step(state, batch, arrays, key)
  return exp, state, frames, truth, key


def test_training_moves_a_perturbed_camera_back_towards_the_truth(
    trained_with_one_bad_pose):
  exp, state, frames, truth, _ = trained_with_one_bad_pose
  table = np.asarray(state.poses.train)
  # Relative to the other frames' mean correction: a turn of every camera
  # is matched by one of the field (the gauge).
  relative = table[0] - table[1:].mean(0)
  moved = np.asarray(pose_correction.apply_correction(frames['c2w'][0],
                                                      relative))
  before = image_error(frames['c2w'][0], truth[0], exp.scene.focal)
  after = image_error(moved, truth[0], exp.scene.focal)
  assert after < 0.6 * before, (before, after)


def test_val_refinement_with_the_field_frozen(trained_with_one_bad_pose):
  exp, state, frames, truth, key = trained_with_one_bad_pose
  val = {k: v[1:3].copy() for k, v in frames.items()}
  val['frame_id'] = np.arange(2, dtype=np.int32)
  val['c2w'] = np.asarray(pose_correction.apply_correction(
      truth[1:3], np.stack([TURN, -TURN])))
  step_fn, val_config = exp.val_pose_step
  refined = pose_refinement.refine_val_poses(exp, state, step_fn, val_config,
                                             val, key)
  moved = np.asarray(pose_correction.apply_correction(
      val['c2w'], np.asarray(refined.poses.val)))
  before = image_error(val['c2w'], truth[1:3], exp.scene.focal)
  after = image_error(moved, truth[1:3], exp.scene.focal)
  assert np.all(after < 0.6 * before), (before, after)
  # Only the val corrections changed.
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.params),
               jax.device_get(refined.params))
  np.testing.assert_array_equal(state.poses.train, refined.poses.train)


def test_row_adam_is_adam_on_visited_rows_and_leaves_the_others():
  rng = np.random.default_rng(1)
  table = jnp.asarray(rng.normal(size=(3, 6)), jnp.float32)
  state = pose_refinement.RowAdam.create(table)
  dense = optax.adam(1e-2)
  dense_table, dense_state = table, dense.init(table[:2])
  for _ in range(4):
    grads = np.zeros((3, 6), np.float32)
    grads[:2] = rng.normal(size=(2, 6))  # row 2 never in a batch
    table, state = state.step(table, jnp.asarray(grads), 1e-2)
    updates, dense_state = dense.update(jnp.asarray(grads[:2]), dense_state)
    dense_table = dense_table.at[:2].set(
        optax.apply_updates(dense_table[:2], updates))
  np.testing.assert_allclose(table, dense_table, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(state.count, [4, 4, 0])


@pytest.fixture(scope='module')
def refined_workdir(tiny_data, tmp_path_factory):
  """configs/tiny.py trained with pose refinement on from its first step,
  then its val poses refined (a few steps: only the plumbing is tested)."""
  from ssp_nerf_jax.training import train  # pylint: disable=g-import-not-at-top
  config = tiny_data[0].copy_and_resolve_references()
  config.pose_refinement.enabled = True
  config.pose_refinement.start_step = 0
  config.pose_refinement.lr = 1e-2
  config.pose_refinement.val_steps = 3
  config.pose_refinement.val_frames_per_device = 2
  config.pose_refinement.val_rays_per_frame = 64
  workdir = str(tmp_path_factory.mktemp('refined') / 'workdir')
  train.train_and_evaluate(config, workdir)
  return workdir


def test_refined_poses_are_saved_and_rendered(refined_workdir, tmp_path,
                                              monkeypatch):
  trained = trained_lib.load_trained(refined_workdir)
  for split in ('train', 'val'):
    fitted = input_pipeline.load_poses(trained.builder, split)
    table = np.asarray(getattr(trained.poses, split))
    assert table.shape == (len(fitted), 6) and np.any(table != 0), split
    np.testing.assert_allclose(
        trained_lib.split_poses(trained, split),
        pose_correction.apply_correction(fitted, table), atol=1e-6)
    np.testing.assert_array_equal(
        trained_lib.split_poses(trained, split, corrected=False), fitted)
  # render_main's val job draws the refined poses unless told 'fitted' (a
  # 6-step field is too empty for poses to show in its picture: the poses
  # handed to the frame stream are checked).
  drawn = []
  stream_frames = jobs.stream_frames

  def recording_stream(bound, c2w, *args, **kwargs):
    drawn.append(np.asarray(c2w))
    return stream_frames(bound, c2w, *args, **kwargs)

  monkeypatch.setattr(jobs, 'stream_frames', recording_stream)
  bound = jobs.make_renderer(trained)
  for poses in ('refined', 'fitted'):
    os.makedirs(tmp_path / poses)
    result = jobs.render_val(trained, str(tmp_path / poses), bound=bound,
                             poses=poses)
    assert result['val_poses'] == poses
  np.testing.assert_array_equal(drawn[0], trained_lib.split_poses(
      trained, 'val'))
  np.testing.assert_array_equal(drawn[1], input_pipeline.load_poses(
      trained.builder, 'val'))
  assert not np.allclose(drawn[0], drawn[1], atol=1e-4)
