"""H.264 mp4 writing (audio muxed in) and read-back, via imageio-ffmpeg.  A file
appears under its path only when complete (`<path>.partial.mp4` renamed)."""
import os
import re
import subprocess
import tempfile
from typing import Optional

import numpy as np
import soundfile

from ssp_nerf_jax.runtime import errors

_PROBE_RATE = 16_000


def pad_to_even(frames: np.ndarray) -> np.ndarray:
  """uint8 [N, H, W, 3] edge-padded to even H, W (yuv420p needs them)."""
  height, width = frames.shape[1:3]
  pad = ((0, 0), (0, height % 2), (0, width % 2), (0, 0))
  if not any(p[1] for p in pad):
    return frames
  return np.pad(frames, pad, mode='edge')


def fit_audio(audio: np.ndarray, num_frames: int, fps: float,
              sample_rate: int) -> np.ndarray:
  """float32 [round(num_frames / fps * sample_rate)]: trimmed or zero-padded."""
  target = int(round(num_frames / fps * sample_rate))
  audio = np.asarray(audio, np.float32)[:target]
  return np.pad(audio, (0, target - len(audio)))


def _imageio_ffmpeg():
  """imageio_ffmpeg (its ffmpeg binary), imported where a video is written or
  probed: the val scoring of the accelerator check writes none."""
  import imageio_ffmpeg  # pylint: disable=g-import-not-at-top
  return imageio_ffmpeg


def _ffmpeg_command(path, width, height, fps, wav_path):
  """The ffmpeg argv: raw RGB frames on stdin (+ a wav) -> H.264 mp4."""
  cmd = [_imageio_ffmpeg().get_ffmpeg_exe(), '-y', '-loglevel', 'error',
         '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', f'{width}x{height}',
         '-r', f'{fps:g}', '-i', '-']
  if wav_path:
    cmd += ['-i', wav_path]
  cmd += ['-map', '0:v:0', '-c:v', 'libx264', '-pix_fmt', 'yuv420p',
          '-crf', '18']
  if wav_path:
    cmd += ['-map', '1:a:0', '-c:a', 'aac', '-b:a', '128k']
  return cmd + ['-movflags', '+faststart', '-f', 'mp4', path]


