"""Renders frames of the procedural portrait: nearest analytic hit, Lambertian,
no antialiasing, so class ids are exact at pixel centres."""
import numpy as np

from ssp_nerf_jax.synthetic import raycast
from ssp_nerf_jax.synthetic import scene
from ssp_nerf_jax.synthetic import textures


def _head_hits(hits, o, d, fidx, mouth):
  """Merges the head primitives for head-space rays o, d [3, R], frames fidx."""
  # Only rays through the head's bounding sphere can hit it: test just those.
  rays = np.flatnonzero(raycast.hits_sphere(o, d, scene.SKULL_CENTER,
                                            scene.HEAD_BOUND_RADIUS))
  o, d, fidx = o[:, rays], d[:, rays], fidx[rays]

  def add(prim, hit):
    hits.add(prim, hit[0], hit[1], d, rays)

  add(scene.P_SKULL, raycast.intersect_ellipsoid(o, d, scene.SKULL_CENTER,
                                                 scene.SKULL_RADII))
  add(scene.P_HAIR, raycast.intersect_ellipsoid(o, d, scene.HAIR_CENTER,
                                                scene.HAIR_RADII,
                                                clip=scene.hair_clip))
  mirror = np.array([-1.0, 1.0, 1.0])
  add(scene.P_EAR_L, raycast.intersect_ellipsoid(
      o, d, scene.EAR_CENTER * mirror, scene.EAR_RADII))
  add(scene.P_EAR_R, raycast.intersect_ellipsoid(o, d, scene.EAR_CENTER,
                                                 scene.EAR_RADII))
  add(scene.P_NOSE, raycast.intersect_ellipsoid(o, d, scene.NOSE_CENTER,
                                                scene.NOSE_RADII))
  for prim, center in zip((scene.P_EYE_L, scene.P_EYE_R), scene.EYE_CENTERS):
    add(prim, raycast.intersect_ellipsoid(o, d, center, scene.EYE_RADIUS))
  for prim, center in zip((scene.P_BROW_L, scene.P_BROW_R),
                          scene.BROW_CENTERS):
    add(prim, raycast.intersect_ellipsoid(o, d, center, scene.BROW_RADII))
  half_w = mouth['half_width'][fidx]
  for prim, key, thick in ((scene.P_LIP_U, 'upper_center', 1.0),
                           (scene.P_LIP_L, 'lower_center',
                            scene.LOWER_LIP_SCALE)):
    radii = np.stack([half_w, np.full_like(half_w, thick * scene.LIP_THICKNESS),
                      np.full_like(half_w, scene.LIP_DEPTH)])
    add(prim, raycast.intersect_ellipsoid(o, d, mouth[key][fidx].T, radii))


def _torso_hits(hits, o, d):
  """Merges neck and torso (torso-space rays o, d [3, R]) into `hits`."""
  hits.add(scene.P_NECK, *raycast.intersect_cylinder_y(
      o, d, np.zeros(3), scene.NECK_RADII_XZ, *scene.NECK_Y_RANGE), d)
  hits.add(scene.P_TORSO, *raycast.intersect_ellipsoid(
      o, d, scene.TORSO_CENTER, scene.TORSO_RADII), d)


def _mouth_decal(p, fidx, mouth):
  """(inside bool [S], x, y_in_gap, half_gap [S]) for skull points p [3, S]:
  the interior is an ellipse on the face that grows with the opening."""
  half_gap = mouth['gap'][fidx] / 2
  openness = mouth['open'][fidx]
  x = p[0]
  y_in_gap = p[1] - mouth['gap_y'][fidx]
  semi_x = mouth['half_width'][fidx] * (0.6 + 0.35 * openness)
  semi_y = half_gap + 0.3 * scene.LIP_THICKNESS
  inside = (openness > 0) & ((x / semi_x)**2 + (y_in_gap / semi_y)**2 < 1)
  return inside, x, y_in_gap, half_gap


