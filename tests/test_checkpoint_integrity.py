"""Damaged checkpoints: the manifest, training's fallback, readers' one line.

The session's tiny workdir (`tiny_workdir`: steps 3 and 6) is copied per
test, and step 6 of the copy damaged as a full disk, a bad copy or a dying
host would: truncated, bytes flipped in place (same size), a file missing,
and the manifest itself missing (an older checkpoint: verified by restore).
"""
import os
import shutil
import zlib

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import tiny
import processes
from processes import Run, distributed_flags, free_port, train_command
from ssp_nerf_jax.offline import trained as trained_lib
from ssp_nerf_jax.runtime import checkpoint_manifest
from ssp_nerf_jax.runtime import checkpoints
from ssp_nerf_jax.training import experiment
from ssp_nerf_jax.training import train

NUM_STEPS, EVERY = 6, 3  # steps 3 and 6
TIMEOUT_S = 300


def tiny_config(data_dir, **train_overrides):
  config = tiny.get_config()
  config.data.data_dir = str(data_dir)
  config.train.update({'num_steps': NUM_STEPS, 'checkpoint_every': EVERY,
                       'eval_every': NUM_STEPS, **train_overrides})
  return config


@pytest.fixture
def trained(tiny_data, tiny_workdir):
  """(workdir with steps 3 and 6, data dir); the workdir is shared by the
  session: tests damage copies of it."""
  data_config, _ = tiny_data
  assert tiny_config(data_config.data.data_dir).train == (
      data_config.train)  # the steps the shared workdir was trained to
  assert processes.complete_steps(tiny_workdir) == [3, 6]
  return tiny_workdir, data_config.data.data_dir


def largest_data_file(step_dir):
  """The biggest array-data file of a step (the one a disk error hits)."""
  files = [os.path.join(root, name) for root, _, names in os.walk(step_dir)
           for name in names if f'{os.sep}d{os.sep}' in root + os.sep]
  return max(files, key=os.path.getsize)


