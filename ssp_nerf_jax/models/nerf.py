"""Audio-conditioned NeRF MLP (AD-NeRF's FaceNeRF) with a parsing head."""
import dataclasses
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssp_nerf_jax.models import encoding

# PyTorch's kernel init U(+-1/sqrt(fan_in)), as AD-NeRF.  Biases start at zero
# (not torch's): one random draw fewer per layer compiles `init` faster.
torch_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in',
                                                     'uniform')


class MultiInputDense(nn.Module):
  """Dense on the concatenation of inputs, each term at its own broadcast shape
  (a per-frame code [F, 1, 1, A] is multiplied once per frame)."""
  features: int
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, inputs: Sequence[jax.Array]) -> jax.Array:
    """inputs [..., D_k] that broadcast -> [..., features] in `dtype`."""
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
  """NeRFMLP's layer layout, shared with modules building MLPs (`layout_of`).

  skip_layer: [PE(x), code] re-enters after it (< 0: never); num_view_layers
  None: depth // 4; feature_layer: NeRF's W -> W layer (AD-NeRF skips it)."""
  num_classes: int
  xyz_freqs: int = 10
  dir_freqs: int = 4
  depth: int = 8
  width: int = 256
  skip_layer: int = 4
  view_width: int = 128
  num_view_layers: int | None = None
  feature_layer: bool = False


LAYOUT_SETTINGS = tuple(f.name for f in dataclasses.fields(NeRFLayout)
                        if f.name not in ('num_classes', 'parent', 'name'))


def layout_of(module: NeRFLayout) -> dict:
  """{field: value} of `module`'s NeRFLayout fields, to build a NeRFMLP."""
  return {name: getattr(module, name)
          for name in ('num_classes',) + LAYOUT_SETTINGS}


class NeRFMLP(NeRFLayout):
  """Audio-conditioned radiance + parsing field; float32 params and outputs."""
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, points, viewdirs, code):
    """points [F, R, S, 3], viewdirs [F, R, 3], code [F, A] (or parts) ->
    rgb [F, R, S, 3], raw_sigma [F, R, S], logits [F, R, S, K]."""
    dtype = jnp.dtype(self.dtype)
    dense = lambda n, name: MultiInputDense(n, dtype=self.dtype, name=name)
    pe_x = encoding.positional_encoding(points, self.xyz_freqs).astype(dtype)
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
        inputs = [pe_x, *codes, h]
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
    return {
        'rgb': jax.nn.sigmoid(rgb_logits.astype(jnp.float32)),
        'raw_sigma': raw_sigma.astype(jnp.float32),
        'logits': logits.astype(jnp.float32),
    }
