"""Annotations of video datasets downloaded by the user: which videos belong to which split, with which label.

Three layouts, each a function `input_dir -> {split: [VideoEntry]}`:
- 'kinetics': the official CSVs (`label,youtube_id,time_start,time_end,split`) and videos named
  `{youtube_id}_{start:06d}_{end:06d}.{mp4,webm,mkv,avi}` anywhere below the download.
- 'ssv2': Something-Something v2's `labels.json`, `train.json`, `validation.json`, `test.json` and `{id}.webm`.
- 'folder': `{split}/{class}/{video}` folders, or `{split}.csv` files with the columns `path,label`.

Split names are normalised to 'train', 'validation' and 'test'. An annotated video whose file is not found gets
`path=None`, so that data preparation can list it as skipped rather than lose it silently.

Files are found with `video_files.walk` (each directory read once, symbolic link loops harmless). Where one
video id could name two files:
- 'kinetics' and 'ssv2': the id comes from the annotation, so one file is used (by extension preference, see
  `video_files.VIDEO_EXTENSIONS`); data preparation reports the other as unused, naming the one used.
- 'folder': both are kept, each under its relative path with the extension (`train/cat/x.mp4`, `train/cat/x.avi`)
  instead of the usual id without it (`train/cat/x`).
One file reached by two entries (a symbolic link, or a CSV that lists it twice) is written once: see
`duplicate_files`.
"""

import csv
import dataclasses
import json
import logging
import os
import re
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from vivit_jax.data.base import DataError
from vivit_jax.data.ingest import video_files
from vivit_jax.data.ingest.video_files import VIDEO_EXTENSIONS

SPLIT_ORDER = ('train', 'validation', 'test')  # Where one file is annotated in two splits, the first keeps it.
MATCHED_BY_NAME = ('kinetics', 'ssv2')  # Layouts that find a video's file by its name anywhere below.
_SPLIT_ALIASES = {'train': 'train', 'training': 'train', 'validation': 'validation', 'validate': 'validation',
                  'val': 'validation', 'valid': 'validation', 'test': 'test', 'testing': 'test'}


@dataclasses.dataclass(frozen=True)
class VideoEntry:
  """One annotated video."""
  split: str
  video_id: str  # Unique within its split; the sort key that assigns videos to shards.
  path: Optional[str]  # None: annotated, but no video file was found.
  label: Optional[str]  # Class text; None for unlabeled (test) entries.
  start: Optional[float] = None  # Seconds into the source video (Kinetics).
  end: Optional[float] = None


Entries = Dict[str, List[VideoEntry]]


def normalize_split(name: str) -> Optional[str]:
  """'validate', 'val', ... -> 'validation'; None for a name that is not a split."""
  return _SPLIT_ALIASES.get(name.strip().lower())


def _walk_files(input_dir: str) -> List[str]:
  """Every readable file below input_dir, in a stable order (see `video_files.walk`)."""
  return video_files.walk(input_dir).files


def _index_videos(files: Iterable[str]) -> Dict[str, str]:
  """File name without extension -> path; where a name occurs twice, the preferred extension, then path."""
  index = {}
  rank = {ext: i for i, ext in enumerate(VIDEO_EXTENSIONS)}
  for path in files:
    stem, ext = os.path.splitext(os.path.basename(path))
    if ext.lower() not in rank:
      continue
    old = index.get(stem)
    if old is None or (rank[ext.lower()], path) < (rank[os.path.splitext(old)[1].lower()], old):
      index[stem] = path
  return index


def _wanted(splits: Optional[Sequence[str]]) -> Optional[set]:
  if splits is None:
    return None
  wanted = set()
  for split in splits:
    name = normalize_split(split)
    if name is None:
      raise ValueError(f'unknown split {split!r}; expected train, validation (or val, validate) or test')
    wanted.add(name)
  return wanted


def _finish(entries: Dict[str, Dict[str, VideoEntry]], wanted: Optional[set]) -> Entries:
  """Per split, entries sorted by video_id; only the wanted splits."""
  return {split: [by_id[k] for k in sorted(by_id)] for split, by_id in sorted(entries.items())
          if wanted is None or split in wanted}


