"""The occupancy grid (occupancy.py) and rendering with it (frame_renderer,
offline_jobs, render_main)."""
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from configs import tiny
from ssp_nerf_jax.data import input_pipeline
from ssp_nerf_jax.offline import jobs
from ssp_nerf_jax.offline import trained as trained_lib
from ssp_nerf_jax.rendering import frame_renderer
from ssp_nerf_jax.rendering import occupancy
from ssp_nerf_jax.rendering import rays as rays_lib
from ssp_nerf_jax.rendering import volume_rendering
from ssp_nerf_jax.runtime import parallel

BOX = np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]], np.float32)
RADIUS = 0.3
SIGMA = 50.0


class Spheres:
  """A stand-in model: a sphere of density SIGMA whose centre's x is each
  frame's audio[0, 0, 0] (frames with other centres: other "mouth
  states")."""
  density = None

  def __init__(self, radius=RADIUS):
    self.radius = radius

  def apply(self, params, points, audio, smooth, c2w, mouth, method=None,
            eyes=None):
    del params, smooth, c2w, mouth, method, eyes
    centre = jnp.stack([audio[:, 0, 0, 0], jnp.zeros(audio.shape[0]),
                        jnp.zeros(audio.shape[0])], -1)[:, None]
    inside = jnp.linalg.norm(points - centre, axis=-1) < self.radius
    return jnp.where(inside, SIGMA, 0.0)


def sphere_grid(centre, resolution=16, radius=RADIUS):
  """The grid of one frame of `Spheres` centred at x = `centre`, measured
  on every (simulated) device."""
  settings = default.get_config().occupancy
  settings.resolution = resolution
  settings.points_per_call = 1000  # 16^3 cells on 4 devices: padded
  audio = np.zeros((8, 16, 8), np.float32)
  audio[0, 0, 0] = centre
  grids = occupancy.FrameGrids(Spheres(radius), settings, BOX,
                               parallel.make_data_mesh())
  return jax.device_get(grids(None, np.eye(4, dtype=np.float32), audio, True))


def test_grid_marks_analytic_density_with_margin():
  grid = sphere_grid(0.4)
  occ = np.asarray(occupancy.occupied(grid, threshold=0.01, margin=1))
  rng = np.random.default_rng(0)
  d = rng.normal(size=(4000, 3))  # every point of the sphere is occupied
  d *= (RADIUS * rng.uniform(size=(4000, 1))**(1 / 3) /
        np.linalg.norm(d, axis=1, keepdims=True))
  assert np.all(occupancy.lookup(occ, grid.box, d + [0.4, 0, 0]))
  # Exactly the cells whose centre is in the sphere and their neighbours
  # (margin 1) are occupied.
  centres = np.asarray(occupancy.cell_centres(grid.box, 16)).reshape(
      16, 16, 16, 3)
  inside = np.linalg.norm(centres - [0.4, 0, 0], axis=-1) < RADIUS
  padded = np.pad(inside, 1)
  expected = np.any([padded[i:i + 16, j:j + 16, k:k + 16]
                     for i in range(3) for j in range(3) for k in range(3)],
                    axis=0)
  np.testing.assert_array_equal(occ, expected)
  assert 0.01 < occ.mean() < 0.1


@pytest.fixture(scope='module')
def trained(tiny_workdir):
  return trained_lib.load_trained(tiny_workdir)


def test_grid_build_same_on_one_and_four_devices(trained):
  assert jax.device_count() == 4  # tests/conftest.py simulates four
  settings = trained.config.occupancy.copy_and_resolve_references()
  settings.resolution = 12
  settings.points_per_call = 12**3 // 8  # 2 calls per device on four
  box = occupancy.head_box(trained.scene, trained.model.near,
                           trained.model.far, settings.box_padding)
  c2w, audio = a_val_frame(trained)
  grids = []
  for devices in (jax.devices()[:1], jax.devices()):
    mesh = parallel.make_data_mesh(devices)
    measure = occupancy.FrameGrids(trained.model, settings, box, mesh)
    grids.append(jax.device_get(measure(parallel.replicate(trained.params,
                                                           mesh),
                                        c2w, audio, True)))
  np.testing.assert_allclose(grids[0].density, grids[1].density, rtol=1e-6)
  assert np.all(grids[0].density >= 0)  # every cell measured
  # A render's grids: the same matter, and the fine field's alone (no more).
  mesh = parallel.make_data_mesh()
  both = jax.device_get(occupancy.FrameGrids(
      trained.model, settings, box, mesh, surface=True)(
          parallel.replicate(trained.params, mesh), c2w, audio, True))
  np.testing.assert_allclose(both.grid.density, grids[1].density, rtol=1e-6)
  assert np.all(both.surface.density <= both.grid.density)
  assert np.all(both.surface.density >= 0)


