"""PortraitNeRF: AD-NeRF's audio-conditioned coarse/fine NeRF with
SSP-NeRF's parsing branch and torso warp, as one Flax module."""
import dataclasses
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

  Submodules: audio_net, audio_att (AudioAttNet, trained once smoothing is
  on), coarse and fine NeRFMLPs (one `nerf` with share_coarse_fine), warp
  (torso_warp), mouth_readout and mouth_region (fitted, not trained).
  Fields are plain hashable values (`module.apply` can be a static jit
  argument); `from_config` maps a config onto them.  Those beyond the
  NeRFLayout: num_coarse / num_fine samples per ray (num_fine 0 skips the
  fine pass); near, far default depths; mouth_condition appends the frame's
  mouth opening, encoded with mouth_freqs sinusoids, to the audio code;
  mouth_region_radius > 0 weights it per point by `MouthRegion`;
  audio_in_mouth_region weights the audio code too; eye_condition adds
  the frame's eye openness (eye_freqs sinusoids) weighted by `EyeRegion`,
  zero beyond eye_region_radius (NaN openness: zero); warp_fine_gradients
  also differentiates the warp through the fine pass (off: the warp learns
  through the coarse pass, sparing the fine pass's warp backward).
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
  eye_condition: bool = False
  eye_freqs: int = 2
  eye_region_radius: float = 0.7

  @classmethod
  def from_config(cls, config, num_classes: int, near=None, far=None,
                  reference_c2w=None, **overrides):
    """Every config.model setting is the field of its name; samples per
    ray and bounds (None: config.render's, `configured_bound`) come from
    config.render; reference_c2w [4, 4] is the torso warp's pose."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(config.model) - fields)
    if unknown:
      raise ValueError(
          f'config.model has settings PortraitNeRF lacks: {unknown}')
    if near is None:
      near = configured_bound(config.render.near)
    if far is None:
      far = configured_bound(config.render.far)
    kwargs = dict(config.model, num_classes=int(num_classes),
                  num_coarse=config.render.num_coarse,
                  num_fine=config.render.num_fine,
                  near=None if near is None else float(near),
                  far=None if far is None else float(far))
    if kwargs.get('torso_warp'):
      if reference_c2w is None:
        raise ValueError('config.model.torso_warp needs a reference pose')
      kwargs['reference_c2w'] = tuple(
          float(v) for v in jnp.asarray(reference_c2w).reshape(-1))
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
    if self.eye_condition:
      self.eye_region = mouth_lib.EyeRegion()

  @property
  def mouth_local(self) -> bool:
    """Whether the opening acts only around the mouth (`MouthRegion`)."""
    return self.mouth_condition and self.mouth_region_radius > 0

  def audio_code(self, audio, smooth_audio, mouth=None):
    """[F, A] audio code of each frame (+ the encoded opening with
    mouth_condition but not `mouth_local`).

    audio: [F, N, T, C] windows of the N frames around each (the frame at
    N // 2); smooth_audio: bool, may be traced (both codes are computed and
    selected with `where`, so switching never recompiles); mouth: [F]
    measured openings (NaN or None: predicted from the audio).
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

  def field_code(self, code, opening, points, eyes=None):
    """What the MLPs read at points [F, R, S, 3]: code [F, A], or with
    `mouth_local` [code, opening [F, M] times each point's region weight]
    (the code weighted too with audio_in_mouth_region); with
    eye_condition, + eyes [F, E] (`encoded_eyes`) times the eye weight."""
    parts = [code]
    if self.mouth_local:
      weight = self.mouth_region(points)[..., None]
      if self.audio_in_mouth_region:
        code = weight * code[:, None, None, :]
      parts = [code, weight * opening[:, None, None, :]]
    if self.eye_condition:
      parts.append(self.eye_region(points)[..., None] *
                   eyes[:, None, None, :])
    return parts if len(parts) > 1 else code

  def encoded_eyes(self, audio, eyes=None):
    """[F, 1 + 2 eye_freqs] the frames' encoded eye openness [F] (None or
    NaN: zeros, as if the field had no eye input); None without
    eye_condition."""
    if not self.eye_condition:
      return None
    if eyes is None:
      eyes = jnp.full(audio.shape[:1], jnp.nan)
    eyes = jnp.asarray(eyes, jnp.float32)
    known = jnp.isfinite(eyes)
    encoded = mouth_lib.encode_opening(
        self.eye_region.normalised(jnp.where(known, eyes, 0.0)),
        self.eye_freqs)
    return jnp.where(known[:, None], encoded, 0.0)

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
    """{'points' [F, R, S, 3]} at depths z [F, R, S]; with torso_warp
    warped, plus 'blend' [F, R, S] and 'offset' [F, R, S, 3]."""
    points = (rays.origins[..., None, :] +
              rays.directions[..., None, :] * z[..., None])
    if not self.torso_warp:
      return {'points': points}
    warped, blend, offset = self.warp(points, c2w)
    return {'points': warped, 'blend': blend, 'offset': offset}

  def _render_level(self, mlp, rays, z, samples, codes, key):
    """Queries `mlp` at `samples` (from `_points`, depths z) and renders;
    codes: (`audio_code`, `encoded_opening` or None, `encoded_eyes`)."""
    code, opening, eyes = codes
    raw = mlp(samples['points'], rays.viewdirs,
              self.field_code(code, opening, samples['points'], eyes))
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
      # Weights held fixed: these feed the warp's regularisers only.
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
               mouth=None,
               eyes=None):
    """Renders R rays [F, R] (head space) in each of F frames, coarse then fine.

    Args:
      rays: `Rays`; audio, smooth_audio, mouth: see `audio_code`.
      eyes: [F] eye openness (eye_condition; None or NaN: none).
      key: PRNG key (jitter, importance sampling, noise); None: deterministic.
      near, far: scalar, [F, R] or [F, 1] depths; None: the fields'.
      c2w: [F, 4, 4] camera-to-head poses (torso_warp needs them).
    Returns:
      {'coarse', 'fine'} levels ('fine' absent with num_fine 0), each with
      rgb [F, R, 3] (before compositing over the plate), acc, depth [F, R],
      semantics [F, R, K] (class 0 takes 1 - acc), weights and z [F, R, S];
      with torso_warp blend and offset_sq [F, R] along the ray.
    """
    near, far = self._ray_bounds(rays, near, far)
    if self.torso_warp and c2w is None:
      raise ValueError('PortraitNeRF with torso_warp needs the poses c2w.')
    keys = [None] * 4 if key is None else list(jax.random.split(key, 4))

    codes = (self.audio_code(audio, smooth_audio, mouth),
             self.encoded_opening(audio, mouth) if self.mouth_local else None,
             self.encoded_eyes(audio, eyes))
    z_coarse = volume_rendering.stratified_samples(keys[0], near, far,
                                                   self.num_coarse)
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
              coarse_only=False, eyes=None):
    """[F, N] density at head-space points [F, N, 3] as rendered: after
    the warp, the larger of the coarse and fine fields' (either may hold
    matter the other lacks), or the coarse alone with coarse_only (what
    places a training ray's samples)."""
    return functools.reduce(jnp.maximum, self._field_densities(
        points, audio, smooth_audio, c2w, mouth, eyes, coarse_only))

  def density_and_surface(self, points, audio, smooth_audio, c2w=None,
                          mouth=None, eyes=None):
    """[F, N, 2]: `density`, and the fine field's alone (the opacity a
    render composites: the coarse field only places the fine samples, and
    its matter spreads in front of the surface)."""
    sigmas = self._field_densities(points, audio, smooth_audio, c2w, mouth,
                                   eyes, coarse_only=False)
    return jnp.stack([functools.reduce(jnp.maximum, sigmas), sigmas[-1]], -1)

  def _field_densities(self, points, audio, smooth_audio, c2w, mouth, eyes,
                       coarse_only):
    """[[F, N]] each field's density at head-space points [F, N, 3]: the
    coarse, then the fine unless shared or coarse_only."""
    code = self.audio_code(audio, smooth_audio, mouth)
    points = points[:, :, None]  # the field's [F, R, S, 3] with S = 1
    if self.torso_warp:
      points, _, _ = self.warp(points, c2w)
    opening = self.encoded_opening(audio, mouth) if self.mouth_local else None
    code = self.field_code(code, opening, points,
                           self.encoded_eyes(audio, eyes))
    viewdirs = jnp.zeros(points.shape[:2] + (3,), points.dtype)
    mlps = ([self.coarse] if self.share_coarse_fine or coarse_only else
            [self.coarse, self.fine])
    return [jax.nn.relu(mlp(points, viewdirs, code)['raw_sigma'][..., 0]
                        .astype(jnp.float32)) for mlp in mlps]

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
    z_new = volume_rendering.hierarchical_samples(key, z_coarse, weights,
                                                  self.num_fine)
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
