"""The accelerator check: --smoke fills every part of its JSON with sane
figures; the chip table; bad input is one `error:` line."""
import json
import math
import subprocess
import sys

import numpy as np

import adnerf_fixtures
import processes
from ssp_nerf_jax.benchmarks import accelerator_check

CHECK = [sys.executable, '-m', 'ssp_nerf_jax.benchmarks.accelerator_check']


def write_clip(root):
  """A processed folder with precomputed audio and measured mouth openings
  (configs/video.py's read-out needs them)."""
  adnerf_fixtures.write_folder(root, scheme='ssp', audio='npy',
                               face_rect=False, num_frames=24)
  rng = np.random.default_rng(0)
  for split in ('train', 'val'):
    path = root / f'transforms_{split}.json'
    transforms = adnerf_fixtures.read_json(path)
    for frame in transforms['frames']:
      frame['mouth_open'] = float(rng.uniform())
    adnerf_fixtures.write_json(path, transforms)


def positive(value):
  return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def check_train_steps(steps):
  assert [(s['dtype'], s['torso_warp']) for s in steps] == list(
      accelerator_check.SMOKE_STEP_VARIANTS)
  for step in steps:
    assert 'error' not in step, step
    assert positive(step['rays_per_s']) and positive(step['achieved_tflops'])
    assert step['first_step_incl_compile_s'] > step['step_time_s'] > 0
    assert step['rays_per_step'] == 64
    assert set(step['share_of_peak']) == {step['dtype']}
    assert all(positive(v) for v in step['share_of_peak'].values())
    assert step['device_memory'] is None  # CPU keeps no memory stats


def check_real_clip(clip):
  assert 'error' not in clip, clip
  assert clip['steps'] >= 1 and positive(clip['train_wall_s'])
  assert clip['dataset'].startswith('ssp_portrait/adnerf: frames train 21')
  assert clip['settings']['model.width'] == 32  # the toy model
  assert clip['settings']['data.audio_file'] == 'aud.npy'
  val = clip['val']
  assert val['step'] == clip['steps'] and val['num_frames'] == 3
  assert positive(val['psnr']) and 0 < val['ssim'] <= 1
  assert val['frame_size'] == accelerator_check.SMOKE_CLIP_RESOLUTION
  # No face in 32 px noise: null scores, and why.
  assert val['lmd'] is None and isinstance(val['landmark_note'], str)


def test_smoke_fills_every_part(tmp_path):
  write_clip(tmp_path / 'clip')
  out = tmp_path / 'out'
  run = processes.Run(CHECK + ['--smoke', f'--out={out}',
                               f'--clip={tmp_path / "clip"}',
                               '--audio_file=aud.npy'],
                      num_devices=1, log_path=tmp_path / 'log.txt')
  assert run.wait(timeout=300) == 0, run.output()[-3000:]
  with open(out / accelerator_check.RESULT_FILE) as f:
    record = json.load(f)
  assert json.loads(run.output().strip().splitlines()[-1]) == record
  assert record['smoke'] and len(record['commit']) >= 7
  assert record['device']['platform'] == 'cpu'
  assert record['device']['device_count'] == 1
  for dtype in ('bfloat16', 'float32'):
    assert record['peak_tflops'][dtype]['source'] == 'measured matmul'
    assert positive(record['peak_tflops'][dtype]['tflops'])
  check_train_steps(record['train_step'])
  check_real_clip(record['real_clip'])
  render = record['render']
  assert 'error' not in render, render
  assert render['frame_size'] == accelerator_check.SMOKE_RENDER_SIZE
  for name in ('seconds_per_frame_full', 'seconds_per_frame_occupancy',
               'fps_full', 'fps_occupancy'):
    assert positive(render[name])
  assert record['elapsed_s'] > 0


def test_known_chips_take_the_table_peaks():
  peaks = accelerator_check.chip_peaks('NVIDIA H100 80GB HBM3', ())
  assert {k: v['tflops'] for k, v in peaks.items()} == dict(
      accelerator_check.CHIP_PEAKS[3][1])
  peaks = accelerator_check.chip_peaks('NVIDIA H100 PCIe', ())
  assert peaks['bfloat16'] == {'tflops': 756.0, 'source': 'table'}
  # TPUs publish no float32 rate: measured (here on a tiny matmul).
  peaks = accelerator_check.chip_peaks('TPU v5 lite',
                                       accelerator_check.SMOKE_MATMUL_SHAPES)
  assert peaks['bfloat16'] == {'tflops': 197.0, 'source': 'table'}
  assert peaks['float32']['source'] == 'measured matmul'


def test_json_safe_nulls_non_finite_floats():
  assert accelerator_check.json_safe(
      {'a': [float('inf'), np.float32(1.5)], 'b': float('nan'), 'c': 'x'}) == {
          'a': [None, 1.5], 'b': None, 'c': 'x'}


def test_bad_clip_is_one_error_line(tmp_path):
  result = subprocess.run(
      CHECK + [f'--out={tmp_path / "out"}', f'--clip={tmp_path / "none"}'],
      cwd=processes.REPO, env=processes.subprocess_env(1),
      capture_output=True, text=True, timeout=120)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1] == (
      f'error: --clip {tmp_path / "none"} is not a folder')
