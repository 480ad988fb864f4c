"""The audio-conditioned NeRF MLP (AD-NeRF's FaceNeRF) with a parsing head.

Layer layout for depth D, width W, skip layer s (defaults 8, 256, 4):

  trunk_0:      [PE(x), code]           -> W, ReLU
  trunk_i:      h                       -> W, ReLU
  trunk_{s+1}:  [PE(x), code, h]        -> W, ReLU   (AD-NeRF skips=[4])
  sigma:        h -> 1                  (raw density; ReLU in rendering)
  semantic:     h -> K                  (parsing logits; SSP-NeRF)
  view_0:       [h, PE(d)]              -> view_width, ReLU
  view_1..:     view_width -> view_width, ReLU   (D // 4 of them, AD-NeRF)
  rgb:          view_width -> 3, sigmoid

Every layer's kernel has the shape of the plain concatenation Linear layer
(rows in the order listed), so weights map one-to-one onto AD-NeRF's.  Two
inputs are constant along some axes: the audio code is the same for all
points of a frame, and PE(d) for all samples of a ray.  `MultiInputDense`
exploits this: W cat(a, b) = W_a a + W_b b, with each term computed at its
own (broadcast) shape, so W_code code costs one product per frame instead of
one per sample.

AD-NeRF's FaceNeRF constructs a `feature_linear` but bypasses it
(`feature = h`); `feature_layer=False` (the default) matches that, True adds
the W -> W feature layer of the original NeRF.
"""
import dataclasses
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssp_nerf_jax.models import encoding

# PyTorch's default Linear/Conv kernel initialisation, U(+-1/sqrt(fan_in)),
# so that training starts like AD-NeRF's.  Biases start at zero (torch draws
# them from the same range): one random draw fewer per layer, which halves
# the XLA compile time of `init` on CPU, where threefry dominates it.
torch_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in',
                                                     'uniform')


class MultiInputDense(nn.Module):
  """A Dense layer on the concatenation of inputs, without concatenating.

  `MultiInputDense(n)([a, b])` equals `nn.Dense(n)(concatenate([a, b], -1))`
  with the same {'kernel', 'bias'} parameters, but each input only needs to
  broadcast against the others: an input of shape [F, 1, 1, Da] is
  multiplied once per frame and then broadcast.

  Attributes:
    features: output width.
    dtype: computation dtype; parameters are kept in float32.
  """
  features: int
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, inputs: Sequence[jax.Array]) -> jax.Array:
    """Applies W cat(inputs) + b term by term.

    Args:
      inputs: list of [..., D_k] arrays whose leading dims broadcast.

    Returns:
      [broadcast(...), features] in `dtype`.
    """
    dims = [x.shape[-1] for x in inputs]
    fan_in = sum(dims)
    kernel = self.param('kernel', torch_kernel_init, (fan_in, self.features),
                        jnp.float32)
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,),
                      jnp.float32)
    dtype = jnp.dtype(self.dtype)
    kernel = kernel.astype(dtype)
    # Smallest terms first so the bias is added at the smallest shape.
    order = sorted(range(len(inputs)), key=lambda k: inputs[k].size)
    starts = [sum(dims[:k]) for k in range(len(dims))]
    out = bias.astype(dtype)
    for k in order:
      w = kernel[starts[k]:starts[k] + dims[k]]
      out = out + jnp.dot(inputs[k].astype(dtype), w)
    return out


class NeRFLayout(nn.Module):
  """The layer layout of a NeRFMLP, declared once: NeRFMLP's fields, and
  those of a module that builds its MLPs from its own fields (PortraitNeRF,
  with `layout_of`).

  Attributes:
    num_classes: K, number of parsing classes.
    xyz_freqs: octaves of PE(x).
    dir_freqs: octaves of PE(d).
    depth: trunk layers.
    width: trunk width.
    skip_layer: [PE(x), code] re-enters after this (0-based) trunk layer,
      i.e. as input of layer skip_layer + 1; no skip if that layer does not
      exist (or skip_layer < 0).
    view_width: width of the view-dependent branch.
    num_view_layers: extra view_width -> view_width layers after view_0;
      None means depth // 4 (AD-NeRF).
    feature_layer: insert NeRF's W -> W feature layer before the view branch
      (AD-NeRF bypasses it).
  """
  num_classes: int
  xyz_freqs: int = 10
  dir_freqs: int = 4
  depth: int = 8
  width: int = 256
  skip_layer: int = 4
  view_width: int = 128
  num_view_layers: int | None = None
  feature_layer: bool = False


