"""The package's shape: one room per role, dependencies pointing down the data flow, no import cycle, no
command imported by the library, no absl flag registered by importing a library module, and models without
TensorFlow."""

import ast
import subprocess
import sys

import pytest

from tests import paths

PACKAGE = paths.ROOT / 'vivit_jax'
ROLES = {'config', 'models', 'data', 'train', 'eval', 'checkpoints', 'serving', 'experiments', 'cli'}
TOP_LEVEL_FILES = {'__init__.py', 'main.py', 'tasks.py', 'sharding.py', 'paths.py'}
COMMANDS = 'commands'  # cli/ and main.py: the only rooms that may import each other at the top.
# Rooms from the bottom of the data flow up: a module may import its own room and the rooms of lower layers only.
LAYERS = [
    {'vivit_jax', 'tasks', 'paths'},
    {'config'},
    {'models', 'data', 'sharding'},
    {'checkpoints'},
    {'eval'},
    {'train', 'serving'},
    {'experiments'},
    {COMMANDS},
]


def module_names():
  """{module name: file} of every module of the package."""
  out = {}
  for path in sorted(PACKAGE.rglob('*.py')):
    parts = path.relative_to(paths.ROOT).with_suffix('').parts
    name = '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)
    out[name] = path
  return out


def import_graph():
  """{module: {modules it imports}}, from every import statement (functions' included), resolved to modules."""
  modules = module_names()
  graph = {name: set() for name in modules}
  for name, path in modules.items():
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ''
        if node.level:
          parent = package.split('.')[:len(package.split('.')) - node.level + 1]
          base = '.'.join(parent + ([base] if base else []))
        targets = [f'{base}.{a.name}' if f'{base}.{a.name}' in modules else base for a in node.names]
      else:
        continue
      for target in targets:
        while target and target not in modules:
          target = target.rpartition('.')[0]
        if target and target != name:
          graph[name].add(target)
  return graph


def room(module):
  parts = module.split('.')
  if len(parts) == 1:
    return 'vivit_jax'
  if parts[1] in ('cli', 'main'):
    return COMMANDS
  return parts[1]


def layer(module):
  return next(i for i, rooms in enumerate(LAYERS) if room(module) in rooms)


def test_one_room_per_role_and_only_four_files_at_the_top():
  subpackages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / '__init__.py').is_file()}
  assert subpackages == ROLES
  assert {p.name for p in PACKAGE.glob('*.py')} <= TOP_LEVEL_FILES
  assert {'transforms', 'ingest'} <= {p.name for p in (PACKAGE / 'data').iterdir() if p.is_dir()}
  for module in module_names():  # Every module belongs to a layer of the data flow.
    layer(module)


def strongly_connected(graph):
  """Tarjan's strongly connected components with more than one module."""
  index, low, stack, on_stack, components, counter = {}, {}, [], set(), [], [0]

  def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on_stack.add(v)
    for w in graph[v]:
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = set()
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.add(w)
        if w == v:
          break
      if len(component) > 1:
        components.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return components


def without_package_to_child_edges(graph):
  """A package's `__init__` may import its own modules (re-exports): that edge is no cycle."""
  return {m: {t for t in targets if not t.startswith(m + '.')} for m, targets in graph.items()}


def test_the_import_graph_has_no_cycle():
  assert strongly_connected(without_package_to_child_edges(import_graph())) == []


def test_the_cycle_check_finds_a_cycle():
  assert strongly_connected({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]


def upward_imports(graph):
  return sorted(f'{m} -> {t}' for m, targets in graph.items() for t in targets
                if room(t) != room(m) and layer(t) >= layer(m))


def test_dependencies_point_down_the_data_flow():
  assert upward_imports(import_graph()) == []


def test_the_direction_check_finds_an_upward_import():
  graph = {'vivit_jax.models.blocks': {'vivit_jax.train.loop'}, 'vivit_jax.train.loop': {'vivit_jax.models'},
           'vivit_jax.data.base': {'vivit_jax.models.blocks'}}
  assert upward_imports(graph) == ['vivit_jax.data.base -> vivit_jax.models.blocks',
                                   'vivit_jax.models.blocks -> vivit_jax.train.loop']


def test_no_library_module_imports_a_command():
  graph = import_graph()
  offenders = [f'{m} -> {t}' for m, targets in graph.items() for t in targets
               if room(t) == COMMANDS and room(m) != COMMANDS]
  assert offenders == []


def _python(code):
  return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=paths.ROOT,
                        timeout=600, check=False)


def test_importing_library_modules_registers_no_absl_flag():
  library = sorted(m for m in module_names() if room(m) != COMMANDS)
  code = f'''
import importlib
from absl import flags
for name in {library!r}:
  importlib.import_module(name)
ours = sorted(m for m in flags.FLAGS.flags_by_module_dict() if m.startswith('vivit_jax'))
assert not ours, ours
flags.DEFINE_string('config', None, 'a program of its own may define --config')
flags.DEFINE_string('workdir', None, 'and --workdir')
print('ok', len(ours))
'''
  result = _python(code)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.split() == ['ok', '0']


@pytest.mark.parametrize('module', ['vivit_jax.models', 'vivit_jax.config', 'vivit_jax.tasks'])
def test_models_and_configs_do_not_import_tensorflow(module):
  result = _python(f'import sys, {module}; print("tensorflow" in sys.modules)')
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip() == 'False'


def test_the_model_benchmark_runs_without_tensorflow():
  result = _python('import sys, vivit_jax.experiments.benchmarks.model, vivit_jax.train.step; '
                   'print("tensorflow" in sys.modules)')
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip() == 'False'
