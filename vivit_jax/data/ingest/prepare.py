"""Builds DMVR TFRecords (Scenic's `video_tfrecord_dataset`) or a TFDS dataset from videos the user downloaded.

The 'dmvr' format writes, under the output directory:
- `{split}-00000-of-0000N` ...: SequenceExamples with DMVR's keys (see `dmvr_records.py`): JPEG frames at
  `fps` with the short side resized to `short_side`, the class index in `label_map.json` order and its name,
  the video's path relative to the input directory, and Kinetics' start/end times (int64 microseconds).
  Unlabeled (test) videos carry no label index or text, as in DMVR's generator.
- `label_map.json`: {'names': [...], 'index': {name: i}}, sorted and the same whichever splits are prepared.
- `report.json`: per split the table ('train@N'), videos written, per-shard counts, and every skipped video
  with its reason; totals. Skipped: annotated videos without a file, files that yield no frame (empty,
  corrupt, truncated before the first frame, not a video), classes missing from the label map.

Videos are sorted by video_id and dealt round-robin to the shards (so every shard mixes classes); inside a shard
they are ordered by a hash of video_id. Each shard is written under `.prepare/` and renamed when complete, with a
sidecar JSON recording its counts and a fingerprint of its inputs and settings. A rerun skips every shard whose
fingerprint matches, so an interrupted run continues where it stopped and a changed input rebuilds only the
shards it touches.
"""

import collections
import concurrent.futures
import dataclasses
import glob
import hashlib
import inspect
import itertools
import json
import math
import multiprocessing
import os
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import tensorflow as tf

from vivit_jax.data.base import LABEL_MAP_FILE
from vivit_jax.data.ingest import annotations
from vivit_jax.data.ingest import video_io
from vivit_jax.data.ingest.annotations import VideoEntry
from vivit_jax.data.ingest import dmvr_records

STATE_DIR = '.prepare'  # Temporary shards and per-shard sidecars, inside the output directory.
_FORMAT_VERSION = 1  # Part of every shard fingerprint; bump when the record content changes.
Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class EncodeSettings:
  """How each video is turned into frames."""
  fps: Optional[float] = 10.0  # None or 0: the native frame rate.
  short_side: Optional[int] = 256  # None or 0: the native size.
  jpeg_quality: int = 90


def encode_video(path: str, settings: EncodeSettings) -> Dict[str, Any]:
  """{'frames': [JPEG bytes]} or {'reason': why the video is skipped}; never raises for a bad video."""
  try:
    frames = video_io.decode_video(path, fps=settings.fps or None, short_side=settings.short_side or None)
    return {'frames': video_io.encode_jpeg(frames, settings.jpeg_quality)}
  except video_io.VideoDecodeError as e:
    return {'reason': e.reason}
  except Exception as e:  # pylint: disable=broad-except  (a bad video must never stop the build)
    return {'reason': f'decoding failed: {type(e).__name__}: {e}'}


def _encode_task(task: Tuple[str, EncodeSettings]) -> Dict[str, Any]:
  return encode_video(*task)


def ordered_map(fn: Callable[[Any], Any], tasks: Iterable[Any], workers: int) -> Iterator[Any]:
  """fn(task) for each task, in order; `workers` > 1 runs them in that many spawned processes.

  A task that kills its worker process (a decoder crash) is retried alone in a fresh process; if it kills that
  one too its result is {'reason': ...}, and the other tasks go on in a new pool.
  """
  if workers <= 1:
    yield from map(fn, tasks)
    return
  context = multiprocessing.get_context('spawn')  # Never fork a process that has TensorFlow's threads.
  new_pool = lambda n: concurrent.futures.ProcessPoolExecutor(n, mp_context=context)
  tasks, window, pool = iter(tasks), collections.deque(), new_pool(workers)
  try:
    while True:
      for task in itertools.islice(tasks, 4 * workers - len(window)):
        window.append((task, pool.submit(fn, task)))
      if not window:
        return
      task, future = window.popleft()
      try:
        result = future.result()
      except concurrent.futures.process.BrokenProcessPool:
        pool.shutdown(cancel_futures=True)
        with new_pool(1) as alone:
          try:
            result = alone.submit(fn, task).result()
          except concurrent.futures.process.BrokenProcessPool:
            result = {'reason': 'decoding crashed the worker process'}
        pool = new_pool(workers)
        window = collections.deque((t, pool.submit(fn, t)) for t, _ in window)
      yield result
  finally:
    pool.shutdown(cancel_futures=True)


