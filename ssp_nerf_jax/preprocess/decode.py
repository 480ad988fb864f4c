"""Video -> constant-rate RGB frames and mono audio, via imageio-ffmpeg.

Time 0 is the first video frame's timestamp; frames and audio both shift the
file's own timestamps (-copyts) by it, so they cannot disagree on where it is.
"""
import dataclasses
import fractions
import math
import os
import re
import shlex
import subprocess
import tempfile
from typing import Iterator, Optional, Sequence

import imageio_ffmpeg
import numpy as np

from ssp_nerf_jax.data import audio_features
from ssp_nerf_jax.offline import mp4
from ssp_nerf_jax.runtime import errors

MIN_DURATION_S = 2.0
# Audio whose peak or RMS (full scale 1) is below this holds no speech.
SILENCE_LEVEL = 1e-3
_DISCARD_FLAG = 0x4  # AV_PKT_FLAG_DISCARD: a packet an edit list cuts away.
_NO_PTS = -(2**63)  # AV_NOPTS_VALUE as framecrc prints it.
# swscale's YUV -> RGB: interpolate the half-resolution chroma (sharp lip
# edges) and round instead of truncating.
_SWS_QUALITY = 'accurate_rnd+full_chroma_int'


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  """What `probe_video` learns: width, height as displayed (after rotation),
  num_frames exactly as `read_frames` yields them, start_s the time 0."""
  path: str
  width: int
  height: int
  source_fps: float
  duration_s: float
  num_frames: int
  has_audio: bool
  start_s: float = 0.0


def _ffmpeg(*args: str, path: str) -> list[str]:
  """ffmpeg's argv: `args`, then `path` as its input."""
  # -nostdin: ffmpeg otherwise eats the terminal's input; 'file:' stops a ':'
  # in the name being read as a protocol.
  return [imageio_ffmpeg.get_ffmpeg_exe(), '-nostdin', '-hide_banner',
          *args, '-i', 'file:' + path]


def _check_file(path: str) -> None:
  if not os.path.exists(path):
    raise errors.UserError(f'video {path} does not exist: check the path')
  if os.path.isdir(path):
    raise errors.UserError(f'video {path} is a folder: give a video file')
  try:
    with open(path, 'rb'):
      pass
  except OSError as e:
    raise errors.UserError(f'video {path} cannot be read: '
                           f'{e.strerror or e}') from None


def _last_line(text: str) -> str:
  lines = text.strip().splitlines()
  return lines[-1].strip() if lines else ''


def _stream_blocks(listing: str) -> list[tuple[str, str]]:
  """(kind, text) per stream of input #0 in `ffmpeg -i`'s listing."""
  blocks = []
  lines = listing.splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith('Input #0'))
  for line in lines[start + 1:]:
    if not line.startswith('  '):
      break
    match = re.match(r'  Stream #0:\d+\S*: (\w+): ', line)
    if match:
      blocks.append([match.group(1), line])
    elif blocks and line.startswith('    '):
      blocks[-1][1] += '\n' + line
  return [tuple(b) for b in blocks]


def _displayed_size(block: str) -> tuple[int, int]:
  """(width, height) of a video stream, swapped by a +-90 degree rotation."""
  match = re.search(r', (\d+)x(\d+)', block)
  width, height = int(match.group(1)), int(match.group(2))
  # ffmpeg autorotates decoded frames by the display matrix.
  rotation = re.search(r'rotation of (-?[\d.]+) degrees', block)
  if rotation and round(float(rotation.group(1))) % 180 == 90:
    width, height = height, width
  return width, height


def _packet_times(framecrc: str) -> tuple[fractions.Fraction, int, int, int]:
  """(time base, first pts, end pts, packets) from ffmpeg's framecrc lines,
  without packets that lack a pts or that an edit list cuts away."""
  time_base = re.search(r'#tb 0: (\d+/\d+)', framecrc)
  time_base = fractions.Fraction(time_base.group(1) if time_base else '1')
  starts, ends = [], []
  for line in framecrc.splitlines():
    if line.startswith('#'):
      continue
    fields = [f.strip() for f in line.split(',')]
    pts, duration = int(fields[2]), int(fields[3])
    flags = int(fields[6][2:], 16) if len(fields) > 6 else 0
    if pts == _NO_PTS or flags & _DISCARD_FLAG:
      continue
    starts.append(pts)
    ends.append(pts + duration)
  if not starts:
    return time_base, 0, 0, 0
  end = max(ends)
  if end == max(starts) and len(starts) > 1:
    # No packet durations: the typical frame step, as ffmpeg does.
    end += int(np.median(np.diff(np.sort(starts))))
  return time_base, min(starts), end, len(starts)


def _round_half_up(value: fractions.Fraction) -> int:
  # As the fps filter rounds timestamps (AV_ROUND_NEAR_INF).
  return math.floor(value + fractions.Fraction(1, 2))


