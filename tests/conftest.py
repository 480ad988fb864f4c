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

# `configs` lives at the repository root, next to this folder.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
