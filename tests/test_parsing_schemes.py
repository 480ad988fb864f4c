"""Parsing colour codes: scheme detection, colour -> id, face boxes."""
import numpy as np
import pytest

from ssp_nerf_jax.data import parsing_schemes

ADNERF = parsing_schemes.SCHEMES['adnerf']
SSP = parsing_schemes.SCHEMES['ssp']


def counts_of(*images):
  total = parsing_schemes.colour_counts(images[0])
  for image in images[1:]:
    total.update(parsing_schemes.colour_counts(image))
  return total


@pytest.mark.parametrize('scheme', [ADNERF, SSP], ids=['adnerf', 'ssp'])
def test_ids_round_trip(scheme):
  rng = np.random.default_rng(0)
  ids = rng.integers(0, len(scheme.colors), (9, 7)).astype(np.uint8)
  np.testing.assert_array_equal(
      parsing_schemes.parsing_ids(scheme.colors[ids], scheme), ids)
  assert parsing_schemes.detect_scheme(counts_of(scheme.colors[ids])) is scheme


def test_shared_colours_do_not_decide():
  # White + blue only: AD-NeRF's head or SSP-NeRF's ears; the 4-class
  # reading (a head) is the plausible one.
  ids = np.array([[0, 1], [1, 0]])
  assert parsing_schemes.detect_scheme(
      counts_of(ADNERF.colors[ids])) is ADNERF
  # One SSP-only colour (skin) is enough for the 11-class reading, and
  # blue then reads as ears.
  rgb = ADNERF.colors[ids].copy()
  rgb[0, 0] = SSP.colors[1]
  assert parsing_schemes.detect_scheme(counts_of(rgb)) is SSP
  np.testing.assert_array_equal(parsing_schemes.parsing_ids(rgb, SSP),
                                [[1, 4], [4, 0]])


def test_off_colours_snap_to_nearest_class():
  rgb = np.array([[[250, 250, 250], [10, 240, 5], [200, 20, 30]]], np.uint8)
  np.testing.assert_array_equal(parsing_schemes.parsing_ids(rgb, ADNERF),
                                [[0, 2, 3]])
  counts = parsing_schemes.colour_counts(rgb)
  assert counts[int(parsing_schemes.pack(rgb[0, 0]))] == 1
  assert sum(counts.values()) == 3


def test_face_rect_of_head_classes():
  ids = np.zeros((10, 12), np.uint8)
  ids[2:5, 3:9] = 1  # skin
  ids[6, 4] = 7  # lips
  ids[9, :] = 9  # torso does not count
  np.testing.assert_array_equal(parsing_schemes.face_rect_from_ids(ids, SSP),
                                [3, 2, 6, 5])
  # No head at all: the whole frame, so face-rect sampling stays uniform.
  np.testing.assert_array_equal(
      parsing_schemes.face_rect_from_ids(np.zeros((10, 12)), ADNERF),
      [0, 0, 12, 10])


def test_scheme_for_classes():
  assert parsing_schemes.scheme_for_classes(4) is ADNERF
  assert parsing_schemes.scheme_for_classes(11) is SSP
  assert parsing_schemes.scheme_for_classes(5) is None
