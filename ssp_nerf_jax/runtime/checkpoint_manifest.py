"""A checkpoint step's `integrity.json` (size, CRC-32 per file) and its check.

orbax notices truncated or missing files only deep in an asynchronous restore,
and bytes changed in place not at all."""
import json
import os
import zlib
from typing import Optional

from ssp_nerf_jax.runtime import files

MANIFEST_NAME = 'integrity.json'
MANIFEST_FORMAT = 1
_MANIFEST_PREFIX = MANIFEST_NAME.split('.')[0] + '.'
_READ_BYTES = 8 << 20


def file_crc32(path) -> int:
  """CRC-32 of a file's bytes: fast, standard library, enough to find damage."""
  crc = 0
  with open(path, 'rb') as f:
    while chunk := f.read(_READ_BYTES):
      crc = zlib.crc32(chunk, crc)
  return crc


def checkpoint_files(step_dir) -> list[str]:
  """Sorted relative '/'-paths of a step's files, bar the manifest."""
  step_dir = os.fspath(step_dir)
  names = []
  for root, _, file_names in os.walk(step_dir):
    for name in file_names:
      relative = os.path.relpath(os.path.join(root, name), step_dir)
      # Also skips integrity.tmp.json.
      if not relative.startswith(_MANIFEST_PREFIX):
        names.append(relative.replace(os.sep, '/'))
  return sorted(names)


def describe_files(step_dir) -> dict[str, list[int]]:
  """{relative path: [size in bytes, CRC-32]} of a step's files."""
  step_dir = os.fspath(step_dir)
  return {name: [os.path.getsize(os.path.join(step_dir, name)),
                 file_crc32(os.path.join(step_dir, name))]
          for name in checkpoint_files(step_dir)}


def write_manifest(step_dir) -> None:
  """Records the step's files in `<step_dir>/integrity.json`, atomically."""
  manifest = {'format': MANIFEST_FORMAT, 'checksum': 'crc32',
              'files': describe_files(step_dir)}
  files.write_json(os.path.join(os.fspath(step_dir), MANIFEST_NAME), manifest,
                   sync=True, indent=0, sort_keys=True)


def read_manifest(step_dir) -> Optional[dict[str, list[int]]]:
  """The manifest's {file: [size, crc]}; None if none, ValueError if damaged."""
  path = os.path.join(os.fspath(step_dir), MANIFEST_NAME)
  try:
    with open(path) as f:
      manifest = json.load(f)
  except FileNotFoundError:
    return None
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ValueError(f'{MANIFEST_NAME} is unreadable ({e})') from None
  if (not isinstance(manifest, dict) or
      manifest.get('format') != MANIFEST_FORMAT):
    raise ValueError(f'{MANIFEST_NAME} has an unknown format')
  return manifest['files']


def integrity_problem(step_dir) -> Optional[str]:
  """Why a step's files do not match its manifest; None if they do or none.

  Sizes go first: a truncated or missing file costs no reading."""
  step_dir = os.fspath(step_dir)
  try:
    expected = read_manifest(step_dir)
  except ValueError as e:
    return str(e)
  if expected is None:
    return None
  for name, (size, _) in sorted(expected.items()):
    path = os.path.join(step_dir, name)
    if not os.path.isfile(path):
      return f'{name} is missing'
    if os.path.getsize(path) != size:
      return (f'{name} has {os.path.getsize(path)} bytes, the manifest says '
              f'{size}')
  for name, (_, crc) in sorted(expected.items()):
    if file_crc32(os.path.join(step_dir, name)) != crc:
      return f'{name} does not match its checksum (changed in place)'
  return None
