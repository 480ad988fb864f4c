"""PortraitNeRF: audio encoders + coarse/fine NeRF MLPs + volume rendering.

The whole AD-NeRF head model, with SSP-NeRF's parsing branch, as one Flax
module.  Parameter tree:

  audio_net   AudioNet (shared by coarse and fine)
  audio_att   AudioAttNet (only receives gradients once smoothing is on;
              AD-NeRF trains it with 5x the learning rate)
  coarse      NeRFMLP of the coarse pass
  fine        NeRFMLP of the fine pass
  (share_coarse_fine=True: a single NeRFMLP named `nerf` instead.)
  warp        TorsoWarp shared by both passes (only with torso_warp=True)
  mouth_readout  MouthReadout, the audio -> mouth opening ridge read-out
              (only with mouth_condition=True; fitted, not trained)
  mouth_region   MouthRegion, where the opening acts (only with
              mouth_condition and mouth_region_radius > 0; fitted, not
              trained)
"""
import functools
from typing import Optional

import jax
import jax.numpy as jnp

from ssp_nerf_jax.models import audio as audio_lib
from ssp_nerf_jax.models import mouth as mouth_lib
from ssp_nerf_jax.models import nerf
from ssp_nerf_jax.models import torso_warp as warp_lib
from ssp_nerf_jax.rendering import rays as rays_lib
from ssp_nerf_jax.rendering import volume_rendering


def configured_bound(value) -> Optional[float]:
  """config.render.near / far as a bound: the value when >= 0; negative
  means "the dataset's" (None)."""
  return float(value) if value >= 0 else None