def test_tight_sampling_matches_full_sampling():
  """A sphere inside the grid: rendering only each ray's occupied interval
  (under half of [near, far]) gives the full render's colour and
  opacity."""
  grid = sphere_grid(0.0, resolution=24)
  occ = occupancy.occupied(grid, 0.01, 1)
  pixels = np.stack(np.meshgrid(np.arange(0, 32, 3), np.arange(0, 32, 3),
                                indexing='ij'), -1).reshape(-1, 2)
  c2w = np.eye(4, dtype=np.float32)
  c2w[2, 3] = 2.0
  # Every ray stays inside the box from near to far (outside counts as
  # occupied).
  rays = rays_lib.pixel_rays(c2w, pixels, 80.0, 16.0, 16.0)
  near, far, hit = occupancy.find_occupied_interval(occ, grid.box, rays, 1.05, 2.95, 64)
  assert 0.1 < float(jnp.mean(hit)) < 0.95
  assert np.all(np.asarray(far - near)[np.asarray(hit)] < 1.0)

  @jax.jit
  def shade(near, far, samples=1024):
    z = volume_rendering.stratified_samples(None, near, far, samples)
    points = rays.origins[:, None] + rays.directions[:, None] * z[..., None]
    inside = jnp.linalg.norm(points, axis=-1) < RADIUS
    rgb = jnp.broadcast_to(jnp.abs(points), points.shape)
    out = volume_rendering.volume_render(rgb, jnp.where(inside, SIGMA, -1.0), z,
                                         rays.directions)
    return out['rgb'], out['acc']

  full = shade(jnp.full(near.shape, 1.05), jnp.full(far.shape, 2.95))
  tight = shade(near, far)
  np.testing.assert_allclose(tight[1], full[1], atol=0.01)
  np.testing.assert_allclose(tight[0], full[0], atol=0.01)
  # Ending each interval a cell behind where the grid turns the ray
  # opaque (transmittance 1 %) shortens it and still renders the same.
  # (`tight_bounds`, as renders and training's per-step grids do).
  settings = default.get_config().occupancy
  settings.march_steps = 64
  _, stop, tight_hit = occupancy.tight_bounds(grid, rays, settings, 1.05,
                                              2.95)
  np.testing.assert_array_equal(tight_hit, hit)
  opaque = occupancy.opaque_depth(grid, rays, 1.05, 2.95, 64, 0.01)
  through = np.asarray(hit & (opaque < 2.95))
  assert through.sum() > 10
  length = lambda end: float(np.mean(np.asarray(end - near)[through]))
  assert length(stop) < 0.75 * length(far)
  stopped = shade(near, stop)
  np.testing.assert_allclose(stopped[1], full[1], atol=0.01)
  np.testing.assert_allclose(stopped[0], full[0], atol=0.01)
  # Rays that hit nothing render no opacity in full either.
  assert np.all(np.asarray(full[1])[~np.asarray(hit)] < 1e-3)


def test_interval_ends_behind_the_surface_not_the_coarse_matter():
  """A render's interval ends behind where the fine field (what it
  composites) turns opaque: a coarse field spreading in front of the surface
  (a larger sphere here) would end it before the surface."""
  pixels = np.stack(np.meshgrid(np.arange(8, 24, 2), np.arange(8, 24, 2),
                                indexing='ij'), -1).reshape(-1, 2)
  c2w = np.eye(4, dtype=np.float32)
  c2w[2, 3] = 2.0
  rays = rays_lib.pixel_rays(c2w, pixels, 80.0, 16.0, 16.0)
  small, large = sphere_grid(0.0, resolution=24), sphere_grid(
      0.0, resolution=24, radius=2 * RADIUS)
  union = occupancy.Grid(density=jnp.maximum(small.density, large.density),
                         box=small.box)
  settings = default.get_config().occupancy
  settings.march_steps = 64
  near, to_surface, hit = occupancy.tight_bounds(
      occupancy.SurfaceGrid(grid=union, surface=small), rays, settings, 1.05,
      2.95)
  _, to_coarse, _ = occupancy.tight_bounds(union, rays, settings, 1.05, 2.95)
  through = np.asarray(hit)
  assert through.sum() > 10

  def surface_opacity(near, far, samples=1024):
    z = volume_rendering.stratified_samples(None, near, far, samples)
    points = rays.origins[:, None] + rays.directions[:, None] * z[..., None]
    inside = jnp.linalg.norm(points, axis=-1) < RADIUS
    return volume_rendering.volume_render(
        jnp.zeros_like(points), jnp.where(inside, SIGMA, -1.0), z,
        rays.directions)['acc']

  full = surface_opacity(jnp.full(near.shape, 1.05), jnp.full(near.shape, 2.95))
  np.testing.assert_allclose(surface_opacity(near, to_surface)[through],
                             full[through], atol=0.01)
  # The coarse matter's stop cuts the surface off where both are deep.
  assert float(jnp.max(full - surface_opacity(near, to_coarse))) > 0.5


