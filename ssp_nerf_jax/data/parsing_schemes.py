"""The two colour codes of face-parsing maps on disk, and class ids.

AD-NeRF / RAD-NeRF draw 4 classes, SSP-NeRF 11 (RGB as on disk: their cv2 code
wrote BGR arrays)."""
import collections
import dataclasses
from typing import Optional

import numpy as np

from ssp_nerf_jax.synthetic import scene as ssp_scene


@dataclasses.dataclass(frozen=True)
class Scheme:
  """A parsing colour code: class k is drawn in colours[k] (RGB on disk)."""
  name: str
  description: str
  class_names: tuple[str, ...]
  colors: np.ndarray  # uint8 [K, 3]
  head_classes: tuple[int, ...]  # the face rectangle bounds these


SCHEMES = {
    'adnerf': Scheme(
        'adnerf', 'AD-NeRF/RAD-NeRF 4-class',
        ('background', 'head', 'neck', 'torso'),
        np.array([[255, 255, 255], [0, 0, 255], [0, 255, 0], [255, 0, 0]],
                 np.uint8), (1,)),
    'ssp': Scheme(
        'ssp', 'SSP-NeRF 11-class', tuple(ssp_scene.CLASS_NAMES),
        np.asarray(ssp_scene.CLASS_COLORS, np.uint8),
        tuple(ssp_scene.HEAD_CLASSES)),
}


def scheme_for_classes(num_classes: int) -> Optional[Scheme]:
  """The scheme with `num_classes` classes, or None."""
  for scheme in SCHEMES.values():
    if len(scheme.class_names) == num_classes:
      return scheme
  return None


def pack(rgb: np.ndarray) -> np.ndarray:
  """uint8 [..., 3] -> int32 [...] 0xRRGGBB."""
  rgb = rgb.astype(np.int32)
  return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


_ALL_COLORS = np.unique(np.concatenate(
    [pack(s.colors) for s in SCHEMES.values()]))


def colour_counts(rgb: np.ndarray) -> collections.Counter:
  """Pixels per packed colour of a parsing map (fast path for known ones)."""
  packed = pack(rgb).ravel()
  index = np.clip(np.searchsorted(_ALL_COLORS, packed), 0,
                  len(_ALL_COLORS) - 1)
  known = _ALL_COLORS[index] == packed
  counts = collections.Counter(dict(zip(
      _ALL_COLORS.tolist(), np.bincount(index[known],
                                        minlength=len(_ALL_COLORS)).tolist())))
  if not known.all():
    other, other_counts = np.unique(packed[~known], return_counts=True)
    counts.update(dict(zip(other.tolist(), other_counts.tolist())))
  return +counts  # drops zero counts


def detect_scheme(total: collections.Counter) -> Scheme:
  """The scheme whose own colours cover the most pixels (ties: 4-class).

  White and AD-NeRF's head blue (SSP-NeRF's ears) are in both schemes."""
  def own_pixels(scheme):
    others = set().union(*(pack(s.colors).tolist() for s in SCHEMES.values()
                           if s is not scheme))
    return sum(total[c] for c in pack(scheme.colors).tolist()
               if c not in others)
  return max(SCHEMES.values(), key=own_pixels)


def parsing_ids(rgb: np.ndarray, scheme: Scheme) -> np.ndarray:
  """Class ids uint8 [H, W]; unknown colours snap to the nearest class's."""
  packed = pack(rgb)
  colours = pack(scheme.colors)
  order = np.argsort(colours)
  index = np.clip(np.searchsorted(colours[order], packed), 0,
                  len(colours) - 1)
  ids = order[index]
  off = colours[ids] != packed
  if off.any():
    diff = (rgb[off][:, None, :].astype(np.int32) -
            scheme.colors[None].astype(np.int32))
    ids[off] = np.argmin(np.sum(diff * diff, axis=-1), axis=-1)
  return ids.astype(np.uint8)


def face_rect_from_ids(ids: np.ndarray, scheme: Scheme) -> np.ndarray:
  """(x, y, w, h) box of the head classes; the whole image if none."""
  head = np.isin(ids, scheme.head_classes)
  rows, cols = np.flatnonzero(head.any(axis=1)), np.flatnonzero(
      head.any(axis=0))
  if not rows.size:
    return np.array([0, 0, ids.shape[1], ids.shape[0]], np.float64)
  return np.array([cols[0], rows[0], cols[-1] - cols[0] + 1,
                   rows[-1] - rows[0] + 1], np.float64)


def palette(num_classes: int) -> np.ndarray:
  """uint8 [K, 3] colours for class ids: a scheme's own, else random."""
  scheme = scheme_for_classes(num_classes)
  if scheme is not None:
    return scheme.colors.copy()
  rng = np.random.default_rng(0)
  colors = rng.integers(0, 256, (num_classes, 3), dtype=np.uint8)
  colors[0] = 255  # background white, as in the parsing maps on disk
  return colors
