"""Whole frames rendered on the device mesh, in fixed-size chunks.

A frame's rays are rendered in chunks by one compiled function; each chunk
is split over every device of the mesh, so a frame of any size compiles
once and uses all devices.  Training's periodic evaluation, the offline
jobs and the render benchmark all render through `FrameRenderer`.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from ssp_nerf_jax import parallel
from ssp_nerf_jax import rays as rays_lib
from ssp_nerf_jax import render


def chunk_size(config, num_rays):
  """Global rays per chunk: config.render.chunk per device, never more
  than one frame needs, always a multiple of the device count."""
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
    # Inputs and outputs are replicated: every process passes the same host
    # rays and reads the whole chunk back (a global array split over
    # several processes' devices cannot be read by any one of them).  The
    # rays are split over the devices inside.
    replicated = parallel.replicated(mesh)
    self._render_chunk = jax.jit(
        functools.partial(self._apply, model),
        in_shardings=(replicated,) * 5, out_shardings=replicated)

  def _apply(self, model, params, rays, audio, c2w, smooth):
    rays = jax.lax.with_sharding_constraint(rays, self._rays_sharding)
    out = model.apply(params, rays, audio, smooth_audio=smooth,
                      c2w=c2w)['fine']
    return {'rgb': out['rgb'], 'acc': out['acc'], 'depth': out['depth'],
            'semantics': out['semantics']}

  def frame_chunks(self, c2w):
    """The rays of a frame as `num_chunks` host chunks of [1, chunk] rays
    (the last one padded by repeating its final ray)."""
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

  def render_chunk(self, params, chunk, c2w, audio, smooth):
    """Renders one chunk of `frame_chunks` (asynchronously: jax arrays)."""
    return self._render_chunk(params, chunk,
                              np.asarray(audio, np.float32)[None],
                              np.asarray(c2w, np.float32)[None],
                              np.asarray(smooth))

  def render(self, params, c2w, audio, smooth):
    """Renders one frame.

    Args:
      params: replicated model parameters.
      c2w: [4, 4] camera-to-head.
      audio: [8, 16, C] audio context windows of the frame.
      smooth: bool, whether audio smoothing is on.
    Returns:
      dict of numpy arrays: 'rgb' [H, W, 3] composited over the background,
      'acc' and 'depth' [H, W], 'semantics' [H, W, K], 'class_id' [H, W].
    """
    scene = self.scene
    pieces = [self.render_chunk(params, chunk, c2w, audio, smooth)
              for chunk in self.frame_chunks(c2w)]
    pieces = jax.device_get(pieces)  # one wait, after every chunk is queued
    out = {k: np.concatenate([p[k][0] for p in pieces])[:self.num_rays]
           for k in pieces[0]}
    out = {k: v.reshape(scene.height, scene.width, *v.shape[1:])
           for k, v in out.items()}
    out['rgb'] = np.asarray(render.composite(out['rgb'], out['acc'],
                                             scene.background))
    out['class_id'] = np.argmax(out['semantics'], axis=-1)
    return out


def to_uint8(image):
  """float [..., 3] in [0, 1] -> uint8, rounded."""
  return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