class Progress:
  """Prints videos done, skipped, videos/s and the ETA at most every `interval` seconds."""

  def __init__(self, total: int, log: Log, interval: float = 5.0):
    self.total, self.log, self.interval = total, log, interval
    self.done = self.skipped = 0
    self.start = self.last = time.monotonic()

  def update(self, skipped: bool) -> None:
    self.done += 1
    self.skipped += int(skipped)
    now = time.monotonic()
    if now - self.last >= self.interval or self.done == self.total:
      self.last = now
      rate = self.done / max(now - self.start, 1e-9)
      eta = round((self.total - self.done) / rate) if rate else 0
      self.log(f'{self.done}/{self.total} videos ({self.skipped} skipped), {rate:.1f} videos/s, '
               f'ETA {eta // 3600}:{eta // 60 % 60:02d}:{eta % 60:02d}')


def num_shards_for(count: int, shards: Optional[int], examples_per_shard: Optional[int]) -> int:
  """--shards if given, else ceil(count / examples_per_shard) (default 100), at least 1."""
  if shards is not None and examples_per_shard is not None:
    raise ValueError('give --shards or --examples_per_shard, not both')
  if shards is not None:
    if shards < 1:
      raise ValueError(f'--shards must be at least 1; got {shards}')
    return shards
  per_shard = 100 if examples_per_shard is None else examples_per_shard
  if per_shard < 1:
    raise ValueError(f'--examples_per_shard must be at least 1; got {per_shard}')
  return max(1, math.ceil(count / per_shard))


def assign_shards(entries: Sequence[VideoEntry], num_shards: int) -> List[List[VideoEntry]]:
  """Sorted by video_id, dealt round-robin; within a shard ordered by a hash of video_id (classes mixed)."""
  ordered = sorted(entries, key=lambda e: e.video_id)
  digest = lambda e: hashlib.md5(e.video_id.encode('utf-8')).hexdigest()
  return [sorted(ordered[i::num_shards], key=lambda e: (digest(e), e.video_id)) for i in range(num_shards)]


def _fingerprint(shard: Sequence[VideoEntry], settings: EncodeSettings, names: Sequence[str],
                 input_dir: str) -> str:
  """Changes when the shard's videos (identity, file size and mtime), the settings or the classes change."""
  items = []
  for entry in shard:
    stat = os.stat(entry.path) if entry.path and os.path.exists(entry.path) else None
    path = entry.path and os.path.relpath(entry.path, input_dir)
    items.append([entry.video_id, path, entry.label, entry.start, entry.end,
                  stat and stat.st_size, stat and stat.st_mtime_ns])
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
  return sidecar if sidecar.get('fingerprint') == fingerprint else None


def _precheck(entry: VideoEntry, index: Dict[str, int]) -> Optional[str]:
  """Why the entry cannot be written before decoding it; None when it can be tried."""
  if entry.path is None:
    return 'no video file found for this annotation'
  if entry.label is not None and entry.label not in index:
    return f'class {entry.label!r} is not in the label map'
  return None


@dataclasses.dataclass
class _ShardJob:
  split: str
  name: str  # e.g. 'train-00000-of-00002'
  entries: List[VideoEntry]
  fingerprint: str


def _record(entry: VideoEntry, frames: List[bytes], index: Dict[str, int], input_dir: str) -> bytes:
  labeled = entry.label is not None
  return dmvr_records.make_sequence_example(
      frames, [index[entry.label]] if labeled else [], [entry.label] if labeled else [],
      filename=os.path.relpath(entry.path, input_dir), start=entry.start, end=entry.end)