def _read_csv(path: str) -> List[Dict[str, str]]:
  """The rows as {column: value}, stripped; cells beyond the header's columns are ignored."""
  try:
    with open(path, newline='', encoding='utf-8-sig') as f:
      return [{k.strip(): (v or '').strip() for k, v in row.items() if k is not None} for row in csv.DictReader(f)]
  except (UnicodeDecodeError, csv.Error) as e:
    raise ValueError(f'{path}: cannot read it as a UTF-8 CSV: {e}') from e


def _split_from_file_name(path: str) -> Optional[str]:
  for word in re.split(r'[^a-z]+', os.path.splitext(os.path.basename(path))[0].lower()):
    if normalize_split(word):
      return normalize_split(word)
  return None


def _csv_header(path: str) -> List[str]:
  """The column names of a CSV (its first line); none when that line is not UTF-8 text or cannot be read."""
  try:
    with open(path, 'rb') as f:
      first = f.readline(1 << 16).decode('utf-8-sig')
    return [name.strip() for name in next(csv.reader([first]), [])]
  except (OSError, UnicodeDecodeError, csv.Error):
    return []


def kinetics_entries(input_dir: str, splits: Optional[Sequence[str]] = None) -> Entries:
  """Kinetics-400/600/700 from the official CSVs and the clips found anywhere below input_dir.

  A CSV without a 'split' column (Kinetics-700) takes the split from its file name (train, validate/val,
  test); test CSVs may have no 'label' column. Clips are matched by file name, never by folder, so split
  folders, class folders and flat downloads all work; `{youtube_id}.ext` is accepted when the full name is
  absent.
  """
  wanted = _wanted(splits)
  files = _walk_files(input_dir)
  csvs = [p for p in files if p.lower().endswith('.csv') and 'youtube_id' in _csv_header(p)]
  if not csvs:
    raise FileNotFoundError(f'{input_dir}: no Kinetics annotation CSV (columns label,youtube_id,time_start,'
                            'time_end,split) found below this directory')
  videos = _index_videos(files)
  entries: Dict[str, Dict[str, VideoEntry]] = {}
  for csv_path in csvs:
    file_split = _split_from_file_name(csv_path)
    for line, row in enumerate(_read_csv(csv_path), start=2):
      split = normalize_split(row['split']) if row.get('split') else file_split
      if split is None:
        raise ValueError(f'{csv_path}:{line}: no split (no split column, and the file name names none)')
      try:
        start, end = int(float(row['time_start'])), int(float(row['time_end']))
      except (KeyError, ValueError) as e:
        raise ValueError(f'{csv_path}:{line}: bad time_start/time_end in {row}') from e
      video_id = f"{row['youtube_id']}_{start:06d}_{end:06d}"
      path = videos.get(video_id) or videos.get(row['youtube_id'])
      entries.setdefault(split, {})[video_id] = VideoEntry(split, video_id, path, row.get('label') or None,
                                                           float(start), float(end))
  return _finish(entries, wanted)


def _find_json(files: Sequence[str], suffix: str) -> Optional[str]:
  """'labels.json' matches labels.json and something-something-v2-labels.json."""
  matches = [p for p in files if os.path.basename(p).lower().endswith(suffix)]
  return min(matches, key=lambda p: (p.count(os.sep), p)) if matches else None


def _read_json(path: str):
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise ValueError(f'{path}: cannot read JSON: {e}') from e


def ssv2_labels(input_dir: str) -> Dict[str, int]:
  """Something-Something v2's labels.json ({name: "index"}) found below input_dir."""
  path = _find_json(_walk_files(input_dir), 'labels.json')
  if path is None:
    raise FileNotFoundError(f'{input_dir}: no labels.json (Something-Something v2 class names) below it')
  labels = _read_json(path)
  if not isinstance(labels, dict):
    raise ValueError(f'{path}: expected {{"class name": "index", ...}}; found a JSON {type(labels).__name__}')
  try:
    return {str(name): int(index) for name, index in labels.items()}
  except (TypeError, ValueError) as e:
    raise ValueError(f'{path}: every class index must be an integer; {e}') from e