def probe_video(path: str, fps: float = audio_features.FPS) -> VideoInfo:
  """Size, timing and audio presence of a video, by demuxing only (fast).

  Raises:
    errors.UserError: the file is missing or unreadable, is not a video, or
      is shorter than MIN_DURATION_S.
  """
  path = os.fspath(path)
  _check_file(path)
  # One run: the listing on stderr, the packet timestamps on stdout.
  cmd = _ffmpeg('-nostats', '-copyts', path=path) + [
      '-map', '0:V:0', '-c', 'copy', '-f', 'framecrc', '-']
  result = subprocess.run(cmd, capture_output=True, check=False,
                          stdin=subprocess.DEVNULL)
  listing = result.stderr.decode(errors='replace')
  if 'Input #0' not in listing:
    raise errors.UserError(
        f'video {path} is not a video ffmpeg can read '
        f'({_last_line(listing)}): give an .mp4, .mov, .mkv, ... file')
  streams = _stream_blocks(listing)
  # Cover art in music files is a "video" stream too; ffmpeg's 0:V skips it.
  videos = [block for kind, block in streams
            if kind == 'Video' and '(attached pic)' not in block]
  if not videos:
    raise errors.UserError(f'video {path} has no video stream: give a video '
                           'of the person talking, not an audio file')
  framecrc = result.stdout.decode(errors='replace')
  time_base, first, end, count = _packet_times(framecrc)
  if result.returncode != 0 or not re.search(r'^\d', framecrc, re.M):
    raise errors.UserError(f'video {path}: ffmpeg cannot read the video '
                           f'stream ({_last_line(listing)})')
  if not count:
    # A raw stream (e.g. .h264) has no timestamps to align audio to.
    stem = shlex.quote(os.path.splitext(path)[0] + '.mp4')
    raise errors.UserError(
        f'video {path} has no frame timestamps: put it in a container, '
        f'e.g. ffmpeg -r <its fps> -i {shlex.quote(path)} -c copy {stem}')
  duration = (end - first) * time_base
  if duration < MIN_DURATION_S:
    raise errors.UserError(
        f'video {path} is only {float(duration):.2f} s long: use a video of '
        f'at least {MIN_DURATION_S:g} s (minutes of speech train best)')
  width, height = _displayed_size(videos[0])
  return VideoInfo(
      path=path, width=width, height=height,
      source_fps=float(count / duration), duration_s=float(duration),
      num_frames=_round_half_up(duration * fractions.Fraction(fps)),
      has_audio=any(kind == 'Audio' for kind, _ in streams),
      start_s=float(first * time_base))


def _output_size(info: VideoInfo, crop, size, max_side) -> tuple[int, int]:
  """(width, height) of the frames read_frames yields; checks the options."""
  if size is not None and max_side is not None:
    raise ValueError('give size or max_side, not both')
  width, height = info.width, info.height
  if crop is not None:
    x, y, side = crop
    if not all(isinstance(v, (int, np.integer)) for v in crop):
      raise ValueError(f'crop must be integers (x, y, side), got {crop}')
    if side <= 0 or x < 0 or y < 0 or x + side > width or y + side > height:
      raise ValueError(f'crop {tuple(crop)} is not inside the {width}x'
                       f'{height} frame of {info.path}')
    width = height = int(side)
  if size is not None:
    if width != height:
      raise ValueError(f'size needs a square crop: {info.path} is '
                       f'{width}x{height}')
    if int(size) <= 0:
      raise ValueError(f'size must be positive, got {size}')
    return int(size), int(size)
  if max_side is not None and max(width, height) > max_side:
    scale = max_side / max(width, height)
    return (max(1, min(max_side, round(width * scale))),
            max(1, min(max_side, round(height * scale))))
  return width, height


def _video_filters(info: VideoInfo, fps: float, crop: Optional[Sequence[int]],
                   out_size: tuple[int, int]) -> str:
  """The -vf chain: shift to start_s, resample to fps, crop, scale."""
  # round(): setpts truncates, and start_s / TB is whole only up to float error.
  filters = [f'setpts=PTS-round({info.start_s!r}/TB)',
             f'fps=fps={fps!r}:start_time=0']
  width, height = info.width, info.height
  if crop is not None:
    x, y, side = (int(v) for v in crop)
    filters.append(f'crop={side}:{side}:{x}:{y}:exact=1')
    width = height = side
  if out_size != (width, height):
    # area for shrinking (no aliasing); it is nearest neighbour when enlarging.
    kernel = 'area' if out_size[0] < width else 'bicubic'
    filters.append(f'scale={out_size[0]}:{out_size[1]}:'
                   f'flags={kernel}+{_SWS_QUALITY}')
  filters.append('format=rgb24')
  return ','.join(filters)


