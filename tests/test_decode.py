"""Video decoding: 25 fps frames and audio on one timeline, crops, bad input.

The clips are made here with the bundled ffmpeg: 64x64 px, 4 s, a white
flash in the 30 fps frame shown from FLASH_S and a click in the audio during
that frame, so that alignment can be read off the decoded output.
"""
import dataclasses
import pathlib
import re
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest

from ssp_nerf_jax.preprocess import decode
from ssp_nerf_jax.runtime import errors

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
SR = 16_000
FPS = 25
FLASH_S = 1.2  # 30 fps frame 36 and 25 fps frame 30: on both grids
CLICK_S = 1.21  # 5 ms burst inside the flash frame's 33 ms
FLASH_FRAME = 30
# Drops 30 fps frames irregularly (every 5th and 7th, with a phase), keeping
# the flash frame and its neighbours: frame durations of 1 to 3 ticks.
VFR_SELECT = (r",select='not(eq(mod(n\,5)\,3))*not(eq(mod(n\,7)\,5))'")


def ffmpeg(*args):
  subprocess.run([FFMPEG, '-nostdin', '-v', 'error', '-y', *args],
                 check=True, stdin=subprocess.DEVNULL)


def listing(path):
  """ffmpeg's description of `path` (its streams, start times)."""
  return subprocess.run([FFMPEG, '-nostdin', '-hide_banner', '-i', str(path)],
                        capture_output=True, check=False,
                        stdin=subprocess.DEVNULL).stderr.decode()


def frame_durations(path):
  """Durations of the video packets of `path`, in its time base."""
  out = subprocess.run(
      [FFMPEG, '-nostdin', '-v', 'error', '-i', str(path), '-map', '0:v:0',
       '-c', 'copy', '-f', 'framecrc', '-'],
      capture_output=True, check=True, stdin=subprocess.DEVNULL).stdout
  return [int(line.split(',')[3]) for line in out.decode().splitlines()
          if not line.startswith('#')]


def flash_clip(path, *, video_filter='', video_args=(), audio_delay=0.0,
               video_delay=0.0, duration=4.0, audio=True):
  """Writes a clip: black 30 fps, white frame 36 (at FLASH_S), a click.

  The click is at CLICK_S on the file's timeline; `audio_delay` and
  `video_delay` start a stream that much later by its timestamps (not by
  encoding silence), as -itsoffset does.
  """
  video = ("color=c=black:s=64x64:r=30:d={d},drawbox=w=iw:h=ih:color=white:"
           "t=fill:enable='eq(n,36)'").format(d=duration) + video_filter
  # Time in the audio's own clock: 0 is where its stream starts.
  click = CLICK_S + video_delay - audio_delay
  tone = (f"aevalsrc='0.02*sin(2*PI*440*t)+0.9*between(t,{click},"
          f"{click + 0.005})':s=48000:d={duration}")
  args = ['-itsoffset', str(video_delay), '-f', 'lavfi', '-i', video]
  if audio:
    args += ['-itsoffset', str(audio_delay), '-f', 'lavfi', '-i', tone,
             '-map', '1:a', '-c:a', 'aac']
  ffmpeg(*args, '-map', '0:v', '-c:v', 'libx264', '-pix_fmt', 'yuv420p',
         *video_args, str(path))
  return str(path)


def quadrant_clip(path):
  """96x64, 3 s, lossless: red top-left, green top-right, blue bottom-left."""
  ffmpeg('-f', 'lavfi', '-i',
         'color=c=white:s=96x64:r=25:d=3,'
         'drawbox=x=0:y=0:w=48:h=32:color=red:t=fill,'
         'drawbox=x=48:y=0:w=48:h=32:color=lime:t=fill,'
         'drawbox=x=0:y=32:w=48:h=32:color=blue:t=fill',
         '-c:v', 'ffv1', '-pix_fmt', 'bgr0', str(path))
  return str(path)


RED, GREEN, BLUE, WHITE = [255, 0, 0], [0, 255, 0], [0, 0, 255], [255] * 3


def assert_colour(pixels, colour):
  """uint8 [..., 3] pixels are all `colour` (up to YUV rounding)."""
  assert np.abs(pixels.astype(int) - colour).max() <= 6, (pixels, colour)


