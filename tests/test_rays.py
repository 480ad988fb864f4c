"""Camera rays in AD-NeRF's OpenGL convention, checked by hand."""
import jax
import numpy as np

from ssp_nerf_jax.rendering import rays as rays_lib

# Jitted: one compile per input shape instead of one per eager op.
pixel_rays = jax.jit(rays_lib.pixel_rays)
frame_rays = jax.jit(rays_lib.frame_rays, static_argnums=(1, 2))


def random_c2w(seed=0):
  """A proper rotation and a translation as a [4, 4] camera-to-world."""
  rng = np.random.default_rng(seed)
  q, r = np.linalg.qr(rng.normal(size=(3, 3)))
  q = q * np.sign(np.diag(r))
  if np.linalg.det(q) < 0:
    q[:, 0] = -q[:, 0]
  c2w = np.eye(4, dtype=np.float32)
  c2w[:3, :3] = q
  c2w[:3, 3] = rng.normal(size=3)
  return c2w


def test_centre_pixel_looks_along_camera_minus_z():
  c2w = random_c2w()
  # Principal point on an integer pixel: (row, col) = (cy, cx).
  r = pixel_rays(c2w, np.array([3, 5]), focal=7.0, cx=5.0, cy=3.0)
  np.testing.assert_allclose(r.directions, -c2w[:3, 2], atol=1e-6)
  np.testing.assert_allclose(r.viewdirs, -c2w[:3, 2], atol=1e-6)
  np.testing.assert_allclose(r.origins, c2w[:3, 3], atol=1e-6)


def test_corner_pixel_direction_by_hand():
  c2w = random_c2w(1)
  focal, cx, cy = 10.0, 4.0, 3.0
  r = pixel_rays(c2w, np.array([0, 0]), focal, cx, cy)
  # Top-left pixel: left of centre (-x) and above it (+y) in camera space.
  d_cam = np.array([(0 - cx) / focal, -(0 - cy) / focal, -1.0])
  expected = [sum(c2w[i, j] * d_cam[j] for j in range(3)) for i in range(3)]
  np.testing.assert_allclose(r.directions, expected, atol=1e-6)
  np.testing.assert_allclose(r.viewdirs, expected / np.linalg.norm(expected),
                             atol=1e-6)


def test_frame_rays_layout_matches_pixel_rays():
  c2w = random_c2w(2)
  height, width, focal, cx, cy = 3, 5, 4.0, 2.5, 1.5
  r = frame_rays(c2w, height, width, focal, cx, cy)
  assert r.shape == (height, width)
  assert r.directions.shape == (height, width, 3)
  for row in range(height):
    for col in range(width):
      single = pixel_rays(c2w, np.array([row, col]), focal, cx, cy)
      np.testing.assert_allclose(r.directions[row, col], single.directions,
                                 atol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(r.viewdirs, axis=-1), 1.0,
                             atol=1e-6)
  # Camera-space z of every un-normalised direction is -1 (depth units).
  d_cam = np.asarray(r.directions) @ c2w[:3, :3]
  np.testing.assert_allclose(d_cam[..., 2], -1.0, atol=1e-6)


def test_per_frame_cameras_broadcast_over_rays():
  c2ws = np.stack([random_c2w(3), random_c2w(4)])  # [F=2, 4, 4]
  pixels = np.array([[[0, 0], [1, 2], [2, 1]], [[2, 2], [0, 1], [1, 0]]])
  r = pixel_rays(c2ws[:, None], pixels, 3.0, 1.0, 1.0)
  assert r.shape == (2, 3)
  for f in range(2):
    single = pixel_rays(c2ws[f], pixels[f], 3.0, 1.0, 1.0)
    np.testing.assert_allclose(r.directions[f], single.directions, atol=1e-6)
    np.testing.assert_allclose(r.origins[f],
                               np.broadcast_to(c2ws[f, :3, 3], (3, 3)),
                               atol=1e-6)
  assert r.reshape(6).origins.shape == (6, 3)
