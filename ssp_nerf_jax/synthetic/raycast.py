"""Analytic ray casting against axis-aligned quadrics, vectorised in numpy.

Rays are stored component-major: origins and directions are [3, R] arrays
in the primitive's own frame (numpy reductions over a trailing axis of
length 3 are several times slower than adding three contiguous rows).
Directions are NOT normalised (camera z component is -1, as in AD-NeRF), so
every t below is a camera z-depth, comparable across frames and primitives
because all frame changes are rigid.
"""
import numpy as np

_EPS = 1e-6


def camera_directions(height, width, focal, cx, cy):
  """Camera-space ray directions of all pixels (AD-NeRF / OpenGL convention).

  Pixel (u=col, v=row), centres at integer coordinates, maps to
  ((u - cx) / f, -(v - cy) / f, -1).

  Returns:
    float64 [height * width, 3], row-major pixel order.
  """
  v, u = np.meshgrid(np.arange(height, dtype=np.float64),
                     np.arange(width, dtype=np.float64), indexing='ij')
  d = np.stack([(u - cx) / focal, -(v - cy) / focal, -np.ones_like(u)], -1)
  return d.reshape(-1, 3)


def dot(a, b):
  """Row-wise dot product of [3, R] arrays, [R]."""
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _col(x):
  """[3] or [3, R] -> broadcastable [3, 1] or [3, R]."""
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
  """Nearest root in front of the origin that passes the clip test, [R]."""
  good0 = ok & (t0 > _EPS)
  good1 = ok & (t1 > _EPS)
  if clip is not None:
    good0 &= clip(o + np.where(good0, t0, 0.0) * d)
    good1 &= clip(o + np.where(good1, t1, 0.0) * d)
  return np.where(good0, t0, np.where(good1, t1, np.inf))


def intersect_ellipsoid(o, d, center, radii, clip=None):
  """Ray / axis-aligned ellipsoid intersection.

  Args:
    o, d: [3, R] ray origins and directions.
    center, radii: [3] (or scalar radius), or [3, R] per ray (e.g. per-frame
      lips).
    clip: optional function [3, R] points -> [R] bool; a root is kept only
      where it is True (cut-away surfaces such as the hair cap; the far root
      is tried when the near one is cut away, so the inside shows).

  Returns:
    t: [R] nearest valid hit (inf where missed).
    normal: [3, R] unit outward normals at the hit (garbage where missed).
  """
  center = _col(center)
  radii = _col(np.broadcast_to(radii, (3,)) if np.ndim(radii) == 0 else radii)
  t0, t1, ok = _roots((o - center) / radii, d / radii)
  t = _first_valid(o, d, t0, t1, ok, clip)
  p = o + np.where(np.isfinite(t), t, 0.0) * d
  return t, _unit((p - center) / radii**2)


def intersect_cylinder_y(o, d, center, radii_xz, y_min, y_max):
  """Ray / elliptic cylinder along y, open ends, cut to y_min < y < y_max.

  Args:
    o, d: [3, R] ray origins and directions.
    center: [3] point on the axis; radii_xz: (rx, rz).
    y_min, y_max: cut planes (absolute y in the same frame).

  Returns:
    t: [R] (inf where missed); normal: [3, R] unit outward normals.
  """
  center = _col(center)
  # Zero inverse radius along y: the cylinder is infinite along its axis.
  inv_r = np.array([1.0 / radii_xz[0], 0.0, 1.0 / radii_xz[1]])[:, None]
  t0, t1, ok = _roots((o - center) * inv_r, d * inv_r)
  clip = lambda p: (p[1] > y_min) & (p[1] < y_max)
  t = _first_valid(o, d, t0, t1, ok, clip)
  p = o + np.where(np.isfinite(t), t, 0.0) * d
  return t, _unit((p - center) * inv_r**2)


def hits_sphere(o, d, center, radius):
  """Cheap culling test: which rays hit a bounding sphere, [R] bool."""
  t0, t1, ok = _roots((o - _col(center)) / radius, d / radius)
  del t0
  return ok & (t1 > _EPS)


def _unit(v):
  return v / np.maximum(np.sqrt(dot(v, v)), 1e-30)


class NearestHit:
  """Keeps, per ray, the nearest hit over a sequence of primitives.

  Attributes:
    t: [R] depth of the nearest hit so far (inf = background).
    prim: int16 [R] index of that primitive (-1 = background).
    normal: [3, R] its unit normal, flipped to face the ray, in the
      primitive's frame.
  """

  def __init__(self, num_rays):
    self.t = np.full(num_rays, np.inf)
    self.prim = np.full(num_rays, -1, np.int16)
    self.normal = np.zeros((3, num_rays))

  def add(self, prim_id, t, normal, d, rays=None):
    """Merges one primitive's hits.

    Args:
      prim_id: primitive index.
      t: [S] hit depths; normal: [3, S]; d: [3, S] ray directions.
      rays: optional int [S] indices of the S tested rays (culling); all
        rays when None.
    """
    rays = slice(None) if rays is None else rays
    closer = t < self.t[rays]
    # Seen from inside (far root of a cut-away shell), the surface faces us.
    facing = np.where(dot(normal, d) > 0, -normal, normal)
    if isinstance(rays, slice):
      idx = np.flatnonzero(closer)
    else:
      idx = rays[closer]
    self.t[idx] = t[closer]
    self.prim[idx] = prim_id
    self.normal[:, idx] = facing[:, closer]
