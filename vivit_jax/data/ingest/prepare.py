"""Builds DMVR TFRecords (Scenic's `video_tfrecord_dataset`) or a TFDS dataset from videos the user downloaded.

The 'dmvr' format writes, under the output directory:
- `{split}-00000-of-0000N` ...: SequenceExamples with DMVR's keys (see `dmvr_records.py`): JPEG frames at
  `fps` with the short side resized to `short_side`, the class index in `label_map.json` order and its name,
  the video's path relative to the input directory, and Kinetics' start/end times (int64 microseconds).
  Unlabeled (test) videos carry no label index or text, as in DMVR's generator.
- `label_map.json`: {'names': [...], 'index': {name: i}}, sorted and the same whichever splits are prepared.
- `report.json` (see `report.py`): per split the table ('train@N'), videos written whole, per-shard counts, every
  partial video with its declared and decoded frame counts, and every skipped video with its reason; every
  video file found, as written, partial or skipped (found == written + partial + skipped); totals.
  Skipped: annotated videos without a file, files that yield no frame (empty, corrupt, truncated before the
  first frame, not a video), classes missing from the label map, a second entry for a file already written
  (symbolic links, repeated CSV rows: each file is written once), files no prepared annotation uses.
  Partial: a file that decodes clearly fewer frames than its container declares (a half-downloaded MP4 whose
  index sits at the front) is stored with the frames that decoded, and listed, so that it can be judged.

Frames are stored upright: rotation metadata is applied (see `orientation.py`). Settings are checked before any
work: fps in [0, MAX_FPS] (0: native), short side in [0, MAX_SHORT_SIDE] (0: native), JPEG quality 1..100,
workers 1..MAX_WORKERS; the output directory must be a writable directory (or creatable).

Videos are sorted by video_id and dealt round-robin to the shards (so every shard mixes classes); inside a shard
they are ordered by a hash of video_id. Each shard is written under `.prepare/` and renamed when complete, with a
sidecar JSON recording its counts and a fingerprint of its inputs and settings. A rerun skips every shard whose
fingerprint matches, so an interrupted run continues where it stopped and a changed input rebuilds only the
shards it touches.
"""

import dataclasses
import glob
import hashlib
import json
import math
import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import tensorflow as tf

from vivit_jax import paths
from vivit_jax.data.base import LABEL_MAP_FILE, DataError
from vivit_jax.data.ingest import annotations
from vivit_jax.data.ingest import report as reporting
from vivit_jax.data.ingest import video_io
from vivit_jax.data.ingest.annotations import VideoEntry
from vivit_jax.data.ingest import dmvr_records
from vivit_jax.data.ingest.parallel import Progress, ordered_map

STATE_DIR = '.prepare'  # Temporary shards and per-shard sidecars, inside the output directory.
_FORMAT_VERSION = 2  # Part of every shard fingerprint; bump when the record or sidecar content changes.
MAX_FPS = video_io.MAX_FPS
MAX_SHORT_SIDE = 8192  # 8K video has a short side of 4320.
MAX_WORKERS = 1024
MAX_SHARDS = 99_999  # Shard names have five digits.
Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class EncodeSettings:
  """How each video is turned into frames; checked when made (DataError naming the setting)."""
  fps: Optional[float] = 10.0  # None or 0: the native frame rate.
  short_side: Optional[int] = 256  # None or 0: the native size.
  jpeg_quality: int = 90

  def __post_init__(self):
    fps, side, quality = self.fps, self.short_side, self.jpeg_quality
    if fps is not None and not (isinstance(fps, (int, float)) and 0 <= fps <= MAX_FPS):  # NaN fails too.
      raise DataError(f'fps: expected frames per second in (0, {MAX_FPS:g}], or 0 for the native rate; got {fps!r}')
    if side is not None and not (isinstance(side, int) and 0 <= side <= MAX_SHORT_SIDE):
      raise DataError(f'short_side: expected pixels in [1, {MAX_SHORT_SIDE}], or 0 for the native size; '
                      f'got {side!r}')
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
      raise DataError(f'jpeg_quality: expected an integer in [1, 100]; got {quality!r}')


