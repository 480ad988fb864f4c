"""Pixel samplers: which pixels of a frame become training rays.

'uniform', 'face_rect' (AD-NeRF), 'semantic' (SSP-NeRF) or 'error_map'; all
draw with replacement in the jitted step, with importance weights
1 / (H W p(pixel)): weight x error averages to the uniform-pixel mean error."""
import flax
import jax
from jax import lax
import jax.numpy as jnp

from ssp_nerf_jax.training import error_map

STRATEGIES = ('uniform', 'face_rect', 'semantic', 'error_map')


def uniform_in_box(key, num, row0, col0, height, width):
  """int32 [num, 2] uniform in [row0, row0 + height) x [col0, col0 + width)."""
  u = jax.random.uniform(key, (num, 2))
  size = jnp.stack([height, width]).astype(jnp.float32)
  offset = jnp.floor(u * size).astype(jnp.int32)
  offset = jnp.minimum(offset, jnp.stack([height, width]).astype(jnp.int32) - 1)
  return offset + jnp.stack([row0, col0]).astype(jnp.int32)


def sample_uniform(key, num_rays, height, width):
  """int32 [num_rays, 2] pixels uniform over the image."""
  return uniform_in_box(key, num_rays, 0, 0, height, width)


def sample_face_rect(key, num_rays, height, width, face_rect, fraction):
  """(int32 [R, 2] pixels, float32 [R] weights): round(fraction R) uniform in
  face_rect (x, y, w, h) clipped to the image, then the rest anywhere."""
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
  """float32 [K] ray shares (0 for absent classes), summing to one:

  q_k = uniform_mix n_k / N + (1 - uniform_mix) s_k, s_k ~ n_k^size_exponent
  L_k^power, each present class >= `floor`; L_k < 0 (unmeasured) counts as
  the largest.  background_area: class 0 keeps its area share n_0 / N."""
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
  """(int32 [R, 2] pixels, float32 [R] weights) ~ pixel_weights [H * W]; one
  uniform per stratum, so shares match at every step.  Weight 0: never drawn."""
  prob = pixel_weights / jnp.sum(pixel_weights)
  cdf = jnp.cumsum(prob)
  u = (jnp.arange(num_rays) + jax.random.uniform(key, (num_rays,))) / num_rays
  u = jnp.clip(u * cdf[-1], 1e-7, cdf[-1])
  index = jnp.minimum(jnp.searchsorted(cdf, u, side='left'), prob.size - 1)
  pixels = jnp.stack([index // width, index % width], axis=-1)
  weights = 1.0 / (prob.size * prob[index])
  return pixels.astype(jnp.int32), weights.astype(jnp.float32)


def class_box(parsing, classes, scale):
  """float32 [H, W] 0/1 box around `classes`, grown `scale` times about its
  centre (the chin and cheeks move with the jaw, lids beyond the eyes); all 0
  where none of them is present."""
  mask = jnp.isin(parsing, jnp.asarray(classes))
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


def with_box_shares(pixel_weights, boxes, shares):
  """[H * W] weights: shares[i] uniform in boxes[i] ([H * W] 0/1), the rest
  by `pixel_weights`; an empty box's share goes back to `pixel_weights`."""
  in_boxes, boxes_share = 0.0, 0.0
  for box, share in zip(boxes, shares):
    area = jnp.sum(box)
    share = jnp.where(area > 0, share, 0.0)
    in_boxes = in_boxes + share * box / jnp.maximum(area, 1.0)
    boxes_share = boxes_share + share
  return (1.0 - boxes_share) * pixel_weights + in_boxes


def region_boxes(sampling_config, mouth_classes, eye_classes):
  """[(classes, share, box scale)] of the boxes that get their own rays."""
  boxes = []
  if mouth_classes:
    boxes.append((mouth_classes, sampling_config.mouth_share,
                  sampling_config.mouth_box_scale))
  if eye_classes:
    boxes.append((eye_classes, sampling_config.eye_share,
                  sampling_config.eye_box_scale))
  return [box for box in boxes if box[1] > 0]


def sample_semantic(key, num_rays, parsing, class_loss, use_loss,
                    sampling_config, mouth_classes=(), eye_classes=()):
  """(pixels [R, 2], weights [R], shares [K]) of one frame by `class_shares`;
  use_loss False: area shares (warm-up); mouth_classes / eye_classes ():
  no mouth / eye share."""
  num_classes = class_loss.shape[0]
  flat = parsing.reshape(-1).astype(jnp.int32)
  counts = jnp.bincount(flat, length=num_classes).astype(jnp.float32)
  regions = region_boxes(sampling_config, mouth_classes, eye_classes)
  box_share = sum(share for _, share, _ in regions)
  # The boxes' shares come out of the loss-driven part: the uniform part is
  # raised so that it keeps its share of all rays after the mix.
  uniform_mix = sampling_config.semantic_uniform_mix / (1.0 - box_share)
  shares = class_shares(class_loss, counts, sampling_config.semantic_power,
                        sampling_config.semantic_floor,
                        sampling_config.semantic_size_exponent,
                        uniform_mix,
                        sampling_config.semantic_background_area)
  shares = jnp.where(use_loss, shares, counts / flat.size)
  pixel_weights = (shares / jnp.maximum(counts, 1.0))[flat]
  if regions:
    boxes = [class_box(parsing, classes, scale).reshape(-1)
             for classes, _, scale in regions]
    pixel_weights = with_box_shares(pixel_weights, boxes,
                                    [share for _, share, _ in regions])
  pixels, weights = sample_from_pixel_weights(key, num_rays, pixel_weights,
                                              parsing.shape[1])
  return pixels, weights, shares


def sample_pixels(key, sampling_config, num_rays, height, width, frame,
                  class_loss=None, use_loss=True, frame_errors=None,
                  mouth_classes=(), eye_classes=()):
  """(int32 [R, 2] pixels, float32 [R] weights) by config.sampling.strategy;
  frame: {'face_rect' [4], 'parsing' [H, W]}, frame_errors [n, n]."""
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
                                         mouth_classes, eye_classes)
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
  """Running (EMA) photometric loss [K] of each class over every device's
  rays; -1 until a class is seen."""
  class_loss_ema: jax.Array

  @classmethod
  def create(cls, num_classes: int) -> 'SemanticStats':
    return cls(class_loss_ema=-jnp.ones((num_classes,), jnp.float32))

  def update(self, sq_err, class_id, decay, axis_name):
    """(stats, step class losses [K], rays per class [K]) from sq_err, class_id
    [...]; classes without rays keep their EMA, new ones start at their loss."""
    num_classes = self.class_loss_ema.shape[0]
    err_sum, counts = lax.psum(class_sums(sq_err, class_id, num_classes),
                               axis_name)
    class_loss = err_sum / jnp.maximum(counts, 1.0)
    ema = self.class_loss_ema
    updated = jnp.where(ema < 0, class_loss,
                        decay * ema + (1.0 - decay) * class_loss)
    return (SemanticStats(jnp.where(counts > 0, updated, ema)), class_loss,
            counts)
