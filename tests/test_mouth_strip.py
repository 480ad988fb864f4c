"""The val split's mouth strip: which frames, where the crops are cut."""
import numpy as np

from ssp_nerf_jax.evaluation import mouth_strip

NAMES = ('background', 'skin', 'brows', 'eyes', 'ears', 'nose', 'mouth',
         'lips', 'neck', 'torso', 'hair')


def frames_with_mouths(num_frames=12, size=40):
  """Frames whose lips (class 7) open by frame: a mouth interior (6) of i
  rows; the real frames are dark, renders bright, both with a marker at
  the mouth's centre."""
  parsing = np.ones((num_frames, size, size), np.uint8)
  real = np.zeros((num_frames, size, size, 3), np.uint8)
  for i in range(num_frames):
    parsing[i, 20:22 + i // 2, 14:26] = 7
    parsing[i, 21:21 + i // 2, 16:24] = 6
  rendered = real + 200
  return real, rendered, parsing


def test_open_frames_left_closed_right_truth_above_render():
  real, rendered, parsing = frames_with_mouths()
  opening = np.linspace(0, 1, 12)
  opening[11] = np.nan  # not measured: never picked
  np.testing.assert_array_equal(mouth_strip.pick_frames(opening),
                                [10, 9, 8, 7, 6, 0, 1, 2, 3, 4])
  strip = mouth_strip.mouth_strip(real, rendered, parsing, NAMES, opening)
  side = round(mouth_strip.CROP_WIDTHS * 12)  # lips 12 px wide
  zoom = mouth_strip.ZOOM
  assert strip.shape == (2 * side * zoom,
                         10 * side * zoom + 9 * mouth_strip.GAP, 3)
  assert np.all(strip[:side * zoom, :side * zoom] == 0)  # truth above
  assert np.all(strip[side * zoom:, :side * zoom] == 200)  # render below


def test_without_measured_openings_the_mouth_area_ranks_frames():
  real, rendered, parsing = frames_with_mouths()
  boxes = mouth_strip.mouth_boxes(parsing, NAMES)
  np.testing.assert_allclose(boxes[3, :3], [21.0, 19.5, 12])
  strip = mouth_strip.mouth_strip(real, rendered, parsing, NAMES)
  assert strip is not None
  four_classes = ('background', 'head', 'neck', 'torso')
  assert mouth_strip.mouth_strip(real, rendered, parsing, four_classes) is None
