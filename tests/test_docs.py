"""The docs keep their word about files: README, docs/ and the code's comments name only files inside the
repository, and every file they name exists."""

import re
import subprocess

import pytest

from tests import paths

OUTSIDE = re.compile(r'\.\./shared|\b(PAPER|SCENIC|ARCHITECTURE|STYLE)\.md\b')
REPO_PATH = re.compile(r'(?<![\w/.])((?:configs|vivit_jax|scripts|docs|tests)/[\w/.\-]*[\w/])')


def tracked_text_files():
  listed = subprocess.run(['git', 'ls-files', '--cached', '--others', '--exclude-standard'], cwd=paths.ROOT,
                          capture_output=True, text=True, check=True).stdout.split()
  return [paths.ROOT / f for f in listed if f.endswith(('.py', '.md', '.cfg', '.toml', '.txt')) or f == 'Makefile']


def test_nothing_names_a_file_outside_the_repository():
  offenders = []
  for path in tracked_text_files():
    if path == paths.ROOT / 'tests' / 'test_docs.py':
      continue
    for number, line in enumerate(path.read_text().splitlines(), 1):
      if OUTSIDE.search(line):
        offenders.append(f'{path.relative_to(paths.ROOT)}:{number}: {line.strip()}')
  assert offenders == []


@pytest.mark.parametrize('doc', ['README.md', 'docs/ablations/synthetic_variants.md',
                                 'docs/ablations/synthetic_init.md', 'docs/ablations/synthetic_init_seeds.md'])
def test_every_repository_path_a_doc_names_exists(doc):
  text = (paths.ROOT / doc).read_text()
  missing = sorted({m for m in REPO_PATH.findall(text) if not (paths.ROOT / m.split(':')[0]).exists()})
  assert missing == []


def test_every_file_of_the_readme_layout_exists():
  text = (paths.ROOT / 'README.md').read_text()
  block = text.split('## Layout', 1)[1].split('```')[1]
  folder = paths.ROOT
  for line in block.strip().splitlines():
    head = line.split()[0] if not line.startswith(' ') else ''
    if head:
      assert (paths.ROOT / head).exists(), head
      folder = paths.ROOT / head if head.endswith('/') else paths.ROOT
    for name in re.findall(r'\b(\w+\.py)\b', line[len(head):]):
      assert list(folder.rglob(name)), f'{name} under {folder.relative_to(paths.ROOT)}'


def test_the_demo_config_states_the_readme_s_accuracy():
  """configs/synthetic.py's docstring and the README state the same demo result (the demo test checks the README's
  number against a run; this keeps the config's copy from going stale)."""
  readme = (paths.ROOT / 'README.md').read_text()
  config = (paths.ROOT / 'configs' / 'synthetic.py').read_text()
  stated = re.search(r'to (0\.\d+) `valid/accuracy` \((0\.\d+)\s+`test/accuracy`', readme)
  docstring = re.search(r'Accuracy: (0\.\d+) valid/accuracy \((0\.\d+) test/accuracy', config)
  assert stated and docstring and stated.groups() == docstring.groups(), (stated, docstring)
