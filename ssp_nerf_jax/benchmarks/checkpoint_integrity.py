"""What the checkpoint manifest costs against the save it seals.

  python -m ssp_nerf_jax.benchmarks.checkpoint_integrity --config=configs/default.py

Saves a train state of the config's shapes (random values: zstd cannot
shrink them, as it cannot shrink trained weights) --repeats times into a
temporary directory, each save timed until orbax has finished it, then the
manifest written (`checkpoint_manifest.write_manifest`, as training does) and
verified (`checkpoint_manifest.integrity_problem`, as a restore does).  Prints one
JSON object of medians:
  checkpoint_mib        bytes of one step directory
  save_s                orbax save, from the call until finished
  manifest_s            writing the manifest (CRC-32 of every file)
  manifest_percent      manifest_s / save_s, in percent
  verify_s              checking the files against the manifest
  restore_s             orbax restore of the same step
  verify_percent        verify_s / restore_s, in percent
"""
import json
import os
import statistics
import tempfile
import time

from absl import app
from absl import flags
import jax
from ml_collections import config_flags
import numpy as np
import orbax.checkpoint as ocp

from ssp_nerf_jax.benchmarks import fake_data
from ssp_nerf_jax.runtime import checkpoint_manifest
from ssp_nerf_jax.runtime import checkpoints
from ssp_nerf_jax.runtime import parallel
from ssp_nerf_jax.training import experiment


def random_state(config, mesh):
  """A train state of the config's shapes, random, replicated on `mesh`."""
  abstract = experiment.setup(
      config, mesh, scene=fake_data.random_scene(config)).abstract_state()
  rng = np.random.default_rng(0)
  host = jax.tree.map(
      lambda s: rng.standard_normal(s.shape).astype(s.dtype), abstract)
  return parallel.replicate(host, mesh), abstract


def directory_bytes(path) -> int:
  return sum(os.path.getsize(os.path.join(root, name))
             for root, _, names in os.walk(path) for name in names)


def timed(fn):
  """(seconds, result) of `fn()`."""
  tick = time.perf_counter()
  result = fn()
  return time.perf_counter() - tick, result


def measure(config, repeats, devices=None):
  """The figures of the module docstring; the state replicated on `devices`
  (default: all)."""
  mesh = parallel.make_data_mesh(devices)
  state, abstract = random_state(config, mesh)
  figures = {'save_s': [], 'manifest_s': [], 'verify_s': [], 'restore_s': []}
  with tempfile.TemporaryDirectory() as workdir:
    manager = ocp.CheckpointManager(
        checkpoints.checkpoint_dir(workdir),
        item_handlers=ocp.StandardCheckpointHandler())
    for step in range(1, repeats + 1):
      def save(step=step):
        manager.save(step, args=ocp.args.StandardSave(state))
        manager.wait_until_finished()
      figures['save_s'].append(timed(save)[0])
      step_dir = checkpoints.step_path(manager, step)
      figures['manifest_s'].append(
          timed(lambda: checkpoint_manifest.write_manifest(step_dir))[0])
      seconds, problem = timed(lambda: checkpoint_manifest.integrity_problem(step_dir))
      assert problem is None, problem
      figures['verify_s'].append(seconds)
      figures['restore_s'].append(timed(lambda: jax.block_until_ready(
          manager.restore(step, args=ocp.args.StandardRestore(abstract))))[0])
    size = directory_bytes(step_dir)
    manager.close()
  result = {name: statistics.median(values) for name, values in
            figures.items()}
  result['manifest_percent'] = 100 * result['manifest_s'] / result['save_s']
  result['verify_percent'] = 100 * result['verify_s'] / result['restore_s']
  result['checkpoint_mib'] = size / 2**20
  result['repeats'] = repeats
  return result


def define_flags():
  config_flags.DEFINE_config_file('config', 'configs/default.py',
                                  'Config whose train state is saved.')
  flags.DEFINE_integer('repeats', 5, 'Saves timed (medians reported).')


def main(argv):
  del argv
  print(json.dumps(measure(flags.FLAGS.config, flags.FLAGS.repeats),
                   indent=1))


if __name__ == '__main__':
  define_flags()  # here, not at import: tests import this module
  app.run(main)