def encode_video(path: str, settings: EncodeSettings) -> Dict[str, Any]:
  """{'frames': [JPEG bytes], 'partial': None or {declared_frames, decoded_frames, damage}} or {'reason': why
  the video is skipped}; never raises for a bad video."""
  try:
    frames, info = video_io.decode_video_info(path, fps=settings.fps or None,
                                              short_side=settings.short_side or None)
    partial = None
    if info.partial:
      partial = {'declared_frames': info.declared_frames, 'decoded_frames': info.decoded_frames,
                 'damage': info.damage}
    return {'frames': video_io.encode_jpeg(frames, settings.jpeg_quality), 'partial': partial}
  except video_io.VideoDecodeError as e:
    return {'reason': e.reason}
  except Exception as e:  # pylint: disable=broad-except  (a bad video must never stop the build)
    return {'reason': f'decoding failed: {type(e).__name__}: {e}'}


def _encode_task(task: Tuple[str, EncodeSettings]) -> Dict[str, Any]:
  return encode_video(*task)


def num_shards_for(count: int, shards: Optional[int], examples_per_shard: Optional[int]) -> int:
  """--shards if given, else ceil(count / examples_per_shard) (default 100), at least 1."""
  if shards is not None and examples_per_shard is not None:
    raise DataError('give --shards or --examples_per_shard, not both')
  if shards is not None:
    if not 1 <= shards <= MAX_SHARDS:
      raise DataError(f'--shards: expected 1 to {MAX_SHARDS}; got {shards}')
    return shards
  per_shard = 100 if examples_per_shard is None else examples_per_shard
  if per_shard < 1:
    raise DataError(f'--examples_per_shard: expected at least 1; got {per_shard}')
  count = math.ceil(count / per_shard)
  if count > MAX_SHARDS:
    raise DataError(f'--examples_per_shard={per_shard} makes {count} shards, more than {MAX_SHARDS}')
  return max(1, count)


def assign_shards(entries: Sequence[VideoEntry], num_shards: int) -> List[List[VideoEntry]]:
  """Sorted by video_id, dealt round-robin; within a shard ordered by a hash of video_id (classes mixed)."""
  ordered = sorted(entries, key=lambda e: e.video_id)
  digest = lambda e: hashlib.md5(e.video_id.encode('utf-8')).hexdigest()
  return [sorted(ordered[i::num_shards], key=lambda e: (digest(e), e.video_id)) for i in range(num_shards)]


def _fingerprint(shard: Sequence[VideoEntry], settings: EncodeSettings, names: Sequence[str], input_dir: str,
                 preskip: Dict[str, str]) -> str:
  """Changes when the shard's videos (identity, file size and mtime, reason to skip them before decoding), the
  settings or the classes change."""
  items = []
  for entry in shard:
    stat = os.stat(entry.path) if entry.path and os.path.exists(entry.path) else None
    path = entry.path and os.path.relpath(entry.path, input_dir)
    items.append([entry.video_id, path, entry.label, entry.start, entry.end,
                  stat and stat.st_size, stat and stat.st_mtime_ns, preskip.get(entry.video_id)])
  blob = json.dumps([_FORMAT_VERSION, dataclasses.asdict(settings), list(names), items])
  return hashlib.sha256(blob.encode('utf-8')).hexdigest()


def _write_json(path: str, value: Any) -> None:
  """Atomically (temporary file, then rename)."""
  with open(path + '.tmp', 'w', encoding='utf-8') as f:
    json.dump(value, f, indent=1, ensure_ascii=False)
  os.replace(path + '.tmp', path)


def _read_sidecar(path: str, fingerprint: str) -> Optional[Dict[str, Any]]:
  try:
    with open(path, encoding='utf-8') as f:
      sidecar = json.load(f)
  except (OSError, ValueError):
    return None
  return sidecar if isinstance(sidecar, dict) and sidecar.get('fingerprint') == fingerprint else None