def denser(trained):
  """`trained` (its config a copy) with a field that renders: a few steps
  leave the fine MLP's density at zero, so it becomes a copy of the coarse
  one, and both densities are raised (sigma's bias + 1) above the grid's
  threshold."""
  params = flax.core.unfreeze(trained.params)
  params['params']['fine'] = jax.tree.map(np.array,
                                          params['params']['coarse'])
  for level in ('coarse', 'fine'):
    params['params'][level]['sigma']['bias'] += 1.0
  return trained._replace(params=params,
                          config=trained.config.copy_and_resolve_references())


def small_renderer(trained):
  """A FrameRenderer of the trained scene (32 x 32 rays) in chunks of 4 x
  100 rays (the last one padded)."""
  config = trained.config.copy_and_resolve_references()
  config.render.chunk = 100
  return frame_renderer.FrameRenderer(config, trained.model, trained.scene,
                                      parallel.make_data_mesh())


def a_val_frame(trained):
  frames = input_pipeline.load_split(trained.config, trained.builder, 'val',
                                     [0])
  return frames['c2w'][0], frames['audio'][0]


def test_rays_through_empty_space_get_exactly_the_plate(trained):
  renderer = small_renderer(trained)
  # A box wide enough that every ray's [near, far] stays inside it (what
  # is outside counts as occupied).
  grid = occupancy.create(8, occupancy.head_box(
      trained.scene, trained.model.near, trained.model.far, padding=1.0))
  grid = grid.replace(density=jnp.zeros_like(grid.density))  # nothing there
  # No ray hits, so the network is never run (no parameters needed).
  out = renderer.render(None, *a_val_frame(trained), True, grid)
  assert not np.any(out['hit'])
  np.testing.assert_array_equal(out['rgb'], trained.scene.background)
  np.testing.assert_array_equal(out['acc'], 0.0)
  assert np.all(out['class_id'] == 0)


def test_offline_render_with_the_grid(trained):
  """Offline renders measure each frame's grid and render with it:
  rays through a region known empty get exactly the plate, the others are
  put back in their place from the packed chunks."""
  assert trained.config.occupancy.enabled  # on by default
  dense = denser(trained)
  # All the samples: a ray whose interval is all of [near, far] then
  # renders exactly as in a full render.
  dense.config.occupancy.sample_fraction = 1.0
  dense.config.occupancy.stop_transmittance = 0.0
  bound = jobs.make_renderer(dense)
  c2w, audio = a_val_frame(trained)
  # Denser than the threshold everywhere: every ray hits from near to far.
  with_grid, full = [jobs.render_to_memory(
      dense, c2w[None], audio[None], bound=b, keep_float=True)['rgb_float']
                     for b in (bound, bound._replace(occupancy=False))]
  np.testing.assert_allclose(with_grid, full, atol=1e-5)
  assert np.mean(np.abs(full - trained.scene.background)) > 0.05
  # Most of the image's left half looks through the box's empty half (x <
  # 0 in the camera's frame, which is the head's up to a small turn; the
  # margin takes a cell off it).
  grid = occupancy.create(32, occupancy.head_box(
      trained.scene, trained.model.near, trained.model.far, padding=1.0))
  grid = grid.replace(density=grid.density.at[:16].set(0.0))
  grid = parallel.replicate(grid, parallel.make_data_mesh())
  out = bound.renderer.render(bound.params, c2w, audio, bound.smooth, grid)
  assert 0.2 < out['hit'].mean() < 0.8
  culled = ~out['hit']
  np.testing.assert_array_equal(out['rgb'][culled],
                                trained.scene.background[culled])
  assert np.all(out['depth'][culled] == trained.model.far)


def test_render_main_nooccupancy_builds_no_grid(tiny_workdir, tmp_path,
                                                monkeypatch):
  import render_main  # pylint: disable=g-import-not-at-top
  def no_grid(*args):
    raise AssertionError('a grid was built')
  monkeypatch.setattr(occupancy, 'FrameGrids', no_grid)
  np.save(tmp_path / 'feats.npy', np.zeros(
      (2, 16, tiny.get_config().data.audio_dim), np.float32))
  render_main.FLAGS.unparse_flags()
  render_main.FLAGS(['render_main', f'--workdir={tiny_workdir}',
                     f'--audio={tmp_path / "feats.npy"}',
                     f'--out={tmp_path / "out"}', '--poses=static',
                     '--nooccupancy'])
  try:
    render_main.run()
  finally:
    render_main.FLAGS.unparse_flags()
  assert (tmp_path / 'out' / 'feats.mp4').exists()


def test_config_of_an_older_workdir_gains_the_occupancy_section(tmp_path):
  config = tiny.get_config()
  del config['occupancy']
  (tmp_path / 'config.json').write_text(config.to_json())
  loaded = trained_lib.load_config(str(tmp_path))
  assert loaded.occupancy.to_dict() == default.get_config().occupancy.to_dict()
  occupancy.check_settings(loaded.occupancy)
