"""Pose validation shared by the dataset reader and render tracks."""
import numpy as np

from ssp_nerf_jax.rendering import rigid


def rotation(angle):
  c, s = np.cos(angle), np.sin(angle)
  pose = np.eye(4)
  pose[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
  pose[:3, 3] = [0.1, -0.2, 1.0]
  return pose


def test_each_bad_pose_is_named_once_in_order():
  scaled = rotation(0.3)
  scaled[:3, :3] *= 1.01  # a 1 % scale is not rigid
  mirrored = rotation(0.2) @ np.diag([1.0, 1.0, -1.0, 1.0])  # det = -1
  sheared_row = rotation(0.1)
  sheared_row[3, 0] = 0.5
  nan = rotation(0.4)
  nan[1, 3] = np.nan
  poses = np.stack([rotation(0.5), scaled, nan, mirrored, sheared_row,
                    rotation(-1.0).astype(np.float32)])
  problems = rigid.pose_problems(poses)
  assert [i for i, _ in problems] == [1, 2, 3, 4]
  assert problems[1][1] == 'has non-finite values'
  assert all(reason.startswith('is not rigid') for i, reason in problems
             if i != 2)


def test_float32_rounding_is_tolerated():
  poses = np.stack([rotation(a) for a in np.linspace(-1, 1, 7)])
  assert rigid.pose_problems(np.round(poses, 6).astype(np.float32)) == []