def _precheck(entry: VideoEntry, index: Dict[str, int], duplicates: Dict[Tuple[str, str], str]) -> Optional[str]:
  """Why the entry cannot be written before decoding it; None when it can be tried."""
  if entry.path is None:
    return 'no video file found for this annotation'
  if entry.label is not None and entry.label not in index:
    return f'class {entry.label!r} is not in the label map'
  return duplicates.get((entry.split, entry.video_id))


@dataclasses.dataclass
class _ShardJob:
  split: str
  name: str  # e.g. 'train-00000-of-00002'
  entries: List[VideoEntry]
  preskip: Dict[str, str]  # video_id -> why it is skipped without decoding.
  fingerprint: str = ''


def _record(entry: VideoEntry, frames: List[bytes], index: Dict[str, int], input_dir: str) -> bytes:
  labeled = entry.label is not None
  return dmvr_records.make_sequence_example(
      frames, [index[entry.label]] if labeled else [], [entry.label] if labeled else [],
      filename=os.path.relpath(entry.path, input_dir), start=entry.start, end=entry.end)


def _write_records(job: _ShardJob, results: Iterator[Dict[str, Any]], writer: tf.io.TFRecordWriter,
                   input_dir: str, index: Dict[str, int], progress: Progress) -> Dict[str, Any]:
  """Writes the shard's usable videos; the sidecar's counts: written (whole), frames, partial and skipped."""
  counts = {'written': 0, 'frames': 0, 'partial': [], 'skipped': []}
  for entry in job.entries:
    reason = job.preskip.get(entry.video_id)
    result = {'reason': reason} if reason else next(results)
    if 'reason' in result:
      counts['skipped'].append({'video_id': entry.video_id, 'path': entry.path, 'reason': result['reason']})
    else:
      writer.write(_record(entry, result['frames'], index, input_dir))
      counts['frames'] += len(result['frames'])
      if result.get('partial'):
        counts['partial'].append({'video_id': entry.video_id, 'path': entry.path, **result['partial']})
      else:
        counts['written'] += 1
    progress.update(skipped='reason' in result)
  return counts


def _write_shard(job: _ShardJob, results: Iterator[Dict[str, Any]], output_dir: str, input_dir: str,
                 index: Dict[str, int], progress: Progress) -> Dict[str, Any]:
  """Writes one shard under STATE_DIR, then its sidecar, then renames it into place; returns the sidecar."""
  state_dir = os.path.join(output_dir, STATE_DIR)
  temporary = os.path.join(state_dir, job.name + '.tmp')
  try:
    with tf.io.TFRecordWriter(temporary) as writer:
      counts = _write_records(job, results, writer, input_dir, index, progress)
  except tf.errors.OpError as e:  # Full disk, vanished directory: name the file, not TensorFlow's internals.
    raise DataError(f'{temporary}: cannot write the shard: {e.message}') from e
  sidecar = {'fingerprint': job.fingerprint, 'split': job.split, 'name': job.name, **counts}
  _write_json(os.path.join(state_dir, job.name + '.json'), sidecar)
  os.replace(temporary, os.path.join(output_dir, job.name))
  return sidecar


def _write_shards(jobs: Sequence[_ShardJob], output_dir: str, input_dir: str, index: Dict[str, int],
                  settings: EncodeSettings, workers: int, log: Log) -> None:
  """Encodes the videos of `jobs` (shard after shard, in order) and writes each shard with its sidecar."""
  tasks = ((e.path, settings) for job in jobs for e in job.entries if e.video_id not in job.preskip)
  results = ordered_map(_encode_task, tasks, workers)
  progress = Progress(sum(len(job.entries) for job in jobs), log)
  try:
    for job in jobs:
      sidecar = _write_shard(job, results, output_dir, input_dir, index, progress)
      log(f"{job.name}: {sidecar['written']} videos written whole, {len(sidecar['partial'])} partial, "
          f"{len(sidecar['skipped'])} skipped")
  finally:
    results.close()  # Stops the worker processes at once if writing fails or is interrupted.


