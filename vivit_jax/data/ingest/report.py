"""report.json: what data preparation did with every annotated video and every video file it found.

Per split: the videos written whole, the partial ones (stored with the frames that decoded, listed with the
frame count the container declares and the count that decoded), and the skipped ones with their reasons.

`files` accounts for every video file below the input directory once, however many paths lead to it
(symbolic links, hard links, repeated CSV rows): found == written + partial + skipped. A skipped file is either
the file of a skipped video (in its split's list) or a file no prepared video uses, listed in `unused_files`
with its reason: a split that --splits leaves out, another file of the same video id used instead (Kinetics and
SSv2 find files by name), no annotation naming it, or a link that leads nowhere. Other files (annotations,
notes) are only counted, as `other_files`.
"""

import os
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from vivit_jax.data.ingest import annotations, video_files

Outcomes = Dict[Tuple[str, str], str]  # (split, video_id) -> 'written', 'partial', 'skipped' or 'duplicate'.
Log = Callable[[str], None]
_FATES = ('written', 'partial', 'skipped')


def _stem(path: str) -> str:
  return os.path.splitext(os.path.basename(path))[0]


def _unused_reason(path: str, key: video_files.Identity, other_splits: Dict[video_files.Identity, str],
                   used_by_name: Dict[str, str]) -> Tuple[str, str]:
  """(kind, reason) of a video file that no prepared video uses."""
  if key in other_splits:
    return 'other_split', f"annotated in split '{other_splits[key]}', which --splits leaves out"
  if _stem(path) in used_by_name:
    return 'same_video_id', f'another file of the same video id was used: {used_by_name[_stem(path)]}'
  return 'unannotated', 'no annotation names this file'


def file_accounting(layout: str, input_dir: str, all_entries: annotations.Entries,
                    selected: annotations.Entries, outcomes: Outcomes) -> Tuple[Dict[str, int], List[Dict[str, str]]]:
  """({'found', 'written', 'partial', 'skipped', 'other_files'}, unused files); see the module docstring.

  `outcomes` gives the fate of every selected entry that has a file ('duplicate': another entry wrote it).
  """
  listing = video_files.walk(input_dir)
  videos = [p for p in listing.files if video_files.is_video(p)]
  fates: Dict[video_files.Identity, str] = {}
  used_by_name: Dict[str, str] = {}
  for split, entries in selected.items():
    for entry in entries:
      key = video_files.identity(entry.path) if entry.path else None
      fate = outcomes.get((split, entry.video_id))
      if key is not None and fate in _FATES:
        fates[key] = fate
        used_by_name[_stem(entry.path)] = entry.path
  other_splits = {video_files.identity(e.path): split for split, entries in all_entries.items()
                  if split not in selected for e in entries if e.path}
  if layout not in annotations.MATCHED_BY_NAME:
    used_by_name = {}
  unused, found = [], set(fates)
  for path in videos:
    key = video_files.identity(path)
    if key is None or key in found:
      continue
    found.add(key)
    kind, reason = _unused_reason(path, key, other_splits, used_by_name)
    unused.append({'path': path, 'kind': kind, 'reason': reason})
  for path, reason in listing.broken.items():
    if video_files.is_video(path):
      unused.append({'path': path, 'kind': 'unreadable', 'reason': reason})
  counts = {fate: sum(f == fate for f in fates.values()) for fate in _FATES}
  counts['skipped'] += len(unused)
  found_count = len(found) + sum(map(video_files.is_video, listing.broken))
  return {'found': found_count, **counts, 'other_files': len(listing.files) - len(videos)}, unused


def split_section(table: str, sidecars: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
  """A split's part of the report, from the sidecars of its shards."""
  rows, skipped, partial = [], [], []
  for sidecar in sidecars:
    rows.append({'name': sidecar['name'], 'written': sidecar['written'], 'partial': len(sidecar['partial']),
                 'skipped': len(sidecar['skipped']), 'frames': sidecar['frames']})
    skipped.extend(sidecar['skipped'])
    partial.extend(sidecar['partial'])
  written = sum(row['written'] for row in rows)
  return {'table': table, 'annotated': written + len(partial) + len(skipped), 'written': written,
          'num_partial': len(partial), 'num_skipped': len(skipped), 'records': written + len(partial),
          'frames': sum(row['frames'] for row in rows), 'shards': rows,
          'partial': sorted(partial, key=lambda s: s['video_id']),
          'skipped': sorted(skipped, key=lambda s: s['video_id'])}


def outcomes_of(splits: Dict[str, Dict[str, Any]], selected: annotations.Entries,
                duplicates: Iterable[Tuple[str, str]]) -> Outcomes:
  """The fate of every selected entry with a file, from the split sections."""
  outcomes: Outcomes = {}
  for split, entries in selected.items():
    partial = {p['video_id'] for p in splits[split]['partial']}
    skipped = {s['video_id'] for s in splits[split]['skipped']}
    for entry in entries:
      fate = 'partial' if entry.video_id in partial else 'skipped' if entry.video_id in skipped else 'written'
      outcomes[(split, entry.video_id)] = fate
  outcomes.update({key: 'duplicate' for key in duplicates})
  return outcomes


def print_summary(report: Dict[str, Any], log: Log, report_path: Optional[str] = None) -> None:
  """The report in a few lines: per split, each partial and skipped video, the unused files by kind, totals."""
  for split, info in report['splits'].items():
    log(f"{split}: {info['written']} of {info['annotated']} videos written whole to {info['table']} "
        f"({info['frames']} frames), {info['num_partial']} partial, {info['num_skipped']} skipped")
    for item in info['partial']:
      log(f"  partial {item['video_id']} ({item['path']}): {item['declared_frames']} frames declared, "
          f"{item['decoded_frames']} decoded{': ' + item['damage'] if item['damage'] else ''}")
    for skip in info['skipped']:
      log(f"  skipped {skip['video_id']} ({skip['path']}): {skip['reason']}")
  kinds: Dict[str, List[str]] = {}
  for item in report['unused_files']:
    kinds.setdefault(item['kind'], []).append(item['path'])
  for kind, paths in sorted(kinds.items()):
    log(f'unused files, {kind.replace("_", " ")}: {len(paths)} (e.g. {paths[0]}); listed in report.json')
  files, totals = report['files'], report['totals']
  log(f"files: {files['found']} video files found: {files['written']} written whole, {files['partial']} partial, "
      f"{files['skipped']} skipped")
  log(f"total: {totals['written']} written whole, {totals['num_partial']} partial, {totals['num_skipped']} skipped of "
      f"{totals['annotated']} annotated; report: {report_path or os.path.join(report['output_dir'], 'report.json')}")
