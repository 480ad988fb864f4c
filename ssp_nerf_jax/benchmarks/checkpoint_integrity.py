"""What the checkpoint manifest costs against the save it seals (JSON).

  python -m ssp_nerf_jax.benchmarks.checkpoint_integrity --config=C

Random weights, as zstd can shrink them no more than trained ones."""
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
  """Median seconds and shares; the state is replicated on `devices`."""
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
      seconds, problem = timed(
          lambda: checkpoint_manifest.integrity_problem(step_dir))
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
  flags.DEFINE_integer('repeats', 5, 'Saves timed (medians reported).',
                       lower_bound=1)


def main(argv):
  del argv
  print(json.dumps(measure(flags.FLAGS.config, flags.FLAGS.repeats),
                   indent=1))


if __name__ == '__main__':
  define_flags()  # here, not at import: tests import this module
  app.run(main)