def decode_all(path):
  """(VideoInfo, uint8 [N, H, W, 3] frames, float32 [T] audio) of `path`."""
  info = decode.probe_video(path)
  frames = np.stack(list(decode.read_frames(path)))
  return info, frames, decode.read_audio(path, info.num_frames)


def assert_aligned(frames, audio, flash_frame, click_s):
  """The flash is in `flash_frame` only; the click starts at `click_s`."""
  flashes = np.flatnonzero(frames.mean(axis=(1, 2, 3)) > 128)
  onset = np.flatnonzero(np.abs(audio) > 0.45)[0]
  assert flashes.tolist() == [flash_frame]
  assert onset // (SR // FPS) == flash_frame
  # Sample-accurate, not just frame-accurate (1 ms of slack).
  assert abs(onset - click_s * SR) <= 16, onset


@pytest.mark.parametrize('case', ['cfr', 'vfr', 'audio_late_mp4',
                                  'audio_late_mkv', 'video_late'])
def test_flash_and_click_land_in_the_same_frame(tmp_path, case):
  kwargs, suffix = {}, '.mp4'
  if case == 'vfr':
    kwargs = dict(video_filter=VFR_SELECT, video_args=('-fps_mode', 'vfr'))
  elif case.startswith('audio_late'):
    kwargs, suffix = dict(audio_delay=0.5), '.' + case[-3:]
  elif case == 'video_late':
    kwargs = dict(video_delay=0.3)
  path = flash_clip(tmp_path / ('clip' + suffix), **kwargs)
  # The clips really are what the case says.
  if case == 'vfr':
    assert len(set(frame_durations(path))) > 1
  if case.startswith('audio_late'):
    assert re.search(r'Audio: .*start 0\.[45]', listing(path))
  if case == 'video_late':
    assert re.search(r'Video: .*start 0\.3', listing(path))

  info, frames, audio = decode_all(path)
  assert info.duration_s == pytest.approx(4.0)
  assert info.num_frames == len(frames) == 100
  assert frames.shape == (100, 64, 64, 3) and frames.dtype == np.uint8
  assert audio.shape == (64_000,) and audio.dtype == np.float32
  assert_aligned(frames, audio, FLASH_FRAME, CLICK_S)
  if case == 'video_late':
    assert info.start_s == pytest.approx(0.3)


def test_stream_copy_cut_mid_gop_aligns(tmp_path):
  # Cutting with -c copy keeps the frames from the previous keyframe on and
  # an edit list hides them: time 0 is the cut, not the keyframe.
  path = flash_clip(tmp_path / 'gop.mp4', video_args=('-g', '20', '-bf', '2'))
  cut = str(tmp_path / 'cut.mp4')
  ffmpeg('-ss', '0.4', '-i', path, '-c', 'copy', cut)
  info, frames, audio = decode_all(cut)
  assert info.num_frames == len(frames) == 90
  assert len(audio) == 90 * SR // FPS
  assert_aligned(frames, audio, FLASH_FRAME - 10, CLICK_S - 0.4)


def test_probe_reports_size_rate_and_audio(tmp_path):
  path = flash_clip(tmp_path / 'vfr.mp4', video_filter=VFR_SELECT,
                    video_args=('-fps_mode', 'vfr'), audio=False)
  info = decode.probe_video(path)
  assert (info.path, info.width, info.height) == (path, 64, 64)
  assert info.source_fps == pytest.approx(82 / 4)  # 38 of 120 dropped
  assert not info.has_audio
  assert decode.probe_video(path, fps=30).num_frames == 120
  assert decode.probe_video(pathlib.Path(path)).path == path