def _write_shard(job: _ShardJob, results: Iterator[Dict[str, Any]], output_dir: str, input_dir: str,
                 index: Dict[str, int], progress: Progress) -> Tuple[int, int]:
  """Writes one shard under STATE_DIR, then its sidecar, then renames it into place; (written, skipped)."""
  state_dir = os.path.join(output_dir, STATE_DIR)
  temporary = os.path.join(state_dir, job.name + '.tmp')
  written, frames, skipped = 0, 0, []
  with tf.io.TFRecordWriter(temporary) as writer:
    for entry in job.entries:
      reason = _precheck(entry, index)
      result = {'reason': reason} if reason else next(results)
      if 'reason' in result:
        skipped.append({'video_id': entry.video_id, 'path': entry.path, 'reason': result['reason']})
      else:
        writer.write(_record(entry, result['frames'], index, input_dir))
        written, frames = written + 1, frames + len(result['frames'])
      progress.update(skipped='reason' in result)
  _write_json(os.path.join(state_dir, job.name + '.json'), {
      'fingerprint': job.fingerprint, 'split': job.split, 'name': job.name, 'written': written,
      'frames': frames, 'skipped': skipped})
  os.replace(temporary, os.path.join(output_dir, job.name))
  return written, len(skipped)


def _write_shards(jobs: Sequence[_ShardJob], output_dir: str, input_dir: str, index: Dict[str, int],
                  settings: EncodeSettings, workers: int, log: Log) -> None:
  """Encodes the videos of `jobs` (shard after shard, in order) and writes each shard with its sidecar."""
  tasks = ((e.path, settings) for job in jobs for e in job.entries if _precheck(e, index) is None)
  results = ordered_map(_encode_task, tasks, workers)
  progress = Progress(sum(len(job.entries) for job in jobs), log)
  try:
    for job in jobs:
      written, skipped = _write_shard(job, results, output_dir, input_dir, index, progress)
      log(f'{job.name}: {written} videos written, {skipped} skipped')
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


