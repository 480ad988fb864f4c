"""Tests of ssp_nerf_jax.synthetic, the procedural talking-portrait maker."""
import dataclasses
import functools

import numpy as np
import pytest

from ssp_nerf_jax.rendering import rigid
from ssp_nerf_jax import synthetic
from ssp_nerf_jax.synthetic import poses
from ssp_nerf_jax.synthetic import raycast
from ssp_nerf_jax.synthetic import scene


@functools.lru_cache(maxsize=None)
def _clip(size, duration_s, seed):
  """Clips are immutable, so tests share them (keeps the file fast)."""
  return synthetic.generate_clip(size=size, duration_s=duration_s, seed=seed)


def _project(points_head, c2w, focal, cx, cy):
  """Head-space points [N, 3] -> pixel (u, v) [N, 2] per frame c2w [N, 4, 4]."""
  rot, trans = c2w[:, :3, :3], c2w[:, :3, 3]
  p_cam = np.einsum('nji,nj->ni', rot, points_head - trans)  # R^T (p - t)
  u = cx + focal * p_cam[:, 0] / -p_cam[:, 2]
  v = cy - focal * p_cam[:, 1] / -p_cam[:, 2]
  return np.stack([u, v], -1)


def test_clip_fields_shapes_and_dtypes():
  clip = _clip(32, 2.0, 0)
  n = 50
  assert clip.images.shape == (n, 32, 32, 3) and clip.images.dtype == np.uint8
  assert clip.parsing.shape == (n, 32, 32) and clip.parsing.dtype == np.uint8
  assert clip.c2w.shape == (n, 4, 4) and clip.c2w.dtype == np.float32
  assert clip.face_rect.shape == (n, 4) and clip.face_rect.dtype == np.int32
  assert clip.mouth_open.shape == (n,) and clip.mouth_open.dtype == np.float32
  assert clip.audio.shape == (32000,) and clip.audio.dtype == np.float32
  assert clip.background.shape == (32, 32, 3)
  assert clip.background.dtype == np.uint8
  assert clip.sample_rate == 16000 and clip.fps == 25.0
  assert clip.cx == clip.cy == 16.0
  assert clip.focal == pytest.approx(1100.0 * 32 / 450)
  assert clip.class_names == synthetic.CLASS_NAMES
  assert len(synthetic.CLASS_NAMES) == 11
  assert synthetic.CLASS_COLORS.shape == (11, 3)
  assert synthetic.CLASS_COLORS.dtype == np.uint8
  assert np.all((clip.mouth_open >= 0) & (clip.mouth_open <= 1))
  assert np.abs(clip.audio).max() <= 1.0
  with pytest.raises(dataclasses.FrozenInstanceError):
    clip.fps = 30.0  # pytype: disable=not-writable


def test_class_ids_and_colours_match_design():
  assert synthetic.CLASS_NAMES == ('background', 'skin', 'brows', 'eyes',
                                   'ears', 'nose', 'mouth', 'lips', 'neck',
                                   'torso', 'hair')
  colors = {n: tuple(c) for n, c in zip(synthetic.CLASS_NAMES,
                                        synthetic.CLASS_COLORS.tolist())}
  assert colors['background'] == (255, 255, 255)
  assert colors['skin'] == (25, 202, 173)
  assert colors['ears'] == (0, 0, 255)
  assert colors['hair'] == (244, 96, 108)
  assert len(set(colors.values())) == 11


def test_deterministic_by_seed():
  a = synthetic.generate_clip(size=32, duration_s=2.0, seed=3)
  b = synthetic.generate_clip(size=32, duration_s=2.0, seed=3)
  for field in dataclasses.fields(a):
    x, y = getattr(a, field.name), getattr(b, field.name)
    if isinstance(x, np.ndarray):
      assert x.dtype == y.dtype and np.array_equal(x, y), field.name
    else:
      assert x == y, field.name
  c = _clip(32, 2.0, 0)
  assert not np.array_equal(a.audio, c.audio)
  assert not np.array_equal(a.mouth_open, c.mouth_open)


def test_every_class_present():
  clip = _clip(48, 3.0, 0)
  present = np.unique(clip.parsing)
  assert present.tolist() == list(range(11))


def test_background_pixels_show_the_plate():
  clip = _clip(32, 2.0, 0)
  bg = clip.parsing == 0
  plate = np.broadcast_to(clip.background, clip.images.shape)
  assert np.array_equal(clip.images[bg], plate[bg])
  assert not np.array_equal(clip.images[~bg], plate[~bg])