def read_frames(path: str, *, fps: float = audio_features.FPS,
                crop: Optional[Sequence[int]] = None,
                size: Optional[int] = None,
                max_side: Optional[int] = None) -> Iterator[np.ndarray]:
  """Yields exactly probe_video's num_frames uint8 [h, w, 3] RGB frames.

  Frame k is the source frame nearest to time k / fps.  `crop`: integer
  (x, y, side) square of the displayed frame, resized to `size`; `max_side`
  (not with `size`) shrinks the long side.  Closing the generator ends ffmpeg.

  Raises:
    errors.UserError: not a usable video, or decoding fails.
    ValueError: bad crop/size/max_side.
  """
  info = probe_video(path, fps)
  out_size = _output_size(info, crop, size, max_side)
  cmd = _ffmpeg('-loglevel', 'error', '-copyts', path=info.path) + [
      '-map', '0:V:0',
      '-vf', _video_filters(info, fps, crop, out_size),
      '-sws_flags', f'bicubic+{_SWS_QUALITY}',
      # The fps filter made the rate constant: no second duplicating/dropping.
      '-fps_mode', 'passthrough',
      '-frames:v', str(info.num_frames),
      '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-']
  return _stream_frames(cmd, info, out_size)


def _stream_frames(cmd: list[str], info: VideoInfo,
                   out_size: tuple[int, int]) -> Iterator[np.ndarray]:
  width, height = out_size
  # ffmpeg's messages go to a file: a stderr pipe nobody reads while frames
  # are read could fill up (corrupt streams log per frame) and block ffmpeg.
  with tempfile.TemporaryFile() as log:
    process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=log,
                               bufsize=width * height * 3)
    try:
      frame, count = None, 0
      while count < info.num_frames:
        new = np.empty((height, width, 3), np.uint8)
        if not _read_into(process.stdout, new):
          break
        frame, count = new, count + 1
        yield frame
      if count == info.num_frames:
        return
      if process.wait() != 0 or frame is None:
        log.seek(0)
        message = _last_line(log.read().decode(errors='replace'))
        raise errors.UserError(
            f'video {info.path}: ffmpeg could not decode it '
            f'({message or f"exit status {process.returncode}"})')
      # The decoder dropped a broken last frame: hold the one before, so
      # that video and audio keep the same length.
      for _ in range(info.num_frames - count):
        yield frame.copy()
    finally:
      if process.poll() is None:
        process.kill()
      process.stdout.close()
      process.wait()


def _read_into(stream, frame: np.ndarray) -> bool:
  """Fills `frame` from `stream`; False at end of stream (or a cut frame)."""
  view = memoryview(frame).cast('B')
  done = 0
  while done < len(view):
    n = stream.readinto(view[done:])
    if not n:
      return False
    done += n
  return True


def _no_audio_message(path: str) -> str:
  quoted = shlex.quote(path)
  stem = shlex.quote(os.path.splitext(path)[0] + '_with_audio.mp4')
  return (f'video {path} has no audio track, and the portrait learns from '
          f'the speech: add the recording, e.g. ffmpeg -i {quoted} -i '
          f'speech.wav -map 0:v:0 -map 1:a:0 -c:v copy -shortest {stem}')


def read_audio(path: str, num_frames: int, fps: float = audio_features.FPS,
               sample_rate: int = audio_features.SAMPLE_RATE) -> np.ndarray:
  """float32 [round(num_frames / fps * sample_rate)] mono audio, timed like
  `read_frames`: gaps and a late start become silence, the end is fitted.

  Raises:
    errors.UserError: not a usable video, no audio track, or silent audio.
  """
  info = probe_video(path, fps)
  path = info.path
  if not info.has_audio:
    raise errors.UserError(_no_audio_message(path))
  start = repr(info.start_s)
  target = int(round(num_frames / fps * sample_rate))
  filters = [
      f'asetpts=PTS-round({start}/TB)',
      # async=1: pad/trim to the timestamps from time 0, never stretch; in
      # the resampler, so that it works on the output's sample grid.
      f'aresample={int(sample_rate)}:async=1:first_pts=0:min_comp=0.0001',
      f'atrim=end_sample={target}',
      'aformat=sample_fmts=flt',
  ]
  cmd = _ffmpeg('-loglevel', 'error', '-copyts', path=path) + [
      '-map', '0:a:0', '-af', ','.join(filters),
      '-ac', '1',
      '-f', 'f32le', '-c:a', 'pcm_f32le', '-']
  result = subprocess.run(cmd, capture_output=True, check=False,
                          stdin=subprocess.DEVNULL)
  if result.returncode != 0:
    raise errors.UserError(
        f'video {path}: ffmpeg could not decode the audio track '
        f'({_last_line(result.stderr.decode(errors="replace"))})')
  audio = mp4.fit_audio(np.frombuffer(result.stdout, np.float32),
                        num_frames, fps, sample_rate)
  peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
  rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))
              ) if len(audio) else 0.0
  if peak < SILENCE_LEVEL or rms < SILENCE_LEVEL:
    level = 20 * np.log10(max(rms, 1e-12))
    raise errors.UserError(
        f'video {path}: the audio track is silent over the video (RMS '
        f'{level:.0f} dBFS, peak {peak:.1e}): use a video in which the '
        'person speaks audibly')
  return audio
