"""The package's shape: short functions, no import cycles, flags only in
entry points, docstrings and comments that say what and why (no figures)."""
import ast
import io
import pathlib
import re
import tokenize

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / 'ssp_nerf_jax'
MODULES = sorted(PACKAGE.rglob('*.py'))
CONFIGS = sorted((ROOT / 'configs').glob('*.py'))
MAX_FUNCTION_LINES = 60
MAX_DOC_SHARE = 0.20
# A measured figure: decibels, speeds, speed-ups, percentages.
FIGURE = re.compile(r'\d\s*(dB|s/frame|rays/s|%)|\d(\.\d+)?x (faster|slower)')


def module_name(path):
  parts = path.relative_to(ROOT).with_suffix('').parts
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def docstrings(tree):
  """The docstring nodes of a module, its classes and functions."""
  for node in ast.walk(tree):
    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                         ast.AsyncFunctionDef)):
      first = node.body[0] if node.body else None
      if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
          and isinstance(first.value.value, str)):
        yield first


def comments(source):
  """(line, text) of every comment."""
  for token in tokenize.generate_tokens(io.StringIO(source).readline):
    if token.type == tokenize.COMMENT:
      yield token.start[0], token.string


def imported_modules(path, tree, known):
  """Package modules `path` imports, at module level or inside functions."""
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and not node.level:
      for alias in node.names:
        full = f'{node.module}.{alias.name}'
        found.add(full if full in known else node.module)
    elif isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
  return found & known - {module_name(path)}


def test_no_function_is_longer_than_the_limit():
  long = []
  for path in MODULES + CONFIGS:
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        lines = node.end_lineno - node.lineno + 1
        if lines > MAX_FUNCTION_LINES:
          long.append(f'{path.relative_to(ROOT)}:{node.name} ({lines})')
  assert not long


def test_no_import_cycles():
  known = {module_name(p) for p in MODULES}
  graph = {module_name(p): imported_modules(p, ast.parse(p.read_text()), known)
           for p in MODULES}

  def reaches(start, goal, seen):
    for nxt in graph[start]:
      if nxt == goal or (nxt not in seen and
                         reaches(nxt, goal, seen | {nxt})):
        return True
    return False
  assert not [m for m in graph if reaches(m, m, {m})]


@pytest.mark.parametrize('call', ['flags.DEFINE_', 'config_flags.DEFINE_',
                                  'app.run('])
def test_only_entry_points_define_flags_or_run(call):
  entry_points = {'cli.py', '__main__.py'}
  owners = [p.relative_to(ROOT) for p in MODULES
            if call in p.read_text() and p.name not in entry_points
            and p.parent.name != 'benchmarks']
  assert not owners


def test_docstrings_and_comments_say_what_and_why_without_figures():
  figures, doc_lines, all_lines = [], 0, 0
  for path in MODULES + CONFIGS:
    source = path.read_text()
    tree = ast.parse(source)
    documented = set()
    for node in docstrings(tree):
      documented.update(range(node.lineno, node.end_lineno + 1))
      if FIGURE.search(node.value.value):
        figures.append(f'{path.relative_to(ROOT)}:{node.lineno}')
    for line, text in comments(source):
      documented.add(line)
      if FIGURE.search(text):
        figures.append(f'{path.relative_to(ROOT)}:{line}')
    if path.is_relative_to(PACKAGE):
      nonblank = {i + 1 for i, text in enumerate(source.splitlines())
                  if text.strip()}
      doc_lines += len(documented & nonblank)
      all_lines += len(nonblank)
  assert not figures
  assert doc_lines / all_lines <= MAX_DOC_SHARE
