"""Errors that mean "bad input or settings", reported as one line, no trace."""
import os
import tempfile


class UserError(Exception):
  """Invalid user input (config value, file, folder); the message names it."""


class DatasetError(UserError, ValueError):
  """Bad dataset settings or source folder; the message names the cause."""


def ensure_writable_dir(path, label, error=UserError):
  """Creates folder `path` and checks a file can really be written there.

  A real write, not os.access: root passes access checks even on a
  read-only mount.

  Raises:
    `error` (a UserError type) naming `label` and `path` in one line.
  """
  try:
    os.makedirs(path, exist_ok=True)
    with tempfile.TemporaryFile(dir=path):
      pass
  except OSError as e:
    raise error(f'{label} {path} is not writable: {e.strerror or e}') from None