class PortraitNeRF(nerf.NeRFLayout):
  """Audio-driven portrait NeRF with a parsing branch.

  Construct with `PortraitNeRF.from_config(config, num_classes, near, far)`
  or field by field (all fields are plain hashable values, so
  `module.apply` can be a static jit argument).

  Attributes:
    num_classes: K parsing classes (class 0 is the background).
    xyz_freqs, dir_freqs, depth, width, skip_layer, view_width,
      num_view_layers, feature_layer: the NeRFLayout of both MLPs
      (config.model; the last two are optional there and default to
      AD-NeRF's layout).
    audio_code_dim: audio code width (config.model.audio_code_dim).
    share_coarse_fine: one MLP for both passes instead of two.
    dtype: MLP compute dtype, 'float32' or 'bfloat16'.
    num_coarse: stratified samples per ray (config.render.num_coarse).
    num_fine: importance samples per ray (config.render.num_fine); 0 skips
      the fine pass.
    near, far: default ray bounds (depths), used when `__call__` gets none.
    sigma_noise_std: raw density noise while training (off by default).
    background_at_far: AD-NeRF background rule, see `render`.
    torso_warp: warp samples with `TorsoWarp` before querying the field
      (then `__call__` needs the frames' poses).
    reference_c2w: the warp's reference pose, 16 floats (the mean training
      pose, `scene.SceneInfo.reference_c2w`).
    warp_freqs, warp_width, warp_max_offset: TorsoWarp settings.
    mouth_condition: append the frame's mouth opening (measured, or
      predicted from the audio by `MouthReadout`; see
      `ssp_nerf_jax.models.mouth_readout`) to the audio code, encoded with
      `mouth_freqs` frequencies.
    mouth_quantile_knots: points of the read-out's map onto the measured
      openings' distribution (`MouthReadout`); 0: none.
    mouth_region_radius: > 0 gives each point the encoded opening times
      its `MouthRegion` weight instead of the whole frame the same (see
      `ssp_nerf_jax.models.mouth_region`); the value is the Gaussian's radius in
      mouth widths, used when the region is fitted (the model reads the
      fitted radius from its parameters).
    audio_in_mouth_region: with the region, the audio code too is weighted
      by it (ER-NeRF lets the speech act through a region attention): the
      speech can move the mouth only, not the rest of the frame.
    warp_fine_gradients: also differentiate the warp through the fine pass.
      Off by default: the warp is learned through the coarse pass (its
      photometric and parsing losses) and the fine pass queries the same
      warped points without a gradient to them, which spares the fine
      MLP's input gradient and the warp's backward pass on 2/3 of the
      points (about half of the warp's cost in a training step).
  """
  audio_code_dim: int = 64
  share_coarse_fine: bool = False
  dtype: str = 'float32'
  num_coarse: int = 64
  num_fine: int = 128
  near: float | None = None
  far: float | None = None
  sigma_noise_std: float = 0.0
  background_at_far: bool = True
  torso_warp: bool = False
  reference_c2w: tuple[float, ...] | None = None
  warp_freqs: int = 6
  warp_width: int = 64
  warp_max_offset: float = 0.02
  warp_fine_gradients: bool = False
  mouth_condition: bool = False
  mouth_freqs: int = 4
  mouth_quantile_knots: int = 0
  mouth_region_radius: float = 0.0
  audio_in_mouth_region: bool = False

  @classmethod
  def from_config(cls, config, num_classes: int, near=None, far=None,
                  reference_c2w=None, **overrides):
    """Builds the model from config.model and config.render.

    Args:
      config: the ml_collections config (uses its `model` and `render`).
      num_classes: number of parsing classes of the dataset.
      near: default near bound; None uses config.render.near if set
        (`configured_bound`).
      far: default far bound; likewise config.render.far.
      reference_c2w: [4, 4] reference pose of the torso warp (needed when
        config.model.torso_warp is on).
      **overrides: any other field.

    Returns:
      A `PortraitNeRF`.
    """
    m, r = config.model, config.render
    if near is None:
      near = configured_bound(r.near)
    if far is None:
      far = configured_bound(r.far)
    kwargs = dict(
        num_classes=int(num_classes),
        **{name: m[name] for name in nerf.LAYOUT_SETTINGS if name in m},
        audio_code_dim=m.audio_code_dim,
        share_coarse_fine=bool(m.share_coarse_fine),
        dtype=str(m.dtype),
        num_coarse=r.num_coarse,
        num_fine=r.num_fine,
        near=None if near is None else float(near),
        far=None if far is None else float(far),
        mouth_condition=bool(m.mouth_condition),
        mouth_freqs=int(m.mouth_freqs),
        mouth_quantile_knots=int(m.get('mouth_quantile_knots', 0)),
        mouth_region_radius=float(m.get('mouth_region_radius', 0.0)),
        audio_in_mouth_region=bool(m.get('audio_in_mouth_region', False)))
    if m.get('torso_warp', False):
      if reference_c2w is None:
        raise ValueError('config.model.torso_warp needs a reference pose')
      kwargs.update(
          torso_warp=True,
          reference_c2w=tuple(float(v) for v in
                              jnp.asarray(reference_c2w).reshape(-1)),
          warp_freqs=int(m.warp_freqs), warp_width=int(m.warp_width),
          warp_max_offset=float(m.warp_max_offset),
          warp_fine_gradients=bool(m.get('warp_fine_gradients', False)))
    kwargs.update(overrides)
    return cls(**kwargs)

  def setup(self):
    self.audio_net = audio_lib.AudioNet(code_dim=self.audio_code_dim)
    self.audio_att = audio_lib.AudioAttNet()
    mlp = functools.partial(nerf.NeRFMLP, dtype=self.dtype,
                            **nerf.layout_of(self))
    if self.share_coarse_fine:
      self.nerf = mlp()
      self.coarse = self.fine = self.nerf
    else:
      self.coarse = mlp()
      self.fine = mlp()
    if self.torso_warp:
      self.warp = warp_lib.TorsoWarp(
          reference_c2w=self.reference_c2w, num_freqs=self.warp_freqs,
          width=self.warp_width, max_offset=self.warp_max_offset)
    if self.mouth_condition:
      self.mouth_readout = mouth_lib.MouthReadout(
          knots=self.mouth_quantile_knots)
    if self.mouth_local:
      self.mouth_region = mouth_lib.MouthRegion()

  @property
  def mouth_local(self) -> bool:
    """Whether the opening acts only around the mouth (`MouthRegion`)."""
    return self.mouth_condition and self.mouth_region_radius > 0

  def audio_code(self, audio, smooth_audio, mouth=None):
    """Audio code of each frame.

    Args:
      audio: [F, N, T, C] feature windows of the N (8) frames around each
        frame; the frame itself is at index N // 2 (AD-NeRF's window
        [i - 4, i + 4); AD-NeRF fills windows beyond the video with zeros).
      smooth_audio: bool scalar (may be traced): use the AudioAttNet-smoothed
        code instead of the centre frame's code.  Both are computed and
        selected with `where`, so switching never recompiles.
      mouth: [F] measured mouth openings (NaN: not measured) or None; only
        read with mouth_condition, where frames without one use the
        opening predicted from their audio (`mouth_opening`).

    Returns:
      [F, A] codes (A = audio_code_dim, plus 1 + 2 mouth_freqs with
      mouth_condition but not `mouth_local`: the local opening is added
      per point by `field_code`).
    """
    codes = self.audio_net(audio)  # [F, N, A]
    centre = codes[:, audio.shape[1] // 2]
    smoothed = self.audio_att(codes)
    code = jnp.where(jnp.asarray(smooth_audio, bool), smoothed, centre)
    if not self.mouth_condition or self.mouth_local:
      return code
    return jnp.concatenate([code, self.encoded_opening(audio, mouth)],
                           axis=-1)

  def encoded_opening(self, audio, mouth=None):
    """[F, 1 + 2 mouth_freqs] the frames' encoded mouth openings."""
    return mouth_lib.encode_opening(self.mouth_opening(audio, mouth),
                                    self.mouth_freqs)

  def field_code(self, code, opening, points):
    """What the MLPs are conditioned on at `points`.

    Args:
      code: [F, A] `audio_code`.
      opening: [F, M] `encoded_opening` (read only when `mouth_local`).
      points: [F, R, S, 3] the points the field is queried at.
    Returns:
      `code`, or with `mouth_local` the pair [code, the opening weighted
      by each point's `MouthRegion` weight, [F, R, S, M]], which the MLP
      reads as their concatenation (with `audio_in_mouth_region` the code
      weighted too, [F, R, S, A]).
    """
    if not self.mouth_local:
      return code
    weight = self.mouth_region(points)[..., None]
    if self.audio_in_mouth_region:
      code = weight * code[:, None, None, :]
    return [code, weight * opening[:, None, None, :]]

  def mouth_opening(self, audio, mouth=None):
    """[F] the frames' mouth openings: `mouth` where given and finite,
    else predicted from the audio windows [F, N, T, C] (mouth_condition
    only)."""
    predicted = self.mouth_readout(audio)
    if mouth is None:
      return predicted
    mouth = jnp.asarray(mouth, jnp.float32)
    return jnp.where(jnp.isfinite(mouth), mouth, predicted)

  def _points(self, rays, z, c2w):
    """Samples at depths z [F, R, S], warped with torso_warp.

    Returns:
      dict: 'points' [F, R, S, 3] where the field is queried, and with
      torso_warp 'blend' [F, R, S] and 'offset' [F, R, S, 3] (`TorsoWarp`).
    """
    points = (rays.origins[..., None, :] +
              rays.directions[..., None, :] * z[..., None])
    if not self.torso_warp:
      return {'points': points}
    warped, blend, offset = self.warp(points, c2w)
    return {'points': warped, 'blend': blend, 'offset': offset}

  def _render_level(self, mlp, rays, z, samples, codes, key):
    """Queries `mlp` at `samples` (from `_points`, depths z) and renders;
    codes: (`audio_code`, `encoded_opening` or None)."""
    raw = mlp(samples['points'], rays.viewdirs,
              self.field_code(*codes, samples['points']))
    out = volume_rendering.volume_render(
        raw['rgb'],
        raw['raw_sigma'],
        z,
        rays.directions,
        raw['logits'],
        background_at_far=self.background_at_far,
        sigma_noise_std=self.sigma_noise_std,
        key=key)
    out['z'] = z
    if self.torso_warp:
      # Per ray, weighted by where the ray's colour comes from (weights held
      # fixed: these feed the warp's regularisers, not the geometry).
      weights = jax.lax.stop_gradient(out['weights'])
      weights = weights / jnp.maximum(jnp.sum(weights, -1, keepdims=True),
                                      1e-6)
      out['blend'] = jnp.sum(weights * samples['blend'], axis=-1)
      out['offset_sq'] = jnp.sum(
          weights * jnp.sum(samples['offset']**2, axis=-1), axis=-1)
    return out

  def __call__(self,
               rays: rays_lib.Rays,
               audio,
               smooth_audio,
               key=None,
               near=None,
               far=None,
               c2w=None,
               mouth=None):
    """Renders R rays in each of F frames, coarse then fine.

    Args:
      rays: `Rays` with leading shape [F, R] (head space).
      audio: [F, N, T, C] audio feature windows (see `audio_code`).
      smooth_audio: bool scalar, may be traced (see `audio_code`).
      key: PRNG key for stratified jitter, importance-sampling u and density
        noise; None renders deterministically (eval).
      near: near depth, scalar or [F, R] or [F, 1]; None uses `self.near`.
      far: far depth, likewise.
      c2w: [F, 4, 4] the frames' camera-to-head poses (needed with
        torso_warp).
      mouth: [F] measured mouth openings or None (see `audio_code`).

    Returns:
      {'coarse': level, 'fine': level} ('fine' absent if num_fine == 0),
      each level a dict of float32 arrays:
        rgb: [F, R, 3] colour before compositing over the background plate
          (composite with `volume_rendering.composite(rgb, acc, bg)`).
        acc: [F, R] accumulated opacity.
        depth: [F, R] expected depth.
        semantics: [F, R, K] class distribution (sums to one; class 0 gets
          the background mass 1 - acc).
        weights: [F, R, S] sample weights.
        z: [F, R, S] sample depths (S = num_coarse, or num_coarse + num_fine
          for the fine level).
        blend, offset_sq: [F, R] (torso_warp only) the warp's blend b and
          squared residual |r|^2 averaged along each ray with the
          normalised (and gradient-stopped) weights.
    """
    near, far = self._ray_bounds(rays, near, far)
    if self.torso_warp and c2w is None:
      raise ValueError('PortraitNeRF with torso_warp needs the poses c2w.')
    keys = [None] * 4 if key is None else list(jax.random.split(key, 4))

    codes = (self.audio_code(audio, smooth_audio, mouth),
             self.encoded_opening(audio, mouth) if self.mouth_local else None)
    z_coarse = volume_rendering.stratified_samples(keys[0], near, far, self.num_coarse)
    coarse_samples = self._points(rays, z_coarse, c2w)
    outputs = {
        'coarse': self._render_level(self.coarse, rays, z_coarse,
                                     coarse_samples, codes, keys[1])
    }
    if self.num_fine > 0:
      z_fine, fine_samples = self._fine_samples(
          rays, z_coarse, coarse_samples, outputs['coarse']['weights'], c2w,
          keys[2])
      outputs['fine'] = self._render_level(self.fine, rays, z_fine,
                                           fine_samples, codes, keys[3])
    return outputs

  def density(self, points, audio, smooth_audio, c2w=None, mouth=None,
              coarse_only=False):
    """Density at head-space points as the renderer would see them: the
    larger of the coarse and fine fields' (both are rendered; either may
    put matter where the other has none), after the torso warp.

    Args:
      points: [F, N, 3] head-space points of frame f.
      audio, smooth_audio, mouth: see `audio_code`.
      c2w: [F, 4, 4] poses (needed with torso_warp).
      coarse_only: the coarse field's density alone (what places a
        training ray's samples: the fine samples follow the coarse
        weights).

    Returns:
      [F, N] float32 density sigma >= 0.
    """
    code = self.audio_code(audio, smooth_audio, mouth)
    points = points[:, :, None]  # the field's [F, R, S, 3] with S = 1
    if self.torso_warp:
      points, _, _ = self.warp(points, c2w)
    if self.mouth_local:
      code = self.field_code(code, self.encoded_opening(audio, mouth), points)
    viewdirs = jnp.zeros(points.shape[:2] + (3,), points.dtype)
    mlps = ([self.coarse] if self.share_coarse_fine or coarse_only else
            [self.coarse, self.fine])
    sigma = functools.reduce(jnp.maximum, [
        mlp(points, viewdirs, code)['raw_sigma'][..., 0] for mlp in mlps])
    return jax.nn.relu(sigma.astype(jnp.float32))

  def _ray_bounds(self, rays, near, far):
    """near, far: the arguments or the fields, [F, R] float32."""
    near = self.near if near is None else near
    far = self.far if far is None else far
    if near is None or far is None:
      raise ValueError('PortraitNeRF needs near/far, as fields or arguments.')
    ray_shape = rays.origins.shape[:-1]
    return (jnp.broadcast_to(jnp.asarray(near, jnp.float32), ray_shape),
            jnp.broadcast_to(jnp.asarray(far, jnp.float32), ray_shape))

  def _fine_samples(self, rays, z_coarse, coarse_samples, weights, c2w, key):
    """The fine pass's depths and samples (`_points`): the coarse ones and
    `num_fine` importance samples of `weights`, in depth order."""
    z_new = volume_rendering.hierarchical_samples(key, z_coarse, weights, self.num_fine)
    # The coarse samples' warp is reused, not recomputed.
    order = volume_rendering.merge_order(z_coarse, z_new)
    in_depth_order = lambda coarse, new: jnp.take_along_axis(
        jnp.concatenate([coarse, new], axis=2),
        order.reshape(order.shape + (1,) * (coarse.ndim - 3)), axis=2)
    fine_samples = jax.tree.map(in_depth_order, coarse_samples,
                                self._points(rays, z_new, c2w))
    if self.torso_warp and not self.warp_fine_gradients:
      fine_samples = jax.lax.stop_gradient(fine_samples)
    return in_depth_order(z_coarse, z_new), fine_samples
