"""Where the tests find the repository's files."""

import pathlib

ROOT = pathlib.Path(__file__).parents[1]  # The repository.
FIXTURES = ROOT / 'tests' / 'fixtures'