def ssv2_entries(input_dir: str, splits: Optional[Sequence[str]] = None) -> Entries:
  """Something-Something v2: {split}.json lists of {id, label, template, placeholders} and {id}.webm files.

  The class is the template with '[' and ']' removed, as in labels.json. A class that is not in labels.json
  keeps its text and is logged; data preparation then lists the video as skipped. Test entries (no template)
  are unlabeled.
  """
  wanted = _wanted(splits)
  files = _walk_files(input_dir)
  names = ssv2_labels(input_dir)
  videos = _index_videos(files)
  entries: Dict[str, Dict[str, VideoEntry]] = {}
  for split in ('train', 'validation', 'test'):
    path = _find_json(files, f'{split}.json')
    if path is None or (wanted is not None and split not in wanted):
      continue
    items = _read_json(path)
    if not isinstance(items, list):
      raise ValueError(f'{path}: expected a list of {{id, label, template, placeholders}} objects')
    by_id = entries.setdefault(split, {})
    for number, item in enumerate(items):
      if not isinstance(item, dict) or item.get('id') in (None, ''):
        raise ValueError(f'{path}: item {number}: expected an object with an "id"; found {str(item)[:80]}')
      video_id, template = str(item['id']), item.get('template')
      label = str(template).replace('[', '').replace(']', '') if template else None
      if label is not None and label not in names:
        logging.warning('%s: video %s has class %r, which labels.json does not list', path, video_id, label)
      by_id[video_id] = VideoEntry(split, video_id, videos.get(video_id), label)
  if not entries and wanted is None:
    raise FileNotFoundError(f'{input_dir}: no train.json, validation.json or test.json below it')
  return _finish(entries, wanted)


@dataclasses.dataclass(frozen=True)
class _Found:
  """A video the folder layout names, before its id is chosen."""
  split: str
  path: str  # Normalised; it may not exist (a CSV row naming a missing file).
  label: Optional[str]
  where: str  # The CSV line or the folder that names it, for messages.


def _folder_ids(input_dir: str, found: Iterable[_Found]) -> Dict[str, Dict[str, VideoEntry]]:
  """Entries keyed by id: the path relative to input_dir without the extension, or with it where two files of a
  split would share that id (x.mp4 and x.avi). A path named twice in a split gives one entry, the first."""
  groups: Dict[Tuple[str, str], Dict[str, _Found]] = {}
  for item in found:
    relative = os.path.relpath(item.path, input_dir)
    group = groups.setdefault((item.split, os.path.splitext(relative)[0]), {})
    first = group.setdefault(relative, item)
    if first is not item and first.label != item.label:
      logging.warning('%s: %s is listed again with label %r; keeping label %r from %s', item.where, relative,
                      item.label, first.label, first.where)
  entries: Dict[str, Dict[str, VideoEntry]] = {}
  for (split, stem), group in sorted(groups.items()):
    by_id = entries.setdefault(split, {})
    for relative, item in sorted(group.items()):
      video_id = stem if len(group) == 1 and stem not in by_id else relative
      by_id[video_id] = VideoEntry(split, video_id, item.path if os.path.isfile(item.path) else None, item.label)
  return entries


def _folder_csv_entries(input_dir: str, csvs: Sequence[str]) -> Dict[str, Dict[str, VideoEntry]]:
  found = []
  for csv_path in csvs:
    split = normalize_split(os.path.splitext(os.path.basename(csv_path))[0])
    for line, row in enumerate(_read_csv(csv_path), start=2):
      if not row.get('path'):
        raise ValueError(f'{csv_path}:{line}: empty path')
      path = os.path.normpath(os.path.join(os.path.dirname(csv_path), row['path']))
      found.append(_Found(split, path, row.get('label') or None, f'{csv_path}:{line}'))
  return _folder_ids(input_dir, found)


