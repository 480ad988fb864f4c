"""Pixel samplers: which pixels of a frame become training rays.

Each sampler maps (key, frame data) to integer pixel coordinates [R, 2] as
(row, col).  `config.sampling.strategy` picks one:
  - 'uniform':   every pixel equally likely.
  - 'face_rect': AD-NeRF's scheme: a share `face_rect_fraction` of the rays
                 uniformly inside the face rectangle, the rest uniformly over
                 the image.
  - 'semantic':  SSP-NeRF's semantic-aware dynamic ray sampling: class k of
                 the frame's parsing gets a share q_k of the rays that grows
                 with its running loss L_k (`class_shares`), drawn uniformly
                 among the frame's pixels of class k; optionally a fixed
                 share `mouth_share` of its loss-driven part moved into a
                 box around the lips and mouth interior (`mouth_box`),
                 where the speech changes the frame.
  - 'error_map': torch-ngp / RAD-NeRF's per-frame error map (`error_map`):
                 pixels drawn in proportion to their cell's running error.
All samplers draw with replacement; they are pure and run inside the jitted
train step, once per frame.  `sample_pixels` also returns each ray's
importance weight 1 / (H W p(pixel)) (1 for uniform sampling): the mean of
weight x error over the rays estimates the uniform-pixel mean error.

The semantic sampler's memory, each class's running loss over every
device's rays, is `SemanticStats`, carried in the train state.
"""
import flax
import jax
from jax import lax
import jax.numpy as jnp

from ssp_nerf_jax.training import error_map

STRATEGIES = ('uniform', 'face_rect', 'semantic', 'error_map')
# Parsing classes whose box `mouth_box` covers (11-class parsing).
MOUTH_CLASSES = ('lips', 'mouth')


def uniform_in_box(key, num, row0, col0, height, width):
  """Uniform integer pixels in the box [row0, row0+height) x [col0, col0+width).

  Box corners and sizes may be traced scalars.  Returns int32 [num, 2].
  """
  u = jax.random.uniform(key, (num, 2))
  size = jnp.stack([height, width]).astype(jnp.float32)
  offset = jnp.floor(u * size).astype(jnp.int32)
  offset = jnp.minimum(offset, jnp.stack([height, width]).astype(jnp.int32) - 1)
  return offset + jnp.stack([row0, col0]).astype(jnp.int32)


def sample_uniform(key, num_rays, height, width):
  """int32 [num_rays, 2] pixels uniform over an image of size height x width."""
  return uniform_in_box(key, num_rays, 0, 0, height, width)


def sample_face_rect(key, num_rays, height, width, face_rect, fraction):
  """AD-NeRF face-rectangle sampling.

  Args:
    key: PRNG key.
    num_rays: total rays R (static).
    height, width: image size (static).
    face_rect: int [4] as (x, y, w, h) = (col, row, width, height).
    fraction: share of rays drawn inside the rectangle (static float).
  Returns:
    (int32 [R, 2] pixels (row, col), the first round(fraction * R) in the
    rectangle (clipped to the image); float32 [R] importance weights
    1 / (H W p(pixel)), p the mixture of the two uniform draws).
  """
  num_in = int(round(fraction * num_rays))
  key_in, key_out = jax.random.split(key)
  x, y, w, h = (face_rect[i].astype(jnp.int32) for i in range(4))
  col0 = jnp.clip(x, 0, width - 1)
  row0 = jnp.clip(y, 0, height - 1)
  box_w = jnp.clip(jnp.minimum(x + w, width) - col0, 1, width)
  box_h = jnp.clip(jnp.minimum(y + h, height) - row0, 1, height)
  inside = uniform_in_box(key_in, num_in, row0, col0, box_h, box_w)
  outside = sample_uniform(key_out, num_rays - num_in, height, width)
  pixels = jnp.concatenate([inside, outside], axis=0)
  in_box = ((pixels[:, 0] >= row0) & (pixels[:, 0] < row0 + box_h) &
            (pixels[:, 1] >= col0) & (pixels[:, 1] < col0 + box_w))
  share_in = num_in / num_rays
  prob = ((1.0 - share_in) / (height * width) +
          jnp.where(in_box, share_in / (box_h * box_w), 0.0))
  return pixels, (1.0 / (height * width * prob)).astype(jnp.float32)


