"""Data keys read from a folder that `vivit-prepare-data` wrote, so that a config names only
`dataset_configs.base_dir` (configs/custom_folder.py does).

A config file runs before the command line's overrides are applied, so it cannot read the folder an override names;
validation can. `validate_config` calls `resolve` once the config is merged onto the defaults (overrides included),
before the combinations are checked. It acts on a config for real videos that names no data beside `base_dir`:
`dataset_name` 'video_tfrecord_dataset' with no table set, or 'tfds' without `tfds_name` (or either without
`num_classes`). Any other config, a saved one among them (its keys are all set), is left alone.

What `report.json` gives:
- `--format=dmvr` (`base_dir/report.json`, 'format': 'dmvr'): the tables ('train@N', ...), `num_classes` and
  `examples_per_subset` of every prepared split; `label_map.json` beside it must name `num_classes` classes.
- `--format=tfds` (`base_dir/vivit_<builder>/<config>/<version>/report.json`, or `base_dir` that dataset's own
  directory, which prepare_data prints as its data_dir): `dataset_name` 'tfds', `tfds_name` ('video_folder/<config>'),
  `base_dir` the TFDS data dir, `num_classes` and `examples_per_subset` (videos written whole or partial).
`base_dir` becomes absolute (`~` expanded), so the config saved with a run finds the data from any directory.

A key that the config or an override sets is kept, and must agree with the report: a disagreement is an error naming
the key, both values and the report. The class names are not config keys: the pipeline reads them (`label_map.json`,
the TFDS ClassLabel), the trainer saves them with every checkpoint, and `describe` shows them with the resolved keys.
Only local folders are read; for a remote base_dir (gs://...) set the keys yourself.
"""

import glob
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import ml_collections

from vivit_jax import paths

REPORT_FILE = 'report.json'
LABEL_MAP_FILE = 'label_map.json'  # What prepare_data writes beside DMVR records (data.base reads the same file).
SPLITS = ('train', 'validation', 'test')
DMVR, TFDS = 'video_tfrecord_dataset', 'tfds'
_RUN_PREPARE = ('prepare the videos first: `vivit-prepare-data --layout=folder --input=VIDEOS --output=DIR`, then '
                'pass --config.dataset_configs.base_dir=DIR')
_Values = Dict[str, Any]  # Dotted config key -> the value the report gives.


class _Unprepared(Exception):
  """Why the folder cannot give the config its keys (one problem line)."""


def wants_report(config: ml_collections.ConfigDict) -> bool:
  """Whether the config leaves its data to a prepared folder's report (see the module docstring)."""
  d = config.dataset_configs
  no_classes = d.num_classes is None and not d.class_splits
  if config.dataset_name == DMVR:
    return no_classes or not any(d.tables.get(split) for split in d.tables.keys())
  if config.dataset_name == TFDS:
    return no_classes or not d.tfds_name
  return False


def resolve(config: ml_collections.ConfigDict) -> List[str]:
  """Fills the data keys `config` leaves unset from the report of the folder `base_dir` names (in place; the
  config must be unlocked); returns the problems, each naming the key or file, with what to run."""
  if not wants_report(config):
    return []
  d = config.dataset_configs
  tables_set = config.dataset_name == DMVR and any(d.tables.get(split) for split in d.tables.keys())
  if not d.base_dir:
    if d.num_classes is None and not d.class_splits and not tables_set:
      return ["'dataset_configs.base_dir' is not set: this config reads num_classes, the tables and "
              'examples_per_subset from the report.json of a folder prepared by vivit-prepare-data; ' + _RUN_PREPARE]
    return []  # Keys set by hand (the tests' tiny configs): nothing to read.
  if paths.is_remote(d.base_dir):
    return []
  try:
    report_path, report = _find_report(d.base_dir, config.dataset_name, d.tfds_name)
  except _Unprepared as e:
    return [] if tables_set else [str(e)]  # Tables set by hand: the data checks name what is missing.
  try:
    read = _dmvr_values if report.get('format') == 'dmvr' else _tfds_values
    values = read(report, report_path)
  except _Unprepared as e:
    return [str(e)]
  return _apply(config, values, report_path)