# NeRFLayout's settings, named as in config.model: all its fields but
# num_classes (the dataset's) and Flax's parent and name.
LAYOUT_SETTINGS = tuple(f.name for f in dataclasses.fields(NeRFLayout)
                        if f.name not in ('num_classes', 'parent', 'name'))


def layout_of(module: NeRFLayout) -> dict:
  """{field: value} of `module`'s NeRFLayout fields, to build a NeRFMLP."""
  return {name: getattr(module, name)
          for name in ('num_classes',) + LAYOUT_SETTINGS}


class NeRFMLP(NeRFLayout):
  """Audio-conditioned radiance + parsing field.

  Attributes:
    (NeRFLayout's): num_classes, xyz_freqs, dir_freqs, depth, width,
      skip_layer, view_width, num_view_layers, feature_layer.
    dtype: computation dtype ('float32' or 'bfloat16'); parameters float32,
      outputs float32.
  """
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, points, viewdirs, code):
    """Evaluates the field at S points along each of R rays of F frames.

    Any number of leading dims [...] is allowed (below: [F, R]).

    Args:
      points: [F, R, S, 3] sample positions (head space).
      viewdirs: [F, R, 3] unit view directions, one per ray.
      code: [F, A] audio code, one per frame, or a list of parts read as
        their concatenation, each [F, A_k] (per frame) or [F, R, S, A_k]
        (per point).

    Returns:
      Dict of float32 arrays:
        rgb: [F, R, S, 3] colour in [0, 1].
        raw_sigma: [F, R, S] density before the ReLU.
        logits: [F, R, S, K] parsing logits.
    """
    dtype = jnp.dtype(self.dtype)
    dense = lambda n, name: MultiInputDense(n, dtype=self.dtype, name=name)
    pe_x = encoding.positional_encoding(points, self.xyz_freqs).astype(dtype)
    # Per-ray and per-frame inputs, shaped to broadcast over samples / rays.
    pe_d = encoding.positional_encoding(viewdirs, self.dir_freqs)
    pe_d = pe_d[..., None, :].astype(dtype)  # [F, R, 1, Dd]
    codes = [
        part.reshape(part.shape[:-1] + (1,) * (points.ndim - part.ndim) +
                     part.shape[-1:]).astype(dtype)  # [F, 1, 1, A]
        for part in (code if isinstance(code, (list, tuple)) else [code])]

    h = None
    for i in range(self.depth):
      if i == 0:
        inputs = [pe_x, *codes]
      elif i == self.skip_layer + 1 and self.skip_layer >= 0:
        inputs = [pe_x, *codes, h]  # AD-NeRF: cat([input_pts, h])
      else:
        inputs = [h]
      h = nn.relu(dense(self.width, f'trunk_{i}')(inputs))

    raw_sigma = dense(1, 'sigma')([h])[..., 0]
    logits = dense(self.num_classes, 'semantic')([h])
    feature = dense(self.width, 'feature')([h]) if self.feature_layer else h
    v = nn.relu(dense(self.view_width, 'view_0')([feature, pe_d]))
    num_view_layers = (self.depth // 4 if self.num_view_layers is None else
                       self.num_view_layers)
    for i in range(num_view_layers):
      v = nn.relu(dense(self.view_width, f'view_{i + 1}')([v]))
    rgb_logits = dense(3, 'rgb')([v])
    # Nonlinearities of the outputs in float32 (cheap, and exact at 0/1).
    return {
        'rgb': jax.nn.sigmoid(rgb_logits.astype(jnp.float32)),
        'raw_sigma': raw_sigma.astype(jnp.float32),
        'logits': logits.astype(jnp.float32),
    }
