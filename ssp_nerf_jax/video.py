"""H.264 mp4 writing (audio muxed in) and read-back with imageio-ffmpeg.

Uses the ffmpeg binary bundled with imageio-ffmpeg, so no system ffmpeg is
needed.  Videos are written to `<path>.partial.mp4` and renamed when
complete: a failed or interrupted write never leaves a file under `path`.
"""
import os
import re
import subprocess
import tempfile
from typing import Optional

import imageio_ffmpeg
import numpy as np
import soundfile

from ssp_nerf_jax import errors

_PROBE_RATE = 16_000  # Audio is decoded at this rate to measure it.


def pad_to_even(frames: np.ndarray) -> np.ndarray:
  """Pads uint8 [N, H, W, 3] by one edge pixel where H or W is odd.

  yuv420p (what players expect of H.264) needs even sizes.
  """
  height, width = frames.shape[1:3]
  pad = ((0, 0), (0, height % 2), (0, width % 2), (0, 0))
  if not any(p[1] for p in pad):
    return frames
  return np.pad(frames, pad, mode='edge')


def fit_audio(audio: np.ndarray, num_frames: int, fps: float,
              sample_rate: int) -> np.ndarray:
  """Trims or zero-pads float32 [T] to the video's duration.

  Returns:
    float32 [round(num_frames / fps * sample_rate)].
  """
  target = int(round(num_frames / fps * sample_rate))
  audio = np.asarray(audio, np.float32)[:target]
  return np.pad(audio, (0, target - len(audio)))


def _ffmpeg_command(path, width, height, fps, wav_path):
  """The ffmpeg argv: raw RGB frames on stdin (+ a wav) -> H.264 mp4."""
  cmd = [imageio_ffmpeg.get_ffmpeg_exe(), '-y', '-loglevel', 'error',
         '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', f'{width}x{height}',
         '-r', f'{fps:g}', '-i', '-']
  if wav_path:
    cmd += ['-i', wav_path]
  cmd += ['-map', '0:v:0', '-c:v', 'libx264', '-pix_fmt', 'yuv420p',
          '-crf', '18']
  if wav_path:
    cmd += ['-map', '1:a:0', '-c:a', 'aac', '-b:a', '128k']
  return cmd + ['-movflags', '+faststart', '-f', 'mp4', path]


def write_mp4(path: str, frames: np.ndarray, fps: float,
              audio: Optional[np.ndarray] = None,
              sample_rate: int = 16_000) -> str:
  """Writes an H.264 mp4, with the audio track muxed in when given.

  Args:
    path: output file (replaced atomically).
    frames: uint8 [N, H, W, 3], N >= 1; odd H/W are padded by one pixel.
    fps: frame rate.
    audio: float32 [T] mono in [-1, 1] at `sample_rate`, or None for a
      silent video.  It is trimmed or zero-padded to N / fps seconds.
    sample_rate: rate of `audio` in Hz.
  Returns:
    `path`.
  Raises:
    errors.UserError: ffmpeg failed (message names the file).
  """
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
    raise ValueError(f'frames must be uint8 [N>0, H, W, 3], got {frames.shape}')
  frames = pad_to_even(frames.astype(np.uint8))
  height, width = frames.shape[1:3]
  partial = path + '.partial.mp4'
  with tempfile.TemporaryDirectory(prefix='ssp_nerf_mux_') as tmp:
    wav_path = None
    if audio is not None:
      wav_path = os.path.join(tmp, 'audio.wav')
      soundfile.write(wav_path, fit_audio(audio, len(frames), fps,
                                          sample_rate), int(sample_rate),
                      subtype='FLOAT')
    cmd = _ffmpeg_command(partial, width, height, fps, wav_path)
    try:
      result = subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(),
                              capture_output=True, check=False)
    except OSError as e:
      _remove(partial)
      raise errors.UserError(f'cannot run ffmpeg for {path}: {e}') from None
  if result.returncode != 0:
    _remove(partial)
    message = result.stderr.decode(errors='replace').strip().splitlines()
    raise errors.UserError(f'ffmpeg could not write {path}: '
                           f'{message[-1] if message else result.returncode}')
  os.replace(partial, path)
  return path


def _remove(path):
  try:
    os.remove(path)
  except FileNotFoundError:
    pass


def probe(path: str) -> tuple[int, float]:
  """(number of video frames, audio duration in s; 0.0 if no audio track).

  Decodes both streams with the bundled ffmpeg, so the figures are what a
  player gets, not container metadata.
  """
  num_frames, _ = imageio_ffmpeg.count_frames_and_secs(path)
  if not has_audio_stream(path):
    return int(num_frames), 0.0
  cmd = [imageio_ffmpeg.get_ffmpeg_exe(), '-loglevel', 'error', '-i', path,
         '-map', '0:a:0', '-f', 's16le', '-ac', '1', '-ar',
         str(_PROBE_RATE), '-']
  result = subprocess.run(cmd, capture_output=True, check=False)
  if result.returncode != 0:
    raise errors.UserError(f'ffmpeg cannot read {path}: '
                           f'{result.stderr.decode(errors="replace").strip()}')
  return int(num_frames), len(result.stdout) / 2 / _PROBE_RATE


def has_audio_stream(path: str) -> bool:
  """Whether ffmpeg lists an audio stream in `path`."""
  result = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), '-i', path],
                          capture_output=True, check=False)
  return bool(re.search(r'Stream #\S+.*Audio:',
                        result.stderr.decode(errors='replace')))