def test_crop_size_max_side_and_rotation(tmp_path):
  path = quadrant_clip(tmp_path / 'quadrants.mkv')
  full = next(decode.read_frames(path))
  assert full.shape == (64, 96, 3)
  # A 16 px square around the centre, enlarged to 32: four 16 px quadrants.
  crop = next(decode.read_frames(path, crop=(40, 24, 16), size=32))
  assert crop.shape == (32, 32, 3) and crop.dtype == np.uint8
  for (row, col), colour in {(4, 4): RED, (4, 27): GREEN, (27, 4): BLUE,
                             (27, 27): WHITE}.items():
    assert_colour(crop[row, col], colour)
  # The top-left quadrant, shrunk to 8 px.
  small = next(decode.read_frames(path, crop=(0, 0, 32), size=8))
  assert small.shape == (8, 8, 3)
  assert_colour(small.reshape(-1, 3), RED)
  # The whole frame with its longer side limited to 48: aspect kept.
  frames = list(decode.read_frames(path, max_side=48))
  assert len(frames) == 75 and frames[0].shape == (32, 48, 3)
  for (row, col), colour in {(8, 12): RED, (8, 36): GREEN, (24, 12): BLUE,
                             (24, 36): WHITE}.items():
    assert_colour(frames[-1][row, col], colour)
  # Rotation metadata: frames come upright, the size is the displayed one.
  rotated = str(tmp_path / 'rotated.mkv')
  ffmpeg('-display_rotation', '90', '-i', path, '-c', 'copy', rotated)
  info = decode.probe_video(rotated)
  assert (info.width, info.height) == (64, 96)
  np.testing.assert_array_equal(next(decode.read_frames(rotated)),
                                np.rot90(full))
  with pytest.raises(ValueError, match='not inside'):
    decode.read_frames(path, crop=(90, 0, 16), size=32)


def test_stopping_early_ends_ffmpeg(tmp_path, monkeypatch):
  path = quadrant_clip(tmp_path / 'quadrants.mkv')
  started = []
  popen = subprocess.Popen

  def record(*args, **kwargs):
    started.append(popen(*args, **kwargs))
    return started[-1]

  monkeypatch.setattr(decode.subprocess, 'Popen', record)
  frames = decode.read_frames(path)  # 1.4 MB of frames: more than a pipe
  assert next(frames).shape == (64, 96, 3)
  ffmpeg_run = started[-1]  # (the first ones probed the file)
  assert ffmpeg_run.poll() is None  # still decoding
  frames.close()
  assert ffmpeg_run.poll() is not None


def test_missing_last_frames_are_held(tmp_path, monkeypatch):
  # If ffmpeg yields fewer frames than probed (a broken last frame), the
  # last one is repeated: frames and audio keep the probed length.
  path = quadrant_clip(tmp_path / 'quadrants.mkv')
  probe = decode.probe_video
  monkeypatch.setattr(decode, 'probe_video', lambda *a: dataclasses.replace(
      probe(*a), num_frames=78))
  frames = list(decode.read_frames(path, max_side=24))
  assert len(frames) == 78
  np.testing.assert_array_equal(frames[-1], frames[74])


def test_bad_inputs_are_user_errors_naming_the_file(tmp_path):
  missing = str(tmp_path / 'missing.mp4')
  with pytest.raises(errors.UserError, match=f'{re.escape(missing)} does '
                     'not exist'):
    decode.probe_video(missing)

  noise = tmp_path / 'noise.mp4'
  noise.write_bytes(np.random.default_rng(0).bytes(20_000))
  with pytest.raises(errors.UserError,
                     match=f'{re.escape(str(noise))} is not a video'):
    decode.probe_video(str(noise))

  wav = str(tmp_path / 'speech.wav')
  ffmpeg('-f', 'lavfi', '-i', 'sine=d=3', wav)
  with pytest.raises(errors.UserError,
                     match=f'{re.escape(wav)} has no video stream'):
    decode.probe_video(wav)

  short = flash_clip(tmp_path / 'short.mp4', duration=1.5)
  with pytest.raises(errors.UserError,
                     match=f'{re.escape(short)} is only 1.50 s long'):
    decode.read_frames(short)

  mute = flash_clip(tmp_path / 'mute.mp4', audio=False)
  with pytest.raises(errors.UserError,
                     match=f'{re.escape(mute)} has no audio track.*-map'):
    decode.read_audio(mute, 100)

  silent = str(tmp_path / 'silent.mp4')
  ffmpeg('-i', mute, '-f', 'lavfi', '-i', 'anullsrc=r=44100:cl=stereo',
         '-map', '0:v', '-map', '1:a', '-c:v', 'copy', '-c:a', 'aac',
         '-shortest', silent)
  with pytest.raises(errors.UserError,
                     match=f'{re.escape(silent)}: the audio track is silent'):
    decode.read_audio(silent, 100)
