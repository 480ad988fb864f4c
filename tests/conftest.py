"""Test set-up: simulate several CPU devices before JAX is imported.

Every test process sees NUM_DEVICES CPU devices so that the data-parallel
code paths (meshes, shardings, collectives) always run.
"""
import os
import sys

NUM_DEVICES = 4

os.environ['XLA_FLAGS'] = (
    os.environ.get('XLA_FLAGS', '') +
    f' --xla_force_host_platform_device_count={NUM_DEVICES}')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# The tests' programs are tiny and mostly run a few times: compiling them
# costs far more than running them, so XLA skips most of its optimisation
# (LLVM -O0, no expensive passes; on a tiny-config train step it cuts the
# compile's CPU time about 5x).  Subprocesses inherit it through the
# environment, so they compile exactly what this process does.  Set it to
# 0 to test the optimised programs.
os.environ.setdefault('JAX_DISABLE_MOST_OPTIMIZATIONS', '1')

# `configs` lives at the repository root, next to this folder.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tempfile  # pylint: disable=g-import-not-at-top

import jax  # pylint: disable=g-import-not-at-top

# Tests build the same small programs many times (each training run makes new
# jitted closures); a per-session persistent cache compiles each HLO once.
jax.config.update('jax_compilation_cache_dir',
                  tempfile.mkdtemp(prefix='ssp_nerf_jax_xla_cache_'))
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)

# Session fixtures shared by the test modules (the tiny TFDS dataset).
from data_fixtures import tiny_data, tiny_workdir  # pylint: disable=g-import-not-at-top,unused-import