def prepare_dmvr(layout: str, input_dir: str, output_dir: str, settings: EncodeSettings = EncodeSettings(),
                 splits: Optional[Sequence[str]] = None, workers: int = 1, shards: Optional[int] = None,
                 examples_per_shard: Optional[int] = None, log: Log = print) -> Dict[str, Any]:
  """Writes DMVR TFRecord shards, label_map.json and report.json (see the module docstring); returns the report.

  `shards` fixes the shard count of every split; otherwise each split gets ceil(videos / examples_per_shard).
  """
  if layout not in annotations.LAYOUTS:
    raise ValueError(f'unknown layout {layout!r}; expected one of {sorted(annotations.LAYOUTS)}')
  all_entries = annotations.LAYOUTS[layout](input_dir)
  names = annotations.label_names(all_entries, layout, input_dir)
  index = {name: i for i, name in enumerate(names)}
  entries = _select_splits(all_entries, splits, input_dir)
  os.makedirs(os.path.join(output_dir, STATE_DIR), exist_ok=True)
  _write_json(os.path.join(output_dir, LABEL_MAP_FILE), {'names': names, 'index': index})
  jobs, done, tables = [], {}, {}
  for split, split_entries in entries.items():
    count = num_shards_for(len(split_entries), shards, examples_per_shard)
    tables[split] = f'{split}@{count}'
    for name, shard in zip(dmvr_records.shard_names(split, count), assign_shards(split_entries, count)):
      job = _ShardJob(split, name, shard, _fingerprint(shard, settings, names, input_dir))
      sidecar = _read_sidecar(os.path.join(output_dir, STATE_DIR, name + '.json'), job.fingerprint)
      if sidecar is not None and os.path.exists(os.path.join(output_dir, name)):
        done[name] = sidecar
      else:
        jobs.append(job)
  _warn_stale_shards(output_dir, tables, log)
  log(f'{layout} from {input_dir}: {sum(map(len, entries.values()))} annotated videos in '
      f'{sum(int(t.split("@")[1]) for t in tables.values())} shards ({len(done)} already complete, '
      f'{len(jobs)} to write), {len(names)} classes')
  _write_shards(jobs, output_dir, input_dir, index, settings, workers, log)
  report = _report(layout, input_dir, output_dir, settings, tables, names)
  _write_json(os.path.join(output_dir, 'report.json'), report)
  _print_summary(report, log)
  return report


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
            names: Sequence[str]) -> Dict[str, Any]:
  """report.json's content, gathered from the shards' sidecars."""
  splits = {}
  for split, table in tables.items():
    base, count = table.split('@')
    shard_rows, skipped = [], []
    for name in dmvr_records.shard_names(base, int(count)):
      with open(os.path.join(output_dir, STATE_DIR, name + '.json'), encoding='utf-8') as f:
        sidecar = json.load(f)
      shard_rows.append({'name': name, 'written': sidecar['written'], 'skipped': len(sidecar['skipped']),
                         'frames': sidecar['frames']})
      skipped.extend(sidecar['skipped'])
    written = sum(row['written'] for row in shard_rows)
    splits[split] = {'table': table, 'annotated': written + len(skipped), 'written': written,
                     'num_skipped': len(skipped), 'frames': sum(row['frames'] for row in shard_rows),
                     'shards': shard_rows, 'skipped': sorted(skipped, key=lambda s: s['video_id'])}
  return {
      'format': 'dmvr', 'layout': layout, 'input_dir': input_dir, 'output_dir': output_dir,
      'settings': dataclasses.asdict(settings), 'num_classes': len(names),
      'tables': tables, 'examples_per_subset': {s: v['written'] for s, v in splits.items()},
      'splits': splits,
      'totals': {key: sum(v[key] for v in splits.values()) for key in ('annotated', 'written', 'num_skipped')},
  }


def _print_summary(report: Dict[str, Any], log: Log) -> None:
  for split, info in report['splits'].items():
    log(f"{split}: {info['written']} of {info['annotated']} videos written to {info['table']} "
        f"({info['frames']} frames), {info['num_skipped']} skipped")
    for skip in info['skipped']:
      log(f"  skipped {skip['video_id']} ({skip['path']}): {skip['reason']}")
  totals = report['totals']
  log(f"total: {totals['written']} written, {totals['num_skipped']} skipped of {totals['annotated']} annotated; "
      f"report: {os.path.join(report['output_dir'], 'report.json')}")


def prepare(layout: str, input_dir: str, output_dir: str, output_format: str = 'dmvr', fps: float = 10.0,
            short_side: int = 256, splits: Optional[Sequence[str]] = None, workers: int = 1,
            shards: Optional[int] = None, examples_per_shard: Optional[int] = None, jpeg_quality: int = 90,
            log: Log = print) -> Dict[str, Any]:
  """Prepares a download as DMVR TFRecords ('dmvr') or with vivit_jax's TFDS builders ('tfds')."""
  if output_format == 'tfds':
    from vivit_jax.data.ingest import builders  # pylint: disable=g-import-not-at-top  (written beside this module)
    kwargs = dict(layout=layout, input_dir=input_dir, output_dir=output_dir, fps=fps, short_side=short_side,
                  splits=splits)
    if 'workers' in inspect.signature(builders.prepare_tfds).parameters:
      kwargs['workers'] = workers
    return builders.prepare_tfds(**kwargs)
  if output_format != 'dmvr':
    raise ValueError(f'unknown format {output_format!r}; expected dmvr or tfds')
  settings = EncodeSettings(fps=fps or None, short_side=short_side or None, jpeg_quality=jpeg_quality)
  return prepare_dmvr(layout, input_dir, output_dir, settings, splits, workers, shards, examples_per_shard, log)