def class_shares(class_loss, class_counts, power, floor, size_exponent=1.0,
                 uniform_mix=0.0, background_area=False):
  """Share of a frame's rays per class, growing with the class's loss.

    q_k = uniform_mix * n_k / N + (1 - uniform_mix) * s_k,
    s_k ~ n_k^size_exponent * L_k^power  (over present classes),

  then every present class gets at least `floor`.  With size_exponent 1 and
  power 1, s is importance sampling of the photometric loss (rays per pixel
  ~ its class's error), which still gives most rays to large classes (the
  torso); size_exponent < 1 moves them to small, badly reconstructed classes
  (mouth, eyes); the uniform part keeps every pixel seen (the background
  needs rays to stay empty).

  Args:
    class_loss: float [K] running per-class loss L_k; negative means "not
      measured yet" and counts as the largest measured loss.
    class_counts: [K] pixels n_k of each class in the frame.
    power: exponent on the loss (static or traced); 0 ignores it.
    floor: minimum share of each present class (capped at 1 / #present).
    size_exponent: exponent on the class size n_k.
    uniform_mix: weight of uniform pixel sampling, in [0, 1].
    background_area: class 0 (the background) keeps its area share n_0 / N
      and the rule above shares the rest among the other classes: the
      background needs rays where the model would put floaters, not rays
      in proportion to its (small) loss.
  Returns:
    float32 [K] shares summing to one; zero for classes absent from the
    frame.
  """
  if background_area:
    area = class_counts[0] / jnp.sum(class_counts)
    others = class_shares(class_loss, class_counts.at[0].set(0), power, floor,
                          size_exponent, uniform_mix)
    # A frame of background only: all rays there.
    others = jnp.where(area < 1.0, others, 0.0)
    return (others * (1.0 - area)).at[0].set(area).astype(jnp.float32)
  present = class_counts > 0
  known = class_loss >= 0
  fill = jnp.where(jnp.any(known), jnp.max(jnp.where(known, class_loss, 0.0)),
                   1.0)
  loss = jnp.maximum(jnp.where(known, class_loss, fill), 1e-8)
  weight = jnp.where(present,
                     class_counts**size_exponent * loss**power, 0.0)
  shares = (uniform_mix * class_counts / jnp.sum(class_counts) +
            (1.0 - uniform_mix) * weight / jnp.sum(weight))
  num_present = jnp.sum(present)
  floor = jnp.minimum(floor, 1.0 / num_present)
  return jnp.where(present, floor + (1.0 - floor * num_present) * shares,
                   0.0).astype(jnp.float32)