# Albedo of each primitive: function of [S, 3] points in its own frame.
_PAINTERS = (
    ((scene.P_SKULL,), lambda q: textures.face_skin(q, scene.SKULL_CENTER)),
    ((scene.P_HAIR,), lambda q: textures.hair(q, scene.HAIR_CENTER)),
    ((scene.P_EAR_L, scene.P_EAR_R),
     lambda q: textures.ears(q, scene.EAR_CENTER, scene.EAR_RADII)),
    ((scene.P_NOSE,), textures.nose),
    ((scene.P_EYE_L, scene.P_EYE_R),
     lambda q: textures.eyes(q, scene.EYE_CENTERS, scene.EYE_RADIUS)),
    ((scene.P_BROW_L, scene.P_BROW_R), textures.brows),
    ((scene.P_LIP_U, scene.P_LIP_L), textures.lips),
    ((scene.P_NECK,), textures.neck),
    ((scene.P_TORSO,), textures.torso),
)


def _albedo(prim, p, fidx, mouth):
  """Albedo [S, 3] and class [S] of hits (prim [S] >= 0, p [3, S])."""
  rgb = np.zeros((len(prim), 3))
  for prims, paint in _PAINTERS:
    sel = np.flatnonzero(np.isin(prim, prims))
    if sel.size:
      rgb[sel] = paint(p[:, sel].T)
  cls = scene.PRIM_CLASS[prim]
  skull = np.flatnonzero(prim == scene.P_SKULL)
  inside, x, y_in_gap, half_gap = _mouth_decal(p[:, skull], fidx[skull],
                                               mouth)
  skull = skull[inside]
  rgb[skull] = textures.mouth_interior(x[inside], y_in_gap[inside],
                                       half_gap[inside])
  cls[skull] = scene.MOUTH
  return rgb, cls


def shade_frames(c2w, mouth_open, lip_width, torso_rot, torso_trans, dirs,
                 background):
  """(rgb float64 [B, P, 3] in [0, 1], parsing uint8 [B, P]) of B frames.

  c2w [B, 4, 4]; mouth_open, lip_width [B]; torso_rot [B, 3, 3], torso_trans
  [B, 3]; dirs [P, 3] from raycast.pixel_grid_directions; background [P, 3].
  """
  c2w = np.asarray(c2w, np.float64)
  torso_rot = np.asarray(torso_rot, np.float64)
  num_frames, num_pix = len(c2w), len(dirs)
  fidx = np.repeat(np.arange(num_frames), num_pix)
  mouth = scene.mouth_shape(np.asarray(mouth_open, np.float64),
                            np.asarray(lip_width, np.float64))
  # Head space: origin t, direction R d. Rays are [3, R], R = B * P.
  d_head = np.einsum('bij,pj->ibp', c2w[:, :3, :3], dirs).reshape(3, -1)
  o_head = np.repeat(c2w[:, :3, 3].T, num_pix, axis=1)
  # Torso space: inverse of p_cam = rot p + trans.
  d_torso = np.einsum('bji,pj->ibp', torso_rot, dirs).reshape(3, -1)
  o_torso = np.repeat(
      np.einsum('bji,bj->ib', torso_rot, -np.asarray(torso_trans)), num_pix,
      axis=1)

  hits = raycast.NearestHit(len(fidx))
  _head_hits(hits, o_head, d_head, fidx, mouth)
  _torso_hits(hits, o_torso, d_torso)

  hit = np.flatnonzero(hits.prim >= 0)
  prim = hits.prim[hit]
  in_head = prim < scene.NUM_HEAD_PRIMS
  t = hits.t[hit]
  p = np.where(in_head, o_head[:, hit] + t * d_head[:, hit],
               o_torso[:, hit] + t * d_torso[:, hit])
  albedo, cls = _albedo(prim, p, fidx[hit], mouth)
  # Lights are fixed in each part's own frame, so both look static there.
  torso_light = np.einsum('bji,j->ib', torso_rot, scene.TORSO_LIGHT)
  light = np.where(in_head, scene.HEAD_LIGHT[:, None],
                   torso_light[:, fidx[hit]])
  lambert = np.maximum(raycast.dot(hits.normal[:, hit], light), 0.0)
  shade = scene.AMBIENT + (1.0 - scene.AMBIENT) * lambert

  rgb = np.tile(background, (num_frames, 1))
  rgb[hit] = np.clip(albedo * shade[:, None], 0.0, 1.0)
  parsing = np.zeros(len(fidx), np.uint8)
  parsing[hit] = cls
  return rgb.reshape(num_frames, num_pix, 3), parsing.reshape(num_frames,
                                                              num_pix)
