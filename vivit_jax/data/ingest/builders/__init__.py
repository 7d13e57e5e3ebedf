"""TFDS builders that prepare video datasets from files the user downloaded (TFDS's `manual_dir`).

    summary = prepare_tfds('kinetics', input_dir='~/k400', output_dir='~/tensorflow_datasets')
    builder = get_builder('kinetics400', data_dir='~/tensorflow_datasets')
    ds = builder.as_dataset(split='train')   # {'video', 'label', 'video_id', 'label_text'}

The builders are registered with TFDS under names prefixed 'vivit_' (TFDS has its own `ucf101` and may
add Kinetics or SSv2 builders; names must be unique), so after importing this package
`tfds.load('vivit_kinetics400', data_dir=...)` works too. `BUILDERS` maps the short names used in
configs and on the command line to the classes. Nothing is downloaded: preparing reads `manual_dir` only.

Decisions:
- Unlabeled videos (Kinetics-700 and SSv2 test) stay in their split with label -1 and label_text '', so
  every split has the same features.
- The class list comes from the download's annotations over all splits, in `annotations.label_names`'s
  stable sorted order, whichever splits are prepared.
- fps and short side are a BuilderConfig (they change the data on disk): the default config
  'fps10_short256' is DMVR's setting; others get their own config, e.g. 'fps25_short320'.
- Skipped videos and their reasons go to `report.json` in the prepared dataset's directory
  (`<data_dir>/<name>/<config>/<version>/report.json`, also `builder.report_path`).
"""

import difflib
import tempfile
from typing import Any, Dict, Optional, Sequence, Type

import tensorflow_datasets as tfds

from vivit_jax.config.validation import ConfigError
from vivit_jax.data.ingest import annotations
from vivit_jax.data.ingest.builders.base import config_name
from vivit_jax.data.ingest.builders.base import DEFAULT_CONFIG
from vivit_jax.data.ingest.builders.base import make_config
from vivit_jax.data.ingest.builders.base import ManualVideoBuilder
from vivit_jax.data.ingest.builders.base import REPORT_FILENAME
from vivit_jax.data.ingest.builders.base import UNLABELED
from vivit_jax.data.ingest.builders.base import VideoBuilderConfig
from vivit_jax.data.ingest.builders.kinetics import Kinetics
from vivit_jax.data.ingest.builders.kinetics import Kinetics400
from vivit_jax.data.ingest.builders.kinetics import Kinetics600
from vivit_jax.data.ingest.builders.kinetics import Kinetics700
from vivit_jax.data.ingest.builders.something_something import SomethingSomethingV2
from vivit_jax.data.ingest.builders.video_folder import VideoFolder

BUILDERS: Dict[str, Type[ManualVideoBuilder]] = {
    'kinetics400': Kinetics400,
    'kinetics600': Kinetics600,
    'kinetics700': Kinetics700,
    'something_something_v2': SomethingSomethingV2,
    'video_folder': VideoFolder,
    'kinetics': Kinetics,  # Any class count (subsets, Kinetics-700-2020, ...).
}

LAYOUT_BUILDERS = {'kinetics': 'kinetics', 'ssv2': 'something_something_v2', 'folder': 'video_folder'}
_KINETICS_BY_NUM_CLASSES = {400: 'kinetics400', 600: 'kinetics600', 700: 'kinetics700'}


def _unknown(kind: str, name: str, valid: Sequence[str], key: str = '') -> ConfigError:
  """The error for a name that is none of `valid`: a ConfigError (a ValueError) naming the setting `key` that
  holds it (a config key or a flag), the closest valid name and all of them."""
  close = difflib.get_close_matches(name, valid, n=1)
  hint = f"did you mean '{close[0]}'? " if close else ''
  where = f'{key!r} is {name!r}, not a known {kind}' if key else f'unknown {kind} {name!r}'
  return ConfigError(f'{where}; {hint}expected one of {sorted(valid)}')


def builder_class(name: str, key: str = '') -> Type[ManualVideoBuilder]:
  """The builder class for a short name ('kinetics400') or its registered name ('vivit_kinetics400'); an
  unknown name is a ConfigError naming `key`, the setting it comes from (e.g. 'dataset_configs.tfds_name')."""
  by_registered = {cls.name: cls for cls in BUILDERS.values()}
  if name in BUILDERS:
    return BUILDERS[name]
  if name in by_registered:
    return by_registered[name]
  raise _unknown('video builder', name, list(BUILDERS), key)


