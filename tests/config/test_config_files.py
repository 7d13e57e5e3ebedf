"""A config file that cannot give a config (not Python, not there, raising, exiting, returning something else) is
a ConfigError naming the file; nothing escapes as another exception, SystemExit included."""

import pytest

from vivit_jax.config import ConfigError, import_config_file, load_config

VALID = ('from vivit_jax.config import defaults\n\n\ndef get_config():\n  config = defaults.get_config()\n'
         '  config.dataset_configs.num_classes = 3\n  return config\n')


def config_error(spec):
  with pytest.raises(ConfigError) as info:
    load_config(spec)
  return str(info.value)


@pytest.mark.parametrize('name', ['config.txt', 'config.yaml', 'config', 'config.py.bak'])
def test_a_file_that_is_not_python_is_named(tmp_path, name):
  path = tmp_path / name
  path.write_text(VALID)  # Valid Python under another name: still refused, before anything runs.
  message = config_error(str(path))
  assert message.startswith(str(path)) and "expected a Python config file ending in '.py'" in message


def test_import_config_file_refuses_a_file_that_is_not_python(tmp_path):
  (tmp_path / 'base.cfg').write_text(VALID)
  with pytest.raises(ConfigError, match=r"base\.cfg: expected a Python config file"):
    import_config_file('base.cfg', relative_to=str(tmp_path / 'x.py'))


def test_a_directory_and_a_missing_file_are_named(tmp_path):
  folder = tmp_path / 'folder.py'
  folder.mkdir()
  assert config_error(str(folder)) == f'{folder}: is a directory; expected a config file'
  assert config_error(str(tmp_path / 'missing.py')) == f'config file not found: {tmp_path / "missing.py"}'


@pytest.mark.parametrize('code, status', [('sys.exit()', None), ('sys.exit(0)', 0), ('sys.exit(3)', 3),
                                          ("sys.exit('bye')", "'bye'"), ('raise SystemExit(1)', 1)])
def test_sys_exit_while_importing_is_a_config_error(tmp_path, code, status):
  path = tmp_path / 'exits.py'
  path.write_text(f'import sys\n{code}\n')
  message = config_error(str(path))
  assert message == f'{path}: importing the config file called sys.exit({status}); a config file must not exit'


def test_sys_exit_in_get_config_is_a_config_error(tmp_path):
  path = tmp_path / 'exits.py'
  path.write_text('import sys\n\n\ndef get_config(arg=None):\n  sys.exit(2)\n')
  assert config_error(str(path)) == f'{path}: get_config() called sys.exit(2); a config file must not exit'
  assert config_error(f'{path}:tiny').startswith(f"{path}: get_config('tiny') called sys.exit(2)")


def test_os_exit_is_a_config_error_and_the_process_goes_on(tmp_path):
  path = tmp_path / 'hard.py'
  path.write_text('import os\nos._exit(0)\n')
  assert config_error(str(path)) == f'{path}: importing the config file called os._exit(0); a config file must not exit'
  path.write_text('import os\n\n\ndef get_config():\n  os._exit(4)\n')
  assert config_error(str(path)) == f'{path}: get_config() called os._exit(4); a config file must not exit'
  import os  # pylint: disable=import-outside-toplevel
  assert os._exit.__name__ == '_exit'  # pylint: disable=protected-access  # Restored.


def test_a_keyboard_interrupt_raised_by_get_config_names_the_file(tmp_path):
  path = tmp_path / 'interrupts.py'
  path.write_text('def get_config():\n  raise KeyboardInterrupt\n')
  assert config_error(str(path)) == f'{path}: get_config() raised KeyboardInterrupt'


def test_an_exception_in_get_config_names_the_file(tmp_path):
  path = tmp_path / 'raises.py'
  path.write_text("def get_config():\n  raise RuntimeError('no dataset here')\n")
  assert config_error(str(path)) == f'{path}: get_config() raised RuntimeError: no dataset here'


def test_an_exception_while_importing_names_the_file(tmp_path):
  path = tmp_path / 'raises.py'
  path.write_text('import a_module_that_does_not_exist\n')
  message = config_error(str(path))
  assert message.startswith(f'{path}: importing the config file raised ModuleNotFoundError')


@pytest.mark.parametrize('body, found', [('return None', 'returned NoneType; expected a ConfigDict (does get_config '
                                                         'end with `return config`?)'),
                                         ('return [1, 2]', 'returned list; expected a ConfigDict')])
def test_get_config_returning_something_else(tmp_path, body, found):
  path = tmp_path / 'returns.py'
  path.write_text(f'def get_config():\n  {body}\n')
  assert config_error(str(path)) == f'{path}: get_config() {found}'


def test_get_config_that_is_not_a_function(tmp_path):
  path = tmp_path / 'constant.py'
  path.write_text('get_config = 3\n')
  assert config_error(str(path)) == f'{path}: get_config is int 3; expected a function'


def test_a_preset_for_a_file_without_presets(tmp_path):
  path = tmp_path / 'plain.py'
  path.write_text(VALID)
  assert config_error(f'{path}:tiny') == f"{path}: get_config() takes no preset argument; got ':tiny'"
  assert load_config(str(path)).batch_size == 64