def _select_splits(entries: annotations.Entries, splits: Optional[Sequence[str]],
                   input_dir: str) -> annotations.Entries:
  if splits is None:
    return entries
  selected = {}
  for split in splits:
    name = annotations.normalize_split(split)
    if name is None or not entries.get(name):
      raise ValueError(f'{input_dir}: no annotated videos for split {split!r}; the annotations have '
                       f'{ {s: len(e) for s, e in entries.items()} }')
    selected[name] = entries[name]
  return selected


def check_dirs(input_dir: str, output_dir: str) -> None:
  """Before any work: the input must be a directory; the output directory is made and proved writable
  (`paths.check_output_dir`). Errors name the directory."""
  if not os.path.isdir(input_dir):
    found = 'is not a directory' if os.path.exists(input_dir) else 'not found'
    raise DataError(f'input directory {input_dir}: {found}')
  paths.check_output_dir(output_dir, what='output directory')


def _plan(entries: annotations.Entries, output_dir: str, input_dir: str, settings: EncodeSettings,
          names: Sequence[str], counts: Dict[str, int]) -> Tuple[List[_ShardJob], Dict[str, Any]]:
  """(shards to write, {name: sidecar} of the shards already complete); `counts`: shards per split."""
  index = {name: i for i, name in enumerate(names)}
  duplicates = annotations.duplicate_files(entries)
  jobs, done = [], {}
  for split, split_entries in entries.items():
    shard_names = dmvr_records.shard_names(split, counts[split])
    for name, shard in zip(shard_names, assign_shards(split_entries, counts[split])):
      preskip = {e.video_id: r for e in shard for r in [_precheck(e, index, duplicates)] if r}
      job = _ShardJob(split, name, shard, preskip)
      job.fingerprint = _fingerprint(shard, settings, names, input_dir, preskip)
      sidecar = _read_sidecar(os.path.join(output_dir, STATE_DIR, name + '.json'), job.fingerprint)
      if sidecar is not None and os.path.exists(os.path.join(output_dir, name)):
        done[name] = sidecar
      else:
        jobs.append(job)
  return jobs, done


def prepare_dmvr(layout: str, input_dir: str, output_dir: str, settings: EncodeSettings = EncodeSettings(),
                 splits: Optional[Sequence[str]] = None, workers: int = 1, shards: Optional[int] = None,
                 examples_per_shard: Optional[int] = None, log: Log = print) -> Dict[str, Any]:
  """Writes DMVR TFRecord shards, label_map.json and report.json (see the module docstring); returns the report.

  `shards` fixes the shard count of every split; otherwise each split gets ceil(videos / examples_per_shard).
  """
  if layout not in annotations.LAYOUTS:
    raise DataError(f'unknown layout {layout!r}; expected one of {sorted(annotations.LAYOUTS)}')
  check_workers(workers)
  check_dirs(input_dir, output_dir)
  all_entries = annotations.LAYOUTS[layout](input_dir)
  names = annotations.label_names(all_entries, layout, input_dir)
  entries = _select_splits(all_entries, splits, input_dir)
  counts = {split: num_shards_for(len(e), shards, examples_per_shard) for split, e in entries.items()}
  tables = {split: f'{split}@{count}' for split, count in counts.items()}
  os.makedirs(os.path.join(output_dir, STATE_DIR), exist_ok=True)
  index = {name: i for i, name in enumerate(names)}
  _write_json(os.path.join(output_dir, LABEL_MAP_FILE), {'names': names, 'index': index})
  jobs, done = _plan(entries, output_dir, input_dir, settings, names, counts)
  _warn_stale_shards(output_dir, tables, log)
  log(f'{layout} from {input_dir}: {sum(map(len, entries.values()))} annotated videos in '
      f'{sum(counts.values())} shards ({len(done)} already complete, {len(jobs)} to write), {len(names)} classes')
  _write_shards(jobs, output_dir, input_dir, index, settings, workers, log)
  report = _report(layout, input_dir, output_dir, settings, tables, names, all_entries, entries)
  _write_json(os.path.join(output_dir, 'report.json'), report)
  reporting.print_summary(report, log)
  return report


