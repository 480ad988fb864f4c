"""Writing files so that a reader never sees half of one (atomic rename)."""
import contextlib
import json
import os
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str, sync: bool = False) -> Iterator[str]:
  """Yields a temporary path, renamed to `path` if the block ends normally.

  It keeps the extension, from which imageio and ffmpeg pick the format."""
  root, ext = os.path.splitext(path)
  tmp = f'{root}.tmp{ext}'
  try:
    yield tmp
    if sync:
      with open(tmp, 'rb') as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)
    raise


def write_text(path: str, text: str, sync: bool = False) -> None:
  """Writes `text` to `path` atomically."""
  with atomic_path(path, sync) as tmp, open(tmp, 'w') as f:
    f.write(text)


def write_json(path: str, payload: Any, sync: bool = False,
               **dump_args) -> None:
  """Writes `payload` as JSON to `path` atomically (indent 2 by default)."""
  dump_args.setdefault('indent', 2)
  write_text(path, json.dumps(payload, **dump_args), sync)