def test_mouth_area_open_and_closed():
  clip = _clip(96, 2.0, 0)
  area = clip.parsing.shape[1] * clip.parsing.shape[2]
  mouth = (clip.parsing == scene.MOUTH).sum(axis=(1, 2)) / area
  region = mouth + (clip.parsing == scene.LIPS).sum(axis=(1, 2)) / area
  is_open = clip.mouth_open > 0.5
  closed = clip.mouth_open < 0.02
  assert is_open.sum() >= 3 and closed.sum() >= 3
  assert np.all((region[is_open] >= 0.005) & (region[is_open] <= 0.03))
  assert np.all(mouth[is_open] > 0)
  assert np.all(mouth[closed] == 0)
  # More opening, more visible mouth interior.
  assert np.corrcoef(clip.mouth_open, mouth)[0, 1] > 0.8


@pytest.mark.parametrize('seed', [0, 1, 2, 3])
def test_mouth_open_follows_band_energy(seed):
  audio = synthetic.synthesize_speech(4.0, 16000, seed).astype(np.float64)
  num_frames = 100
  mouth = synthetic.mouth_open_from_audio(audio, 16000, num_frames)
  # Independent measure: RMS amplitude between 300 and 3000 Hz in 80 ms
  # (two video frames) Hann windows centred on i / 25 s.
  hop, win = 640, 1280
  padded = np.pad(audio, (win // 2, win))
  freqs = np.fft.rfftfreq(win, 1 / 16000)
  band = (freqs >= 300) & (freqs <= 3000)
  rms = []
  for i in range(num_frames):
    spec = np.abs(np.fft.rfft(padded[i * hop:i * hop + win] *
                              np.hanning(win)))**2
    rms.append(np.sqrt(spec[band].sum()))
  r = np.corrcoef(rms, mouth)[0, 1]
  assert r > 0.8, r
  # Both closed (pauses) and wide open (loud vowels) frames occur.
  assert (mouth == 0).mean() > 0.1 and mouth.max() > 0.8


def test_mouth_open_from_audio_silence_is_closed():
  silence = np.zeros(16000, np.float32)
  assert np.all(synthetic.mouth_open_from_audio(silence, 16000, 25) == 0)
  clip = _clip(32, 2.0, 0)
  again = synthetic.mouth_open_from_audio(clip.audio, 16000, clip.num_frames)
  assert np.array_equal(again, clip.mouth_open)


def test_head_width_fraction():
  clip = _clip(48, 3.0, 0)
  frac = clip.face_rect[:, 2] / clip.images.shape[2]
  assert np.all((frac >= 0.25) & (frac <= 0.40)), (frac.min(), frac.max())
  x, y, w, h = clip.face_rect[0]
  head = np.isin(clip.parsing[0], scene.HEAD_CLASSES)
  assert head[y:y + h, x:x + w].sum() == head.sum()


def test_rigid_head_point_reprojects_consistently():
  clip = _clip(64, 3.0, 0)
  # The nose centre is inside the nose; seen from the front, its projection
  # always lands on the nose if the head is rigid in head space.
  uv = np.round(_project(scene.NOSE_CENTER, clip.c2w.astype(np.float64),
                         clip.focal, clip.cx, clip.cy)).astype(int)
  cls = clip.parsing[np.arange(clip.num_frames), uv[:, 1], uv[:, 0]]
  assert np.all(cls == scene.NOSE)
  # The head moves in the image (real pose track).
  assert np.ptp(uv, axis=0).max() >= 1


def test_torso_moves_relative_to_head():
  clip = _clip(64, 3.0, 0)
  track = poses.load_pose_track()[0]
  rot, trans = scene.torso_poses(clip.num_frames, track, seed=0)
  # A chest point (torso space) on the front of the torso.
  chest = scene.TORSO_CENTER + np.array([0.08, 0.02, 0.0])
  chest[2] += scene.TORSO_RADII[2] * np.sqrt(
      1 - (0.08 / scene.TORSO_RADII[0])**2 - (0.02 / scene.TORSO_RADII[1])**2)
  p_cam = np.einsum('nij,j->ni', rot, chest) + trans
  c2w = clip.c2w.astype(np.float64)
  p_head = np.einsum('nij,nj->ni', c2w[:, :3, :3], p_cam) + c2w[:, :3, 3]
  # Rigid in its own frame: the point projects onto the torso every frame.
  u = clip.cx + clip.focal * p_cam[:, 0] / -p_cam[:, 2]
  v = clip.cy - clip.focal * p_cam[:, 1] / -p_cam[:, 2]
  cls = clip.parsing[np.arange(clip.num_frames), np.round(v).astype(int),
                     np.round(u).astype(int)]
  assert np.all(cls == scene.TORSO)
  # ...but not rigid with the head: it wanders in head space (> 5 mm at
  # head width 0.1 = 10 cm), and sways on its own in the camera frame.
  assert np.linalg.norm(np.ptp(p_head, axis=0)) > 0.005
  assert np.linalg.norm(np.ptp(p_cam, axis=0)) > 0.001


def test_centre_pixel_ray_points_along_minus_z():
  size = 32
  focal = 1100.0 * size / 450
  dirs = raycast.pixel_grid_directions(size, size, focal, size / 2, size / 2)
  centre = dirs.reshape(size, size, 3)[size // 2, size // 2]
  np.testing.assert_array_equal(centre, [0.0, 0.0, -1.0])
  # Right is +x, down the image is -y.
  assert dirs.reshape(size, size, 3)[size // 2, -1, 0] > 0
  assert dirs.reshape(size, size, 3)[-1, size // 2, 1] < 0
  # In head space the centre ray is the camera's -z axis: -c2w[:3, 2].
  clip = _clip(32, 2.0, 0)
  d_head = clip.c2w[:, :3, :3] @ centre
  np.testing.assert_allclose(d_head, -clip.c2w[:, :3, 2], atol=1e-6)


def test_pose_track_and_bounds():
  c2w, focal, cx, cy, rects = synthetic.load_pose_track()
  assert c2w.shape == (728, 4, 4) and c2w.dtype == np.float32
  assert rects.shape == (728, 4) and rects.dtype == np.int32
  assert (focal, cx, cy) == (1100.0, 225.0, 225.0)
  rot = c2w[:, :3, :3].astype(np.float64)
  np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1),
                             np.broadcast_to(np.eye(3), rot.shape), atol=1e-4)
  near, far = rigid.adnerf_bounds(c2w)
  assert far - near == pytest.approx(0.6)
  assert 0.55 < near < 0.58  # AD-NeRF's Obama: 0.568
  clip = _clip(32, 2.0, 0)
  np.testing.assert_array_equal(clip.c2w, c2w[:50])
  assert (clip.near, clip.far) == pytest.approx(rigid.adnerf_bounds(clip.c2w))


def test_ping_pong_indices():
  idx = rigid.ping_pong_indices(10, 4)
  assert idx.tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
  assert rigid.ping_pong_indices(3, 1).tolist() == [0, 0, 0]


@pytest.mark.parametrize('kwargs, word', [
    (dict(size=8), '8'),
    (dict(size=15), '15'),
    (dict(duration_s=0.0), '0.0'),
    (dict(duration_s=-1.0), '-1.0'),
    (dict(supersample=0), 'supersample'),
])
def test_invalid_arguments(kwargs, word):
  with pytest.raises(ValueError, match=word):
    synthetic.generate_clip(**kwargs)


def test_subpixel_directions_spread_evenly_over_each_pixel():
  focal, centre = 20.0, raycast.pixel_grid_directions(4, 5, 20.0, 2.5, 2.0)
  one = raycast.subpixel_directions(4, 5, focal, 2.5, 2.0, 1)
  assert len(one) == 1 and np.array_equal(one[0], centre)
  three = raycast.subpixel_directions(4, 5, focal, 2.5, 2.0, 3)
  assert len(three) == 9
  np.testing.assert_allclose(three[4], centre, atol=1e-12)
  # Row-major: x steps by a third of a pixel, then y (image y is down).
  np.testing.assert_allclose(three[1][:, 0] - three[0][:, 0], 1 / (3 * focal))
  np.testing.assert_allclose(three[3][:, 1] - three[0][:, 1],
                             -1 / (3 * focal))
  np.testing.assert_allclose(np.mean(three, axis=0), centre, atol=1e-12)


def test_supersampled_pixel_is_the_mean_of_a_finer_render():
  """A 3x supersampled pixel j averages the 3x finer render's 3 x 3 block
  around its centre 3j (same scene, three times the focal)."""
  size = 16
  coarse = synthetic.generate_clip(size=size, duration_s=0.04, supersample=3)
  fine = synthetic.generate_clip(size=3 * size, duration_s=0.04)
  assert np.array_equal(coarse.parsing[0], fine.parsing[0, ::3, ::3])
  inner = slice(1, size - 1)
  rows = 3 * np.arange(1, size - 1)[:, None] + np.arange(-1, 2)
  block = fine.images[0][rows[:, None, :, None], rows[None, :, None, :]]
  hit = (fine.parsing[0][rows[:, None, :, None], rows[None, :, None, :]]
         != scene.BACKGROUND).all(axis=(2, 3))
  mean = block.astype(np.float64).mean(axis=(2, 3))
  diff = np.abs(coarse.images[0][inner, inner].astype(np.float64) - mean)
  assert hit.sum() > 50
  assert diff[hit].max() <= 1.0
  # Not the centre ray alone: edges are blended.
  single = synthetic.generate_clip(size=size, duration_s=0.04)
  assert np.abs(coarse.images[0].astype(int) - single.images[0]).max() > 20


def test_head_culling_changes_nothing(monkeypatch):
  clip = _clip(32, 2.0, 0)
  monkeypatch.setattr(scene, 'HEAD_BOUND_RADIUS', 10.0)
  uncut = synthetic.generate_clip(size=32, duration_s=2.0, seed=0)
  assert np.array_equal(clip.images, uncut.images)
  assert np.array_equal(clip.parsing, uncut.parsing)