def _find_report(base_dir: str, dataset_name: str = DMVR,
                 tfds_name: Optional[str] = None) -> Tuple[str, _Values]:
  """(path, content) of the report of the prepared folder `base_dir`: a DMVR folder's, or the one TFDS dataset
  below it (the one `tfds_name` names, when given). Raises _Unprepared saying what is wrong and what to run."""
  directory = os.path.abspath(os.path.expanduser(base_dir))
  if not os.path.isdir(directory):
    found = 'is not a directory' if os.path.exists(directory) else 'not found'
    raise _Unprepared(f"'dataset_configs.base_dir' {base_dir}: {found}; expected the --output of "
                      f'vivit-prepare-data; {_RUN_PREPARE}')
  own = os.path.join(directory, REPORT_FILE)
  report = _read_json(own) if os.path.isfile(own) else None
  candidates = sorted(glob.glob(os.path.join(glob.escape(directory), 'vivit_*', '*', '*', REPORT_FILE)))
  if tfds_name:
    candidates = [c for c in candidates if _tfds_name_matches(tfds_name, c)]
  if report is not None and not (dataset_name == TFDS and report.get('format') == 'dmvr' and candidates):
    return own, report  # DMVR records, or base_dir a TFDS dataset's own directory.
  if len(candidates) == 1:
    return candidates[0], _read_json(candidates[0])
  if candidates:
    names = ', '.join(_tfds_name_of(_read_json(c)) for c in candidates)
    raise _Unprepared(f"'dataset_configs.base_dir' {base_dir} holds {len(candidates)} prepared TFDS datasets "
                      f"({names}); set 'dataset_configs.tfds_name' to the one to train on")
  if tfds_name:
    raise _Unprepared(f"'dataset_configs.base_dir' {base_dir} holds no TFDS dataset '{tfds_name}' prepared by "
                      f'vivit-prepare-data (no vivit_*/CONFIG/VERSION/{REPORT_FILE} of it); {_RUN_PREPARE}')
  raise _Unprepared(f"'dataset_configs.base_dir' {base_dir} has no {REPORT_FILE} ({own} not found): it is not a "
                    f'folder prepared by vivit-prepare-data; {_RUN_PREPARE}')


def _read_json(path: str) -> _Values:
  try:
    with open(path, encoding='utf-8') as f:
      content = json.load(f)
  except (OSError, ValueError) as e:
    raise _Unprepared(f'{path}: cannot read it as JSON ({e}); rerun vivit-prepare-data to rewrite it') from e
  if not isinstance(content, dict):
    raise _Unprepared(f'{path}: expected a JSON object written by vivit-prepare-data, got {type(content).__name__}')
  return content


def _field(report: _Values, key: str, kind: type, path: str) -> Any:
  value = report.get(key)
  if not isinstance(value, kind) or isinstance(value, bool):
    raise _Unprepared(f"{path}: '{key}' is {value!r}; expected {kind.__name__} as vivit-prepare-data writes it "
                      '(rerun it to rewrite the report)')
  return value


def _count(value: Any) -> int:
  """A report's video count; anything else counts none."""
  return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _check_splits(sizes: Dict[str, int], path: str) -> None:
  """Training needs videos to train on and to validate on (the trainer validates every epoch)."""
  for split, folder in (('train', 'train/'), ('validation', 'validation/ (or val/)')):
    if not sizes.get(split):
      raise _Unprepared(f'{path}: no {split} videos (videos per split: {sizes}); expected a {folder} folder of '
                        f'class folders (or {split}.csv) in the input of vivit-prepare-data')


def _dmvr_values(report: _Values, path: str) -> _Values:
  """The keys a DMVR report gives; its label_map.json must name its classes."""
  directory = os.path.dirname(path)
  num_classes = _field(report, 'num_classes', int, path)
  tables = {s: t for s, t in _field(report, 'tables', dict, path).items() if s in SPLITS}
  sizes = {s: n for s, n in _field(report, 'examples_per_subset', dict, path).items()
           if s in tables and _count(n)}  # A split whose every video was skipped is left out.
  tables = {s: tables[s] for s in sizes}
  _check_splits(sizes, path)
  names = _label_map_names(directory)
  if len(names) != num_classes:
    raise _Unprepared(f'{os.path.join(directory, LABEL_MAP_FILE)} names {len(names)} classes, but {path} counts '
                      f'{num_classes}; rerun vivit-prepare-data to write both again')
  values = {'dataset_name': DMVR, 'dataset_configs.base_dir': directory, 'dataset_configs.num_classes': num_classes}
  values.update({f'dataset_configs.tables.{s}': t for s, t in tables.items()})
  values.update({f'dataset_configs.examples_per_subset.{s}': n for s, n in sizes.items()})
  return values


def _label_map_names(directory: str) -> List[str]:
  """The class names of the label_map.json in `directory` (what prepare_data writes beside DMVR records)."""
  path = os.path.join(directory, LABEL_MAP_FILE)
  if not os.path.isfile(path):
    raise _Unprepared(f'{path}: not found; vivit-prepare-data writes the class names there beside the records: '
                      f'rerun it (--output={directory})')
  content = _read_json(path)
  names = content.get('names')
  if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
    raise _Unprepared(f"{path}: expected {{'names': [str, ...]}} as vivit-prepare-data writes it")
  return names


def _tfds_name_of(report: _Values) -> str:
  builder = str(report.get('builder', ''))
  return f"{builder.removeprefix('vivit_')}/{report.get('config')}"


