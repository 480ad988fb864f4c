"""Errors that mean "bad input or settings", reported as one line, no trace."""
import os
import tempfile


class UserError(Exception):
  """Invalid user input (config value, file, folder); the message names it."""


class DatasetError(UserError, ValueError):
  """Bad dataset settings or source folder; the message names the cause."""


def ensure_writable_dir(path, label, error=UserError):
  """Creates `path` and writes a file there (root passes os.access checks)."""
  try:
    os.makedirs(path, exist_ok=True)
    with tempfile.TemporaryFile(dir=path):
      pass
  except OSError as e:
    raise error(f'{label} {path} is not writable: {e.strerror or e}') from None