def sample_from_pixel_weights(key, num_rays, pixel_weights, width):
  """Stratified inverse-CDF draws of pixels with probability ~ weights.

  Args:
    key: PRNG key.
    num_rays: R (static).
    pixel_weights: float [H * W] non-negative, raster order, positive sum.
    width: W (static).
  Returns:
    (int32 [R, 2] pixels (row, col), float32 [R] importance weights
    1 / (H W p(pixel))).  Pixels of weight zero are never drawn.
  """
  prob = pixel_weights / jnp.sum(pixel_weights)
  cdf = jnp.cumsum(prob)
  # One uniform per stratum [i/R, (i+1)/R): shares match the probabilities
  # closely at every step, not only on average.
  u = (jnp.arange(num_rays) + jax.random.uniform(key, (num_rays,))) / num_rays
  u = jnp.clip(u * cdf[-1], 1e-7, cdf[-1])
  index = jnp.minimum(jnp.searchsorted(cdf, u, side='left'), prob.size - 1)
  pixels = jnp.stack([index // width, index % width], axis=-1)
  weights = 1.0 / (prob.size * prob[index])
  return pixels.astype(jnp.int32), weights.astype(jnp.float32)


def mouth_box(parsing, mouth_classes, scale):
  """The box around a frame's mouth, where the speech changes the picture.

  Args:
    parsing: int [H, W] the frame's classes.
    mouth_classes: ids of the lips and mouth interior (static tuple).
    scale: the box around those pixels is grown `scale` times about its
      centre (the chin and cheeks move with the jaw).
  Returns:
    float32 [H, W]: 1 inside the box (clipped to the frame), 0 outside;
    all 0 if the frame shows no mouth class.
  """
  mask = jnp.isin(parsing, jnp.asarray(mouth_classes))
  height, width = parsing.shape

  def extent(any_along, size):
    first = jnp.argmax(any_along)
    last = size - 1 - jnp.argmax(any_along[::-1])
    centre, half = (first + last) / 2, (last - first + 1) * scale / 2
    index = jnp.arange(size) + 0.5
    return (index >= centre + 0.5 - half) & (index < centre + 0.5 + half)

  rows = extent(jnp.any(mask, axis=1), height)
  cols = extent(jnp.any(mask, axis=0), width)
  box = rows[:, None] & cols[None, :] & jnp.any(mask)
  return box.astype(jnp.float32)


def with_mouth_share(pixel_weights, box, share):
  """[H * W] pixel weights (summing to one) that draw `share` of the rays
  uniformly in `box` ([H * W], 0/1) and the rest by `pixel_weights`.
  Unchanged when the box is empty."""
  mixed = ((1.0 - share) * pixel_weights +
           share * box / jnp.maximum(jnp.sum(box), 1.0))
  return jnp.where(jnp.sum(box) > 0, mixed, pixel_weights)


def sample_semantic(key, num_rays, parsing, class_loss, use_loss,
                    sampling_config, mouth_classes=()):
  """SSP-NeRF semantic sampling of one frame.

  Args:
    key: PRNG key.
    num_rays: R (static).
    parsing: int [H, W] the frame's ground-truth classes.
    class_loss: float [K] running per-class loss (see `class_shares`).
    use_loss: bool scalar; False samples uniformly over pixels (warm-up).
    sampling_config: config.sampling (semantic_power, semantic_floor,
      semantic_size_exponent, semantic_uniform_mix, mouth_share,
      mouth_box_scale).
    mouth_classes: the lips' and mouth interior's class ids (static);
      none: no mouth share.
  Returns:
    (int32 [R, 2] pixels, float32 [R] importance weights, float32 [K] the
    class shares asked for).
  """
  num_classes = class_loss.shape[0]
  flat = parsing.reshape(-1).astype(jnp.int32)
  counts = jnp.bincount(flat, length=num_classes).astype(jnp.float32)
  mouth_share = (sampling_config.get('mouth_share', 0.0) if mouth_classes
                 else 0.0)
  # The mouth box's share comes out of the loss-driven part: the uniform
  # part is raised so that it keeps its share of all rays after the mix.
  uniform_mix = sampling_config.semantic_uniform_mix / (1.0 - mouth_share)
  shares = class_shares(class_loss, counts, sampling_config.semantic_power,
                        sampling_config.semantic_floor,
                        sampling_config.semantic_size_exponent,
                        uniform_mix,
                        sampling_config.semantic_background_area)
  shares = jnp.where(use_loss, shares, counts / flat.size)
  pixel_weights = (shares / jnp.maximum(counts, 1.0))[flat]
  if mouth_share > 0:
    box = mouth_box(parsing, mouth_classes,
                    sampling_config.mouth_box_scale).reshape(-1)
    pixel_weights = with_mouth_share(pixel_weights, box, mouth_share)
  pixels, weights = sample_from_pixel_weights(key, num_rays, pixel_weights,
                                              parsing.shape[1])
  return pixels, weights, shares


def sample_pixels(key, sampling_config, num_rays, height, width, frame,
                  class_loss=None, use_loss=True, frame_errors=None,
                  mouth_classes=()):
  """Dispatches on `sampling_config.strategy`.

  Args:
    key: PRNG key for this frame.
    sampling_config: the `config.sampling` section.
    num_rays, height, width: static sizes.
    frame: dict of this frame's arrays ('face_rect' [4], 'parsing' [H, W]).
    class_loss: float [K] running per-class loss ('semantic' only).
    use_loss: bool scalar, False during the semantic warm-up.
    frame_errors: float [n, n] the frame's error map ('error_map' only).
    mouth_classes: see `sample_semantic` ('semantic' only).
  Returns:
    (int32 [num_rays, 2] pixels (row, col), float32 [num_rays] importance
    weights 1 / (H W p(pixel)); ones for the uniform sampler).
  """
  strategy = sampling_config.strategy
  if strategy == 'uniform':
    return (sample_uniform(key, num_rays, height, width),
            jnp.ones((num_rays,), jnp.float32))
  if strategy == 'face_rect':
    return sample_face_rect(key, num_rays, height, width, frame['face_rect'],
                            sampling_config.face_rect_fraction)
  if strategy == 'semantic':
    pixels, weights, _ = sample_semantic(key, num_rays, frame['parsing'],
                                         class_loss, use_loss, sampling_config,
                                         mouth_classes)
    return pixels, weights
  if strategy == 'error_map':
    return sample_from_pixel_weights(
        key, num_rays, error_map.pixel_weights(
            frame_errors, height, width, sampling_config.error_map_uniform_mix),
        width)
  raise ValueError(f'config.sampling.strategy={strategy!r} is not one of '
                   f'{STRATEGIES}')


def class_sums(values, class_id, num_classes):
  """Per-class (sum of values, count) over rays: ([K], [K])."""
  one_hot = jax.nn.one_hot(class_id.reshape(-1), num_classes)
  return values.reshape(-1) @ one_hot, jnp.sum(one_hot, axis=0)


@flax.struct.dataclass
class SemanticStats:
  """The semantic sampler's state: the running (EMA) photometric loss of
  each parsing class over all devices' rays; -1 until a class is seen."""
  class_loss_ema: jax.Array  # float32 [K]

  @classmethod
  def create(cls, num_classes: int) -> 'SemanticStats':
    return cls(class_loss_ema=-jnp.ones((num_classes,), jnp.float32))

  def update(self, sq_err, class_id, decay, axis_name):
    """Folds one step's rays into the running class losses.

    Args:
      sq_err: float [...] per-ray squared error of this device's rays.
      class_id: int [...] their true classes.
      decay: the EMA's decay (config.sampling.semantic_ema_decay).
      axis_name: the mesh axis the rays are spread over (summed over).
    Returns:
      (updated stats, float [K] this step's class losses, float [K] rays
      per class); classes without rays keep their EMA, and a class seen for
      the first time starts at its measured loss.
    """
    num_classes = self.class_loss_ema.shape[0]
    err_sum, counts = lax.psum(class_sums(sq_err, class_id, num_classes),
                               axis_name)
    class_loss = err_sum / jnp.maximum(counts, 1.0)
    ema = self.class_loss_ema
    updated = jnp.where(ema < 0, class_loss,
                        decay * ema + (1.0 - decay) * class_loss)
    return (SemanticStats(jnp.where(counts > 0, updated, ema)), class_loss,
            counts)