def check_workers(workers: int) -> None:
  """DataError unless `workers` is an integer in [1, MAX_WORKERS]."""
  if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
    raise DataError(f'workers: expected an integer in [1, {MAX_WORKERS}]; got {workers!r}')


def _warn_stale_shards(output_dir: str, tables: Dict[str, str], log: Log) -> None:
  """Shards of an earlier run with another shard count would be read by a glob; say so."""
  for split, table in tables.items():
    expected = set(dmvr_records.shard_names(split, int(table.split('@')[1])))
    stale = sorted(set(glob.glob(os.path.join(glob.escape(output_dir), f'{split}-*-of-*')))
                   - {os.path.join(output_dir, name) for name in expected})
    if stale:
      log(f'warning: {len(stale)} shards of another shard count are in {output_dir} (e.g. {stale[0]}); '
          f'the table {table} does not use them, but a glob would')


def _report(layout: str, input_dir: str, output_dir: str, settings: EncodeSettings, tables: Dict[str, str],
            names: Sequence[str], all_entries: annotations.Entries,
            entries: annotations.Entries) -> Dict[str, Any]:
  """report.json's content, gathered from the shards' sidecars and a fresh look at the input's files."""
  splits = {}
  for split, table in tables.items():
    sidecars = []
    for name in dmvr_records.shard_names(split, int(table.split('@')[1])):
      with open(os.path.join(output_dir, STATE_DIR, name + '.json'), encoding='utf-8') as f:
        sidecars.append(json.load(f))
    splits[split] = reporting.split_section(table, sidecars)
  outcomes = reporting.outcomes_of(splits, entries, annotations.duplicate_files(entries))
  files, unused = reporting.file_accounting(layout, input_dir, all_entries, entries, outcomes)
  return {
      'format': 'dmvr', 'layout': layout, 'input_dir': input_dir, 'output_dir': output_dir,
      'settings': dataclasses.asdict(settings), 'num_classes': len(names),
      'tables': tables, 'examples_per_subset': {s: v['records'] for s, v in splits.items()},
      'files': files, 'splits': splits,
      'totals': {key: sum(v[key] for v in splits.values())
                 for key in ('annotated', 'written', 'num_partial', 'num_skipped')},
      'unused_files': unused,
  }


def prepare(layout: str, input_dir: str, output_dir: str, output_format: str = 'dmvr', fps: float = 10.0,
            short_side: int = 256, splits: Optional[Sequence[str]] = None, workers: int = 1,
            shards: Optional[int] = None, examples_per_shard: Optional[int] = None, jpeg_quality: int = 90,
            log: Log = print) -> Dict[str, Any]:
  """Prepares a download as DMVR TFRecords ('dmvr') or with vivit_jax's TFDS builders ('tfds').

  Every setting is checked (DataError naming it) and the output directory made before any video is read.
  """
  if output_format not in ('dmvr', 'tfds'):
    raise DataError(f'unknown format {output_format!r}; expected dmvr or tfds')
  settings = EncodeSettings(fps=fps or None, short_side=short_side or None, jpeg_quality=jpeg_quality)
  check_workers(workers)
  if output_format == 'dmvr':
    return prepare_dmvr(layout, input_dir, output_dir, settings, splits, workers, shards, examples_per_shard, log)
  from vivit_jax.data.ingest import builders  # pylint: disable=g-import-not-at-top  (TFDS only where used)
  check_dirs(input_dir, output_dir)
  return builders.prepare_tfds(layout=layout, input_dir=input_dir, output_dir=output_dir, fps=fps,
                               short_side=short_side, splits=splits, workers=workers)