class Mp4Writer:
  """Streams frames into ffmpeg: an H.264 mp4, with the audio muxed in.

    with Mp4Writer(path, width, height, fps, audio, 16_000, num_frames=n) as w:
      w.write(frame)

  On any failure ffmpeg is killed and the partial file removed; an ffmpeg
  failure is an errors.UserError naming `path`.
  """

  def __init__(self, path: str, width: int, height: int, fps: float,
               audio: Optional[np.ndarray] = None, sample_rate: int = 16_000,
               num_frames: Optional[int] = None):
    """Checks the arguments; ffmpeg starts on `__enter__`.  `audio` (float32
    [T] mono or None) is fitted to num_frames / fps, so it needs num_frames."""
    if audio is not None and num_frames is None:
      raise ValueError('num_frames is required to mux audio')
    self.path = path
    self.partial = path + '.partial.mp4'
    self.size = (int(height), int(width))
    self.fps = fps
    self.audio = audio
    self.sample_rate = int(sample_rate)
    self.num_frames = num_frames
    self.frames_written = 0
    self._tmp = None
    self._process = None
    self._stderr = None

  def __enter__(self) -> 'Mp4Writer':
    self._tmp = tempfile.TemporaryDirectory(prefix='ssp_nerf_mux_')
    try:
      self._start()
    except BaseException:
      self._abort()
      raise
    return self

  def _start(self):
    wav_path = None
    if self.audio is not None:
      wav_path = os.path.join(self._tmp.name, 'audio.wav')
      soundfile.write(wav_path, fit_audio(self.audio, self.num_frames,
                                          self.fps, self.sample_rate),
                      self.sample_rate, subtype='FLOAT')
    height, width = (s + s % 2 for s in self.size)
    cmd = _ffmpeg_command(self.partial, width, height, self.fps, wav_path)
    # ffmpeg's messages go to a file, not a pipe: a pipe nobody reads while
    # frames are written could fill up and block both processes.
    self._stderr = open(os.path.join(self._tmp.name, 'ffmpeg.log'), 'w+b')
    try:
      self._process = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                                       stdout=subprocess.DEVNULL,
                                       stderr=self._stderr)
    except OSError as e:
      raise errors.UserError(f'cannot run ffmpeg for {self.path}: '
                             f'{e}') from None

  def write(self, frame: np.ndarray) -> None:
    """Sends one uint8 [H, W, 3] frame; UserError if ffmpeg has stopped."""
    frame = np.asarray(frame)
    if frame.shape != (*self.size, 3):
      raise ValueError(f'frame must be [{self.size[0]}, {self.size[1]}, 3], '
                       f'got {frame.shape}')
    frame = pad_to_even(frame.astype(np.uint8)[None])[0]
    try:
      self._process.stdin.write(np.ascontiguousarray(frame).tobytes())
      # Now, so that ffmpeg encodes this frame while the next one renders.
      self._process.stdin.flush()
    except (BrokenPipeError, ValueError):  # ValueError: stdin closed
      self._process.wait()
      raise errors.UserError(f'ffmpeg could not write {self.path}: '
                             f'{self._ffmpeg_message()}') from None
    self.frames_written += 1

  def __exit__(self, exc_type, exc, traceback) -> bool:
    if exc_type is not None:
      self._abort()
      return False
    try:
      self._finish()
    except BaseException:
      self._abort()
      raise
    return False

  def _finish(self):
    if self.num_frames is not None and self.frames_written != self.num_frames:
      raise ValueError(f'{self.path}: {self.frames_written} frames written, '
                       f'{self.num_frames} announced')
    if not self.frames_written:
      raise ValueError(f'{self.path}: no frames written')
    try:
      self._process.stdin.close()
    except BrokenPipeError:
      pass  # ffmpeg already stopped; its status says why
    if self._process.wait() != 0:
      raise errors.UserError(f'ffmpeg could not write {self.path}: '
                             f'{self._ffmpeg_message()}')
    os.replace(self.partial, self.path)
    self._close_files()

  def _ffmpeg_message(self) -> str:
    """The last line ffmpeg printed, else its exit status."""
    self._stderr.seek(0)
    lines = self._stderr.read().decode(errors='replace').strip().splitlines()
    return lines[-1] if lines else f'exit status {self._process.returncode}'

  def _abort(self):
    """Kills ffmpeg and removes everything it wrote."""
    if self._process is not None and self._process.poll() is None:
      self._process.kill()
      self._process.wait()
    if self._process is not None:
      try:
        self._process.stdin.close()
      except BrokenPipeError:
        pass
    _remove(self.partial)
    self._close_files()

  def _close_files(self):
    if self._stderr is not None:
      self._stderr.close()
      self._stderr = None
    if self._tmp is not None:
      self._tmp.cleanup()
      self._tmp = None


def write_mp4(path: str, frames: np.ndarray, fps: float,
              audio: Optional[np.ndarray] = None,
              sample_rate: int = 16_000) -> str:
  """Writes frames uint8 [N, H, W, 3] as an mp4 (see `Mp4Writer`); `path`."""
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
    raise ValueError(f'frames must be uint8 [N>0, H, W, 3], got {frames.shape}')
  height, width = frames.shape[1:3]
  with Mp4Writer(path, width, height, fps, audio, sample_rate,
                 num_frames=len(frames)) as writer:
    for frame in frames:
      writer.write(frame)
  return path


def _remove(path):
  try:
    os.remove(path)
  except FileNotFoundError:
    pass


def count_frames_and_audio(path: str) -> tuple[int, float]:
  """(video frames, audio seconds or 0.0), decoded as a player would, not
  read from container metadata."""
  num_frames, _ = _imageio_ffmpeg().count_frames_and_secs(path)
  if not has_audio_stream(path):
    return int(num_frames), 0.0
  cmd = [_imageio_ffmpeg().get_ffmpeg_exe(), '-loglevel', 'error', '-i', path,
         '-map', '0:a:0', '-f', 's16le', '-ac', '1', '-ar',
         str(_PROBE_RATE), '-']
  result = subprocess.run(cmd, capture_output=True, check=False)
  if result.returncode != 0:
    raise errors.UserError(f'ffmpeg cannot read {path}: '
                           f'{result.stderr.decode(errors="replace").strip()}')
  return int(num_frames), len(result.stdout) / 2 / _PROBE_RATE


def has_audio_stream(path: str) -> bool:
  """Whether ffmpeg lists an audio stream in `path`."""
  result = subprocess.run([_imageio_ffmpeg().get_ffmpeg_exe(), '-i', path],
                          capture_output=True, check=False)
  return bool(re.search(r'Stream #\S+.*Audio:',
                        result.stderr.decode(errors='replace')))