def get_builder(name: str, data_dir: str, *, fps: Optional[float] = None,
                short_side: Optional[int] = None, **kwargs: Any) -> tfds.core.DatasetBuilder:
  """The builder `name` (a key of BUILDERS) reading and writing under `data_dir`.

  Args:
    name: a key of BUILDERS or a registered name such as 'vivit_kinetics400'.
    data_dir: TFDS data directory (the dataset goes to `<data_dir>/<registered name>/<config>/<version>`).
    fps: frames per second to keep (None: the default 10; 0: the source's rate); selects the
      BuilderConfig together with short_side.
    short_side: shorter frame side in pixels after resizing (None: the default 256; 0: the source's size).
    **kwargs: passed to the builder: `config` (instead of fps/short_side), `version`, `splits`,
      `workers` (decoding threads).

  Returns:
    The builder; call `download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=...))`
    to prepare it, `as_dataset(split=...)` to read it.
  """
  cls = builder_class(name)
  if fps is not None or short_side is not None:
    if 'config' in kwargs:
      raise ValueError('get_builder: pass either config or fps/short_side, not both')
    config = make_config(DEFAULT_CONFIG.fps if fps is None else fps,
                         DEFAULT_CONFIG.short_side if short_side is None else short_side)
    # TFDS rejects a custom config named like a predefined one: use the predefined one by name.
    kwargs['config'] = config.name if config.name in cls.builder_configs else config
  return cls(data_dir=data_dir, **kwargs)


def builder_name_for_layout(layout: str, input_dir: str) -> str:
  """The BUILDERS key that prepares `layout`; Kinetics by the class count of its CSVs."""
  if layout not in LAYOUT_BUILDERS:
    raise _unknown('layout', layout, list(LAYOUT_BUILDERS))
  if layout != 'kinetics':
    return LAYOUT_BUILDERS[layout]
  entries = annotations.kinetics_entries(input_dir)
  num_classes = len(annotations.label_names(entries, layout='kinetics', input_dir=input_dir))
  return _KINETICS_BY_NUM_CLASSES.get(num_classes, 'kinetics')


def prepare_tfds(layout: str, input_dir: str, output_dir: str, fps: float = 10, short_side: int = 256,
                 splits: Optional[Sequence[str]] = None, workers: int = 1) -> Dict[str, Any]:
  """Prepares the download in `input_dir` as a TFDS dataset under `output_dir`; nothing is downloaded.

  An already prepared dataset (same builder, fps and short side) is reused, not rebuilt.

  Args:
    layout: 'kinetics' (Kinetics-400/600/700 by the class count of the CSVs, any other count with the
      generic 'vivit_kinetics'), 'ssv2' or 'folder'.
    input_dir: the download (TFDS's manual_dir); see the builder's MANUAL_DOWNLOAD_INSTRUCTIONS.
    output_dir: TFDS data_dir.
    fps: frames per second kept (0: the source's rate).
    short_side: shorter frame side in pixels after resizing (0: the source's size).
    splits: prepare only these splits (default: every split of the download).
    workers: threads decoding videos.

  Returns:
    {'builder': registered name, 'name': BUILDERS key, 'config', 'data_dir' (the dataset's directory),
     'num_classes', 'splits': {split: examples written}, 'skipped': number of videos skipped,
     'skipped_per_split': {split: n}, 'partial': number of videos stored partial (fewer frames decoded than
     declared), 'files': {'found', 'written', 'partial', 'skipped', 'other_files'} (every video file below
     input_dir once), 'report': path of report.json}.
  """
  name = builder_name_for_layout(layout, input_dir)
  builder = get_builder(name, output_dir, fps=fps, short_side=short_side, splits=splits, workers=workers)
  download_config = tfds.download.DownloadConfig(manual_dir=input_dir, try_download_gcs=False)
  with tempfile.TemporaryDirectory() as unused_download_dir:  # Nothing is downloaded; keep output_dir tidy.
    builder.download_and_prepare(download_dir=unused_download_dir, download_config=download_config)
  report = builder.load_report()
  return {
      'builder': builder.name,
      'name': name,
      'config': builder.builder_config.name,
      'data_dir': builder.data_dir,
      'num_classes': builder.info.features['label'].num_classes,
      'splits': {split: info.num_examples for split, info in sorted(builder.info.splits.items())},
      'skipped': report['num_skipped'],
      'skipped_per_split': {split: c['skipped'] for split, c in report['splits'].items()},
      'partial': report.get('num_partial', 0),  # Absent from reports written before partial videos were counted.
      'files': report.get('files'),
      'report': builder.report_path,
  }


__all__ = [
    'BUILDERS', 'DEFAULT_CONFIG', 'Kinetics', 'Kinetics400', 'Kinetics600', 'Kinetics700',
    'LAYOUT_BUILDERS', 'ManualVideoBuilder', 'REPORT_FILENAME', 'SomethingSomethingV2', 'UNLABELED',
    'VideoBuilderConfig', 'VideoFolder', 'builder_class', 'builder_name_for_layout', 'config_name',
    'get_builder', 'make_config', 'prepare_tfds',
]
