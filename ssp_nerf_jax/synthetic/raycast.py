"""Ray casting against axis-aligned quadrics, rays [3, R].  Directions have
camera z = -1 (as in AD-NeRF), so every t is a comparable camera z-depth."""
import numpy as np

_EPS = 1e-6


def pixel_grid_directions(height, width, focal, cx, cy):
  """float64 [H * W, 3] ((u - cx) / f, (cy - v) / f, -1), integer centres."""
  v, u = np.meshgrid(np.arange(height, dtype=np.float64),
                     np.arange(width, dtype=np.float64), indexing='ij')
  d = np.stack([(u - cx) / focal, -(v - cy) / focal, -np.ones_like(u)], -1)
  return d.reshape(-1, 3)


def subpixel_directions(height, width, focal, cx, cy, k):
  """k * k float64 [H * W, 3] grids like `pixel_grid_directions`, each at
  one of k x k points spread evenly over every pixel (offsets (i + 0.5) / k -
  0.5 pixels, rows then columns; for odd k the middle grid is the centres)."""
  offsets = (np.arange(k) + 0.5) / k - 0.5
  return [pixel_grid_directions(height, width, focal, cx - du, cy - dv)
          for dv in offsets for du in offsets]


def dot(a, b):
  """[R] dot products of [3, R] arrays."""
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _col(x):
  x = np.asarray(x, np.float64)
  return x.reshape(3, -1) if x.ndim == 1 else x


def _roots(oc, dd):
  """Roots of |oc + t dd|^2 = 1 (scaled unit quadric): t0 <= t1, hit mask."""
  a = np.maximum(dot(dd, dd), 1e-30)
  b = dot(oc, dd)
  disc = b * b - a * (dot(oc, oc) - 1.0)
  ok = disc > 0
  s = np.sqrt(np.where(ok, disc, 0.0))
  return (-b - s) / a, (-b + s) / a, ok


def _first_valid(o, d, t0, t1, ok, clip):
  good0 = ok & (t0 > _EPS)
  good1 = ok & (t1 > _EPS)
  if clip is not None:
    good0 &= clip(o + np.where(good0, t0, 0.0) * d)
    good1 &= clip(o + np.where(good1, t1, 0.0) * d)
  return np.where(good0, t0, np.where(good1, t1, np.inf))


def intersect_ellipsoid(o, d, center, radii, clip=None):
  """(t [R], inf if missed; unit outward normal [3, R]) on an ellipsoid; `clip`
  (points [3, R] -> bool [R] kept) cuts it, and then the far root may hit."""
  center = _col(center)
  radii = _col(np.broadcast_to(radii, (3,)) if np.ndim(radii) == 0 else radii)
  t0, t1, ok = _roots((o - center) / radii, d / radii)
  t = _first_valid(o, d, t0, t1, ok, clip)
  p = o + np.where(np.isfinite(t), t, 0.0) * d
  return t, _unit((p - center) / radii**2)


def intersect_cylinder_y(o, d, center, radii_xz, y_min, y_max):
  """(t [R], normal [3, R]) on an open cylinder along y, y_min < y < y_max."""
  center = _col(center)
  inv_r = np.array([1.0 / radii_xz[0], 0.0, 1.0 / radii_xz[1]])[:, None]
  t0, t1, ok = _roots((o - center) * inv_r, d * inv_r)
  clip = lambda p: (p[1] > y_min) & (p[1] < y_max)
  t = _first_valid(o, d, t0, t1, ok, clip)
  p = o + np.where(np.isfinite(t), t, 0.0) * d
  return t, _unit((p - center) * inv_r**2)


def hits_sphere(o, d, center, radius):
  """bool [R]: rays that hit a bounding sphere (culling)."""
  t0, t1, ok = _roots((o - _col(center)) / radius, d / radius)
  del t0
  return ok & (t1 > _EPS)


def _unit(v):
  return v / np.maximum(np.sqrt(dot(v, v)), 1e-30)


class NearestHit:
  """Per ray, the nearest hit so far: t [R] (inf: background), prim int16 [R]
  (-1: background), normal [3, R] facing the ray in the primitive's frame."""

  def __init__(self, num_rays):
    self.t = np.full(num_rays, np.inf)
    self.prim = np.full(num_rays, -1, np.int16)
    self.normal = np.zeros((3, num_rays))

  def add(self, prim_id, t, normal, d, rays=None):
    """Merges hits t [S], normal, d [3, S] of ray ids [S] (None: all rays)."""
    rays = slice(None) if rays is None else rays
    closer = t < self.t[rays]
    # Seen from inside a cut-away shell, the surface faces us.
    facing = np.where(dot(normal, d) > 0, -normal, normal)
    if isinstance(rays, slice):
      idx = np.flatnonzero(closer)
    else:
      idx = rays[closer]
    self.t[idx] = t[closer]
    self.prim[idx] = prim_id
    self.normal[:, idx] = facing[:, closer]