def _folder_tree_entries(input_dir: str, files: Sequence[str]) -> Dict[str, Dict[str, VideoEntry]]:
  """{split}/{class}/{video}; a video directly in {split}/ is unlabeled."""
  found = []
  for path in files:
    if os.path.splitext(path)[1].lower() not in VIDEO_EXTENSIONS:
      continue
    parts = os.path.relpath(path, input_dir).split(os.sep)
    split = normalize_split(parts[0]) if len(parts) > 1 else None
    if split is not None:
      found.append(_Found(split, path, parts[1] if len(parts) > 2 else None, os.path.dirname(path)))
  return _folder_ids(input_dir, found)


def _csv_columns(input_dir: str, csvs: Sequence[str]) -> str:
  """'train.csv has columns [...]; expected ...' for split CSVs without a 'path' column (with a word on their
  separator when it is not a comma)."""
  found = []
  for path in csvs:
    columns = _csv_header(path)
    other = next((c for c in ';\t|' if len(columns) == 1 and c in columns[0]), None)
    separator = f' (a {other!r}-separated header? columns must be comma-separated)' if other else ''
    found.append(f'{os.path.relpath(path, input_dir)} has columns {columns}{separator}')
  return f"{'; '.join(found)}; expected a 'path' column (and 'label' for labelled videos)"


def folder_entries(input_dir: str, splits: Optional[Sequence[str]] = None) -> Entries:
  """Videos in `{split}/{class}/` folders, or listed in `{split}.csv` files (columns path,label).

  CSV paths are relative to the CSV's directory; a CSV's split is its file name (train, val, ...). When such
  CSVs exist anywhere below input_dir they are the annotation and folders are not scanned. video_id is the
  video's path relative to input_dir without the extension, or with it where two files of a split share the
  rest (x.mp4 and x.avi: both are kept, as 'x.mp4' and 'x.avi').
  """
  wanted = _wanted(splits)
  files = _walk_files(input_dir)
  split_csvs = [p for p in files if p.lower().endswith('.csv')
                and normalize_split(os.path.splitext(os.path.basename(p))[0])]
  csvs = [p for p in split_csvs if 'path' in _csv_header(p)]
  entries = _folder_csv_entries(input_dir, csvs) if csvs else _folder_tree_entries(input_dir, files)
  if not entries and split_csvs:
    raise DataError(f'{input_dir}: found no {{split}}/{{class}}/ video folders, and '
                    f'{_csv_columns(input_dir, split_csvs)}')
  if not entries:
    raise FileNotFoundError(f'{input_dir}: found neither {{split}}/{{class}}/ video folders nor {{split}}.csv '
                            'files with a path column')
  return _finish(entries, wanted)


LAYOUTS: Dict[str, Callable[..., Entries]] = {
    'kinetics': kinetics_entries, 'ssv2': ssv2_entries, 'folder': folder_entries}


def label_names(entries: Entries, layout: str = '', input_dir: str = '') -> List[str]:
  """The class order: sorted, stable and the same whichever splits are prepared.

  For 'ssv2' (with input_dir) the sorted names in labels.json, so that classes without videos keep an
  index; otherwise the sorted set of labels over all the given splits.
  """
  if layout == 'ssv2' and input_dir:
    return sorted(ssv2_labels(input_dir))
  return sorted({e.label for split_entries in entries.values() for e in split_entries if e.label is not None})


def duplicate_files(entries: Entries) -> Dict[Tuple[str, str], str]:
  """{(split, video_id): why} for every entry whose file another entry uses already, so that each file is
  written once: the first in SPLIT_ORDER, then video_id order, keeps it (symbolic links, hard links and
  repeated CSV rows lead to one file)."""
  order = {split: i for i, split in enumerate(SPLIT_ORDER)}
  owners: Dict[video_files.Identity, VideoEntry] = {}
  duplicates = {}
  for split in sorted(entries, key=lambda s: (order.get(s, len(order)), s)):
    for entry in sorted(entries[split], key=lambda e: e.video_id):
      key = video_files.identity(entry.path) if entry.path else None
      if key is None:
        continue
      owner = owners.setdefault(key, entry)
      if owner is not entry:
        duplicates[(split, entry.video_id)] = (f"same file as video {owner.video_id!r} of split '{owner.split}' "
                                               f'({owner.path}); written once, there')
  return duplicates