def truncate(step_dir):
  """Every array-data file of the step cut to half its size: with the
  largest file alone cut, orbax now and then restored the step intact
  (the bytes it read were all in the first half)."""
  for root, _, names in os.walk(step_dir):
    if f'{os.sep}d{os.sep}' in root + os.sep:
      for name in names:
        path = os.path.join(root, name)
        with open(path, 'r+b') as f:
          f.truncate(os.path.getsize(path) // 2)


def flip_bytes(step_dir):
  """256 bytes inverted in the middle of the largest file: same size."""
  path = largest_data_file(step_dir)
  middle = os.path.getsize(path) // 2
  with open(path, 'r+b') as f:
    f.seek(middle)
    damaged = bytes(b ^ 0xFF for b in f.read(256))
    f.seek(middle)
    f.write(damaged)


def remove_file(step_dir):
  os.remove(largest_data_file(step_dir))


def remove_manifest_and_truncate(step_dir):
  """An older (manifest-less) checkpoint that orbax cannot restore."""
  os.remove(os.path.join(step_dir, checkpoint_manifest.MANIFEST_NAME))
  truncate(step_dir)


DAMAGE = {'truncated': truncate, 'flipped': flip_bytes,
          'missing_file': remove_file,
          'no_manifest_truncated': remove_manifest_and_truncate}
CAUSE = {'truncated': 'bytes, the manifest says',
         'flipped': 'does not match its checksum',
         'missing_file': 'is missing',
         'no_manifest_truncated': 'restore failed: OUT_OF_RANGE'}


def damaged_copy(trained, tmp_path, kind, step=6):
  workdir = str(tmp_path / kind)
  shutil.copytree(trained[0], workdir)
  DAMAGE[kind](os.path.join(workdir, 'checkpoints', str(step)))
  return workdir


def abstract_state(workdir, **model_overrides):
  """A restore target (this process's first device) for the workdir's state,
  traced: nothing compiles."""
  config = trained_lib.load_config(workdir)
  config.model.update(model_overrides)
  return experiment.setup(config).abstract_state(
      jax.sharding.SingleDeviceSharding(jax.local_devices()[0]))


def read_step(workdir, step):
  manager = checkpoints.open_read_only(workdir)
  return manager.restore(step, args=ocp.args.StandardRestore(
      abstract_state(workdir)))


# ---------------------------------------------------------------- manifest --


def test_manifest_round_trip_and_each_kind_of_damage(tmp_path):
  step_dir = tmp_path / '7'
  (step_dir / 'default' / 'd').mkdir(parents=True)
  (step_dir / 'default' / 'd' / 'data').write_bytes(bytes(range(256)) * 40)
  (step_dir / '_METADATA').write_text('{"a": 1}')
  checkpoint_manifest.write_manifest(step_dir)
  assert sorted(os.listdir(step_dir)) == ['_METADATA', 'default',
                                          checkpoint_manifest.MANIFEST_NAME]
  assert checkpoint_manifest.read_manifest(step_dir) == checkpoint_manifest.describe_files(
      step_dir) == {'_METADATA': [8, checkpoint_manifest.file_crc32(
          step_dir / '_METADATA')], 'default/d/data': [10240, zlib.crc32(
              bytes(range(256)) * 40)]}
  assert checkpoint_manifest.integrity_problem(step_dir) is None

  data = step_dir / 'default' / 'd' / 'data'
  original = data.read_bytes()
  data.write_bytes(original[:5000])
  assert checkpoint_manifest.integrity_problem(step_dir) == (
      'default/d/data has 5000 bytes, the manifest says 10240')
  data.write_bytes(original[:5000] + b'\0' + original[5001:])
  assert 'default/d/data does not match its checksum' in (
      checkpoint_manifest.integrity_problem(step_dir))
  data.unlink()
  assert checkpoint_manifest.integrity_problem(step_dir) == 'default/d/data is missing'
  (step_dir / checkpoint_manifest.MANIFEST_NAME).write_text('{"trunc')
  assert 'integrity.json is unreadable' in checkpoint_manifest.integrity_problem(
      step_dir)
  (step_dir / checkpoint_manifest.MANIFEST_NAME).unlink()
  assert checkpoint_manifest.integrity_problem(step_dir) is None  # verified by restore


def test_layout_mismatch_names_the_first_difference():
  wanted = {'params/a': (2, 3), 'params/b': (4,)}
  assert checkpoints.layout_mismatch(dict(wanted), wanted) is None
  assert 'lacks params/b' in checkpoints.layout_mismatch(
      {'params/a': (2, 3)}, wanted)
  assert 'params/a has shape (2, 4) there, (2, 3)' in (
      checkpoints.layout_mismatch({'params/a': (2, 4), 'params/b': (4,)},
                                  wanted))


# ---------------------------------------------------------------- training --


@pytest.mark.parametrize('kind', sorted(DAMAGE))
def test_resume_falls_back_to_the_newest_good_step(trained, tmp_path, kind,
                                                   capfd):
  workdir = damaged_copy(trained, tmp_path, kind)
  manager = checkpoints.create_manager(workdir, tiny_config(trained[1]))
  step, state = checkpoints.restore_latest(manager, abstract_state(workdir))
  assert step == 3
  jax.tree.map(np.testing.assert_array_equal, state,
               read_step(trained[0], 3))
  stderr = capfd.readouterr().err.strip().splitlines()
  assert len(stderr) == 1, stderr
  assert stderr[0].startswith('warning: checkpoint step 6 is damaged (')
  assert CAUSE[kind] in stderr[0]
  # Moved aside, not deleted, and out of orbax's sight (fresh manager too).
  assert sorted(os.listdir(checkpoints.checkpoint_dir(workdir))) == [
      '3', 'corrupt-6']
  assert manager.all_steps() == [3]
  assert checkpoints.create_manager(
      workdir, tiny_config(trained[1])).all_steps() == [3]


def test_a_second_damaged_step_6_keeps_the_first(trained, tmp_path):
  workdir = damaged_copy(trained, tmp_path, 'truncated')
  first = checkpoints.checkpoint_dir(workdir) / 'corrupt-6'
  first.mkdir()
  manager = checkpoints.create_manager(workdir, tiny_config(trained[1]))
  assert checkpoints.restore_latest(manager, abstract_state(workdir))[0] == 3
  assert sorted(os.listdir(checkpoints.checkpoint_dir(workdir))) == [
      '3', 'corrupt-6', 'corrupt-6.2']


def test_resumed_run_after_fallback_equals_the_uninterrupted_one(trained,
                                                                 tmp_path):
  workdir = damaged_copy(trained, tmp_path, 'flipped')
  train.train_and_evaluate(tiny_config(trained[1]), workdir)
  assert processes.complete_steps(workdir) == [3, 6]
  jax.tree.map(np.testing.assert_array_equal, read_step(workdir, 6),
               read_step(trained[0], 6))
  # The new step 6 has its manifest, and it verifies.
  assert checkpoint_manifest.read_manifest(
      checkpoints.checkpoint_dir(workdir) / '6') is not None
  assert checkpoint_manifest.integrity_problem(
      checkpoints.checkpoint_dir(workdir) / '6') is None


def test_a_step_without_manifest_is_verified_by_restore(trained, tmp_path):
  workdir = str(tmp_path / 'older')
  shutil.copytree(trained[0], workdir)
  os.remove(os.path.join(workdir, 'checkpoints', '6',
                         checkpoint_manifest.MANIFEST_NAME))
  manager = checkpoints.create_manager(workdir, tiny_config(trained[1]))
  step, _ = checkpoints.restore_latest(manager, abstract_state(workdir))
  assert step == 6
  assert processes.complete_steps(workdir) == [3, 6]


def test_no_good_step_is_one_error_and_nothing_moves(trained, tmp_path):
  workdir = damaged_copy(trained, tmp_path, 'truncated')
  flip_bytes(os.path.join(workdir, 'checkpoints', '3'))
  before = sorted(os.listdir(checkpoints.checkpoint_dir(workdir)))
  manager = checkpoints.create_manager(workdir, tiny_config(trained[1]))
  with pytest.raises(checkpoints.CheckpointError) as error:
    checkpoints.restore_latest(manager, abstract_state(workdir))
  message = str(error.value)
  assert '\n' not in message
  assert 'step 6: ' in message and 'step 3: ' in message
  assert 'nothing was moved' in message
  assert sorted(os.listdir(checkpoints.checkpoint_dir(workdir))) == before


def test_another_state_structure_is_one_line_not_a_fallback(trained,
                                                            tmp_path):
  workdir = str(tmp_path / 'other_config')
  shutil.copytree(trained[0], workdir)
  manager = checkpoints.create_manager(workdir, tiny_config(trained[1]))
  with pytest.raises(checkpoints.CheckpointError,
                     match=r'step 6 .* another config or code version: .* '
                     r'has shape \(32, 11\) there, \(48, 11\)'):
    checkpoints.restore_latest(manager, abstract_state(workdir, width=48))
  assert processes.complete_steps(workdir) == [3, 6]


# ------------------------------------------------------------- readers --


@pytest.mark.parametrize('kind', sorted(DAMAGE))
def test_a_reader_names_the_damaged_step_and_the_good_ones(trained, tmp_path,
                                                           kind):
  workdir = damaged_copy(trained, tmp_path, kind)
  with pytest.raises(checkpoints.CheckpointError) as error:
    trained_lib.load_trained(workdir)
  message = str(error.value)
  assert message.startswith('checkpoint step 6 in ') and '\n' not in message
  assert CAUSE[kind] in message
  assert message.endswith('steps that verify: [3] (--checkpoint_step=3)')
  assert processes.complete_steps(workdir) == [3, 6]  # readers move nothing
  assert trained_lib.load_trained(workdir, checkpoint_step=3).step == 3


def test_render_main_on_a_damaged_step_is_one_line(trained, tmp_path):
  """A restore that fails inside orbax (no manifest to catch the damage
  first): its asyncio and TensorStore noise stays off the output."""
  workdir = damaged_copy(trained, tmp_path, 'no_manifest_truncated')
  run = Run(processes.render_command(workdir, tmp_path / 'out',
                                     '--split=val'),
            num_devices=1, log_path=tmp_path / 'render.log')
  assert run.wait(TIMEOUT_S) == 1
  lines = run.output().strip().splitlines()
  assert len(lines) == 1, run.output()[-3000:]
  assert lines[0].startswith('error: checkpoint step 6 in ')
  assert CAUSE['no_manifest_truncated'] in lines[0]
  assert lines[0].endswith('(--checkpoint_step=3)')


# ---------------------------------------------------------- two processes --


def test_two_processes_fall_back_to_the_same_step(trained, tmp_path):
  """2 processes x 2 devices: step 6 fails to restore (no manifest to catch
  it first) on both, both agree and restore step 3, step 6 is moved once.

  Run to step 3, the step they resume from: nothing to train or compile,
  which keeps this test to the restore.
  """
  workdir = damaged_copy(trained, tmp_path, 'no_manifest_truncated')
  port = free_port()
  command = lambda i: train_command(
      workdir, trained[1], {'num_steps': EVERY, 'checkpoint_every': EVERY},
      *distributed_flags(port, 2, i))
  runs = [Run(command(i), num_devices=2, log_path=tmp_path / f'p{i}.log')
          for i in range(2)]
  try:
    for run in runs:
      assert run.wait(TIMEOUT_S) == 0, run.output()[-3000:]
  finally:
    for run in runs:
      run.kill()
  outputs = [informative_lines(run.output()) for run in runs]
  assert len(outputs[0]) == 2, outputs[0]
  assert outputs[0][0].startswith('warning: checkpoint step 6 is damaged (')
  assert CAUSE['no_manifest_truncated'] in outputs[0][0]
  assert outputs[0][1].startswith('Resuming from the checkpoint at step 3 ')
  assert not outputs[1], outputs[1]
  assert sorted(os.listdir(checkpoints.checkpoint_dir(workdir))) == [
      '3', 'corrupt-6']


def informative_lines(output):
  """A run's output without its progress bar and gloo's connection lines.

  gloo's "[Gloo] Rank 0 is connected to 1 peer ranks ..." comes from C++
  and may be cut in two by the progress bar's carriage returns, hence the
  match on its text as well as its prefix.
  """
  return [line for line in output.replace('\r', '\n').splitlines()
          if line.strip() and not line.startswith(('train:', '[Gloo]'))
          and 'peer ranks' not in line]