def _tfds_name_matches(tfds_name: str, report_path: str) -> bool:
  """Whether `tfds_name` ('video_folder', 'vivit_video_folder/fps5_short128', ...) names the dataset whose
  report is at `.../vivit_<builder>/<config>/<version>/report.json`."""
  version_dir = os.path.dirname(report_path)
  config_dir = os.path.dirname(version_dir)
  builder = os.path.basename(os.path.dirname(config_dir)).removeprefix('vivit_')
  name, _, config = tfds_name.partition('/')
  return name.removeprefix('vivit_') == builder and config in ('', os.path.basename(config_dir))


def _tfds_values(report: _Values, path: str) -> _Values:
  """The keys a TFDS report (in `<data_dir>/vivit_<builder>/<config>/<version>/`) gives."""
  num_classes = _field(report, 'num_classes', int, path)
  _field(report, 'builder', str, path)
  _field(report, 'config', str, path)
  splits = _field(report, 'splits', dict, path)
  sizes = {}
  for split, counts in splits.items():
    if split in SPLITS and isinstance(counts, dict):
      records = _count(counts.get('written')) + _count(counts.get('partial'))
      if records:  # TFDS writes no split without a video.
        sizes[split] = records
  _check_splits(sizes, path)
  data_dir = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(path))))
  values = {'dataset_name': TFDS, 'dataset_configs.base_dir': data_dir, 'dataset_configs.tfds_name':
            _tfds_name_of(report), 'dataset_configs.num_classes': num_classes}
  values.update({f'dataset_configs.examples_per_subset.{s}': n for s, n in sizes.items()})
  return values


def _get(config: ml_collections.ConfigDict, key: str) -> Any:
  node = config
  for part in key.split('.'):
    node = node[part]
  return node


def _set(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
  *parents, leaf = key.split('.')
  node = config
  for part in parents:
    node = node[part]
  node[leaf] = value


def _same(key: str, current: Any, wanted: Any) -> bool:
  if key == 'dataset_configs.tfds_name':  # A name that found this report names it ('video_folder', ...).
    name, _, config = str(current).partition('/')
    return (name.removeprefix('vivit_'), config or wanted.partition('/')[2]) == tuple(wanted.partition('/')[::2])
  return current == wanted


def _unset(config: ml_collections.ConfigDict, key: str, current: Any) -> bool:
  """Whether the report's value replaces `current`: an unset key, the folder the report was found from (made
  absolute), or the default dataset_name when no table is set (a folder prepared as TFDS switches it)."""
  if key == 'dataset_configs.base_dir':
    return True
  if key == 'dataset_name':
    d = config.dataset_configs
    return current == DMVR and not any(d.tables.get(split) for split in d.tables.keys())
  return current in (None, '')


def _apply(config: ml_collections.ConfigDict, values: _Values, report_path: str) -> List[str]:
  """Sets each key the config leaves unset; a key it sets must agree (else a problem naming both values)."""
  problems = []
  for key, wanted in values.items():
    current = _get(config, key)
    if _unset(config, key, current):
      _set(config, key, wanted)
    elif not _same(key, current, wanted):
      problems.append(_disagreement(key, current, wanted, report_path))
  return problems


def _disagreement(key: str, current: Any, wanted: Any, report_path: str) -> str:
  return (f"'{key}' is {current!r}, but {report_path} (written by vivit-prepare-data) gives {wanted!r}; leave the "
          "key unset to take the report's value, or point 'dataset_configs.base_dir' at the data you mean")


def describe(config: ml_collections.ConfigDict, label_names: Optional[Sequence[str]] = None) -> str:
  """One line saying what data a run reads: the dataset, where, the classes (named) and every split's videos."""
  d = config.dataset_configs
  if config.dataset_name == 'synthetic':
    where = 'generated on the fly'
  elif config.dataset_name == TFDS:
    where = f'TFDS {d.tfds_name!r} under {d.base_dir}'
  else:
    where = f'DMVR records under {d.base_dir or "."}'
  report = os.path.join(os.path.expanduser(d.base_dir), REPORT_FILE) if d.base_dir else ''
  if report and os.path.isfile(report):
    where += f' (vivit-prepare-data report {report})'
  classes = f'{d.num_classes} classes'
  if label_names:
    shown = ', '.join(list(label_names)[:10]) + (', ...' if len(label_names) > 10 else '')
    classes += f' ({shown})'
  splits = []
  for split in SPLITS:
    table = d.tables.get(split) if config.dataset_name == DMVR else None
    size = d.examples_per_subset.get(split)
    if table or size is not None:
      splits.append(f"{split} {'?' if size is None else size} videos" + (f' ({table})' if table else ''))
  return f"{where}: {classes}; {', '.join(splits) or 'no split sizes set'}"
