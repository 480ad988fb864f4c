"""Whole frames rendered on the device mesh in fixed-size chunks (one compile).

With an occupancy grid, rays that hit nothing get the plate; the rest are
packed into chunks and sampled over their occupied interval only."""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from ssp_nerf_jax.rendering import occupancy
from ssp_nerf_jax.rendering import rays as rays_lib
from ssp_nerf_jax.rendering import volume_rendering
from ssp_nerf_jax.runtime import parallel


def chunk_size(config, num_rays):
  """Global rays per chunk: config.render.chunk per device, at most a frame."""
  devices = jax.device_count()
  per_device = min(config.render.chunk, -(-num_rays // devices))
  return per_device * devices


class FrameRenderer:
  """Renders whole frames [H, W] in chunks over the mesh."""

  def __init__(self, config, model, scene, mesh):
    self.scene = scene
    self.num_rays = scene.height * scene.width
    self.chunk = chunk_size(config, self.num_rays)
    self.num_chunks = -(-self.num_rays // self.chunk)
    self._rays_sharding = parallel.data_sharded(mesh, axis=1)
    # Replicated in and out: no one process can read a global array split over
    # several processes' devices.  The rays are split over devices inside.
    replicated = parallel.replicated(mesh)
    self._render_chunk = jax.jit(
        functools.partial(self._apply, model),
        in_shardings=(replicated,) * 7, out_shardings=replicated)
    settings = config.occupancy
    tight_model = model.clone(**tight_samples(model,
                                              settings.sample_fraction))
    self._render_tight = jax.jit(
        functools.partial(self._apply, tight_model),
        in_shardings=(replicated,) * 9, out_shardings=replicated)
    self._grids = None  # occupancy.FrameGrids, made on first use
    self._grid_settings = settings
    self._model = model
    self._mesh = mesh
    self._bounds = jax.jit(
        functools.partial(self._occupied_bounds, settings=settings,
                          near=model.near, far=model.far),
        in_shardings=(replicated,) * 2, out_shardings=replicated)

  def _apply(self, model, params, rays, audio, c2w, smooth, mouth, eyes,
             near=None, far=None):
    rays = jax.lax.with_sharding_constraint(rays, self._rays_sharding)
    out = model.apply(params, rays, audio, smooth_audio=smooth,
                      c2w=c2w, near=near, far=far, mouth=mouth,
                      eyes=eyes)['fine']
    return {'rgb': out['rgb'], 'acc': out['acc'], 'depth': out['depth'],
            'semantics': out['semantics']}

  def _occupied_bounds(self, grid, rays, *, settings, near, far):
    """(near, far, hit) [1, chunk] of a chunk: `occupancy.tight_bounds`
    through an `occupancy.Grid` or `occupancy.SurfaceGrid`."""
    rays = jax.lax.with_sharding_constraint(rays, self._rays_sharding)
    return occupancy.tight_bounds(grid, rays, settings, near, far)

  def frame_grid(self, params, c2w, audio, smooth, mouth=None, eyes=None):
    """The replicated `occupancy.SurfaceGrid` of one frame, for
    `render(..., grid)`."""
    if self._grids is None:
      model = self._model
      box = occupancy.head_box(self.scene, model.near, model.far,
                               self._grid_settings.box_padding)
      self._grids = occupancy.FrameGrids(model, self._grid_settings, box,
                                         self._mesh, surface=True)
    return self._grids(params, c2w, audio, smooth, mouth, eyes)

  def frame_chunks(self, c2w):
    """`num_chunks` host chunks of [1, chunk] rays (last one edge-padded)."""
    scene = self.scene
    rays = rays_lib.frame_rays(jnp.asarray(c2w), scene.height, scene.width,
                               scene.focal, scene.cx, scene.cy)
    padded = self.num_chunks * self.chunk
    # Host (numpy) inputs: identical on every process, placed by jit.
    flat = jax.tree.map(
        lambda x: np.pad(np.asarray(x).reshape(-1, 3),
                         ((0, padded - self.num_rays), (0, 0)), mode='edge'),
        rays)
    return [jax.tree.map(lambda x: x[None, i * self.chunk:(i + 1) * self.chunk],
                         flat) for i in range(self.num_chunks)]

  def render_chunk(self, params, chunk, c2w, audio, smooth, mouth=None,
                   eyes=None):
    """Renders one chunk of `frame_chunks` (asynchronously: jax arrays)."""
    return self._render_chunk(params, chunk,
                              *frame_inputs(c2w, audio, smooth, mouth, eyes))

  def render(self, params, c2w, audio, smooth, grid=None, mouth=None,
             eyes=None):
    """One frame: c2w [4, 4], audio [8, 16, C]; mouth None or NaN: predicted;
    eyes: eye openness (None or NaN: none).

    Returns numpy 'rgb' [H, W, 3] over the background, 'acc', 'depth',
    'class_id' [H, W], 'semantics' [H, W, K]; with a grid, 'hit' [H, W]."""
    scene = self.scene
    if grid is None:
      pieces = [self.render_chunk(params, chunk, c2w, audio, smooth, mouth,
                                  eyes)
                for chunk in self.frame_chunks(c2w)]
      pieces = jax.device_get(pieces)  # one wait, after every chunk is queued
      out = {k: np.concatenate([p[k][0] for p in pieces])[:self.num_rays]
             for k in pieces[0]}
    else:
      out = self._render_hits(params, c2w, audio, smooth, grid, mouth, eyes)
    out = {k: v.reshape(scene.height, scene.width, *v.shape[1:])
           for k, v in out.items()}
    out['rgb'] = np.asarray(volume_rendering.composite(out['rgb'], out['acc'],
                                                       scene.background))
    out['class_id'] = np.argmax(out['semantics'], axis=-1)
    return out

  def _render_hits(self, params, c2w, audio, smooth, grid, mouth, eyes):
    """{name: [H * W, ...]}: hits rendered over their interval, else plate."""
    chunks = self.frame_chunks(c2w)
    bounds = jax.device_get([self._bounds(grid, chunk) for chunk in chunks])
    near, far, hit = (np.concatenate([b[i][0] for b in bounds])
                      [:self.num_rays] for i in range(3))
    index = np.flatnonzero(hit)
    rays = jax.tree.map(lambda *x: np.concatenate([c[0] for c in x]),
                        *chunks)
    count = -(-len(index) // self.chunk)
    picks = np.pad(index, (0, count * self.chunk - len(index)), mode='edge')
    frame = frame_inputs(c2w, audio, smooth, mouth, eyes)
    pieces = []
    for i in range(count):
      part = picks[i * self.chunk:(i + 1) * self.chunk]
      pieces.append(self._render_tight(
          params, jax.tree.map(lambda x, p=part: x[None, p], rays), *frame,
          near[None, part], far[None, part]))
    pieces = jax.device_get(pieces)
    out = self.plate_outputs()
    if pieces:
      for k in out:
        out[k][index] = np.concatenate([p[k][0] for p in pieces])[:len(index)]
      # The plate's share of the depth counts at far, not the tightened far.
      out['depth'][index] += ((1 - out['acc'][index]) *
                              (self._model.far - far[index]))
    out['hit'] = hit
    return out

  def plate_outputs(self):
    """{name: [H * W, ...]} of rays that hit nothing: plate, far, class 0."""
    semantics = np.zeros((self.num_rays, self.scene.num_classes), np.float32)
    semantics[:, 0] = 1.0
    return {'rgb': np.zeros((self.num_rays, 3), np.float32),
            'acc': np.zeros(self.num_rays, np.float32),
            'depth': np.full(self.num_rays, self._model.far, np.float32),
            'semantics': semantics}

  def warm_up(self, params, c2w, audio, smooth):
    """Compiles the full path, the frame grid and the grid path on one chunk."""
    chunk = self.frame_chunks(c2w)[0]
    grid = self.frame_grid(params, c2w, audio, smooth)
    # Host bounds, as `render` passes them (device arrays compile anew).
    near, far, _ = jax.device_get(self._bounds(grid, chunk))
    jax.block_until_ready([
        self.render_chunk(params, chunk, c2w, audio, smooth),
        self._render_tight(params, chunk, *frame_inputs(c2w, audio, smooth),
                           near, far)])


def frame_inputs(c2w, audio, smooth, mouth=None, eyes=None):
  """(audio [1, A, 16, C], c2w [1, 4, 4], smooth, mouth [1], eyes [1]) host
  arrays."""
  return (np.asarray(audio, np.float32)[None],
          np.asarray(c2w, np.float32)[None], np.asarray(smooth),
          opening_input(mouth)[None], opening_input(eyes)[None])


def opening_input(mouth) -> np.ndarray:
  """float32 [] or [K]: `mouth` (or eye openness), NaN for None (the mouth
  predicted from the audio; no eye input)."""
  return np.asarray(np.nan if mouth is None else mouth, np.float32)


def tight_samples(model, fraction):
  """`fraction` of the model's sample counts; at least 2 coarse (one inside the
  interval, the plate at its far end)."""
  return {'num_coarse': max(2, round(model.num_coarse * fraction)),
          'num_fine': round(model.num_fine * fraction)}


def to_uint8(image):
  """float [..., 3] in [0, 1] -> uint8, rounded."""
  return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
