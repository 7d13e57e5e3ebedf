"""Shared machinery of the manual-download video builders.

Every builder here reads videos the user downloaded (TFDS's `manual_dir`), decodes them with
`video_io.decode_video` at the configured fps and short side, and stores the frames as JPEG, so prepared
data stays small. Examples have the same features in every split:

  'video':      uint8 [T, H, W, 3], JPEG-encoded frames.
  'label':      ClassLabel; -1 for a video without a label (e.g. the Kinetics-700 or SSv2 test split).
  'video_id':   the dataset's id of the video (Kinetics: `{youtube_id}_{start:06d}_{end:06d}`).
  'label_text': the class name; '' for a video without a label.

The class list is `annotations.label_names` over all splits of the download (stable, sorted and the same
whichever splits are prepared). Videos that cannot be used (no file for an annotation row, a zero-byte or
undecodable file, no frames, a file another entry already wrote) are skipped, logged with the reason, and listed
in `report.json` next to the prepared records, in `<data_dir>/<builder name>/<config>/<version>/report.json`.
A video that decodes clearly fewer frames than its container declares is stored with the frames that decoded
and listed as partial, with both counts. The report also accounts for every video file below the download once
(`files`: found == written + partial + skipped; `unused_files`), as `report.py` describes. Frames are stored
upright (rotation metadata applied).
"""

import collections
import concurrent.futures
import dataclasses
import inspect
import itertools
import json
import math
import os
from typing import Any, Callable, ClassVar, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from absl import logging
from etils import epath
import tensorflow_datasets as tfds

from vivit_jax.data.ingest import annotations
from vivit_jax.data.ingest import report as reporting
from vivit_jax.data.ingest import video_io

REPORT_FILENAME = 'report.json'
UNLABELED = -1  # ClassLabel value of a video without a label (TFDS reserves -1 for "no label").

Example = Dict[str, Any]


@dataclasses.dataclass(eq=False)
class VideoBuilderConfig(tfds.core.BuilderConfig):
  """How videos are decoded before their frames are stored.

  Attributes:
    fps: frames per second kept (None: every frame of the file).
    short_side: frames are resized so that their shorter side has this many pixels, keeping the aspect
      ratio (None: the file's size).
  """
  fps: Optional[float] = 10.0
  short_side: Optional[int] = 256


def config_name(fps: Optional[float], short_side: Optional[int]) -> str:
  """The BuilderConfig name for a decoding setting, e.g. 'fps10_short256', 'fps12p5_shortnative'."""
  fps_part = 'native' if fps is None else f'{float(fps):g}'.replace('.', 'p')
  short_part = 'native' if short_side is None else str(int(short_side))
  return f'fps{fps_part}_short{short_part}'


def make_config(fps: Optional[float] = 10.0, short_side: Optional[int] = 256) -> VideoBuilderConfig:
  """A VideoBuilderConfig named after its settings (DMVR's defaults: 10 fps, short side 256).

  None or 0 keeps the file's own frame rate or size, as in `video_io.decode_video`.
  """
  if any(value is not None and not (math.isfinite(value) and value >= 0) for value in (fps, short_side)):
    raise ValueError(f'fps and short_side must be positive, or 0/None to keep the source; '
                     f'got fps={fps}, short_side={short_side}')
  fps, short_side = fps or None, short_side or None
  return VideoBuilderConfig(
      name=config_name(fps, short_side), fps=None if fps is None else float(fps),
      short_side=None if short_side is None else int(short_side),
      description=f'Frames decoded at {fps or "native"} fps, short side {short_side or "native"}, JPEG.')


DEFAULT_CONFIG = make_config()


def ordered_map(fn: Callable[[Any], Any], items: Iterable[Any], workers: int) -> Iterator[Any]:
  """`map(fn, items)` on `workers` threads, in input order, with a bounded number of items in flight."""
  if workers <= 1:
    yield from map(fn, items)
    return
  with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix='video_decode') as pool:
    pending = collections.deque()
    for item in items:
      pending.append(pool.submit(fn, item))
      if len(pending) >= 2 * workers:
        yield pending.popleft().result()
    while pending:
      yield pending.popleft().result()


class ManualVideoBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base of the builders: a subclass sets `LAYOUT` (a key of `annotations.LAYOUTS`) and its instructions.

  Extra constructor arguments (beside TFDS's `data_dir`, `config`, `version`):
    splits: prepare only these splits of the download (default: all it has).
    workers: threads decoding and JPEG-encoding videos in parallel (output order is unchanged).
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Frames as JPEG at a configurable fps and short side; unlabeled videos -> -1.'}
  BUILDER_CONFIGS = [DEFAULT_CONFIG]
  LAYOUT: ClassVar[str] = ''
  EXPECTED_NUM_CLASSES: ClassVar[Optional[int]] = None
  DESCRIPTION: ClassVar[str] = ''
  HOMEPAGE: ClassVar[Optional[str]] = None

  def __init__(self, *, splits: Optional[Sequence[str]] = None, workers: int = 1, **kwargs: Any):
    self._requested_splits = tuple(splits) if splits else None
    self._workers = max(1, int(workers))
    self._skipped: List[Dict[str, str]] = []
    self._partial: List[Dict[str, Any]] = []
    self._split_counts: Dict[str, Dict[str, int]] = {}
    self._all_entries: annotations.Entries = {}
    self._entries: annotations.Entries = {}
    self._duplicates: Dict[Tuple[str, str], str] = {}
    super().__init__(**kwargs)

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    """This class's source file.

    TFDS 4.9.x looks it up through the `importlib_resources` backport, which it only declares for
    Python < 3.9 (tensorflow/datasets#11212), so preparing fails without it; the file is all it needs.
    """
    return epath.Path(inspect.getfile(cls))

  # ----------------------------------------------------------------------------------------- dataset info
  def _info(self) -> tfds.core.DatasetInfo:
    # The label names are set in `_split_generators` (they come from the download's annotations) or
    # restored from the prepared dataset's `label.labels.txt` when it is read back.
    features = tfds.features.FeaturesDict({
        'video': tfds.features.Video(shape=(None, None, None, 3), encoding_format='jpeg'),
        'label': tfds.features.ClassLabel(),
        'video_id': tfds.features.Text(),
        'label_text': tfds.features.Text(),
    })
    return tfds.core.DatasetInfo(
        builder=self, description=self.DESCRIPTION, features=features,
        supervised_keys=('video', 'label'), homepage=self.HOMEPAGE)

  @property
  def report_path(self) -> str:
    """Where `report.json` is (once prepared): next to the records, in this builder's data directory."""
    return os.path.join(self.data_dir, REPORT_FILENAME)

  def load_report(self) -> Dict[str, Any]:
    """The prepared dataset's `report.json` (raises FileNotFoundError if it was not prepared here)."""
    with open(self.report_path) as f:
      return json.load(f)

  # ----------------------------------------------------------------------------------------- annotations
  def _load_entries(self, input_dir: str) -> Tuple[Dict[str, List[annotations.VideoEntry]], List[str]]:
    """(entries of the requested splits, class names over all splits) read from the download."""
    entries = self._all_entries = annotations.LAYOUTS[self.LAYOUT](input_dir)
    names = list(annotations.label_names(entries, layout=self.LAYOUT, input_dir=input_dir))
    if self._requested_splits is not None:
      wanted = [annotations.normalize_split(s) or s for s in self._requested_splits]  # 'val' -> 'validation'
      unknown = [s for s, w in zip(self._requested_splits, wanted) if w not in entries]
      if unknown:
        raise ValueError(f'{self.name}: split(s) {unknown} not found in {input_dir}; '
                         f'the download has splits {sorted(entries)}')
      entries = {s: entries[s] for s in dict.fromkeys(wanted)}
    return entries, names

  def _check_num_classes(self, names: Sequence[str], input_dir: str) -> None:
    expected = self.EXPECTED_NUM_CLASSES
    if expected is not None and len(names) != expected:
      raise ValueError(
          f'{self.name} expects {expected} classes, but the annotations in {input_dir} name '
          f'{len(names)}. Check that the download is the right dataset, or use the builder that accepts '
          f'any class count.')

  # ----------------------------------------------------------------------------------------- generation
  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> Dict[str, Iterator[Any]]:
    input_dir = os.fspath(dl_manager.manual_dir)
    entries, names = self._load_entries(input_dir)
    self._check_num_classes(names, input_dir)
    self.info.features['label'].names = names
    logging.info('%s: %d classes; entries per split: %s', self.name, len(names),
                 {s: len(e) for s, e in entries.items()})
    self._skipped, self._partial, self._split_counts = [], [], {}
    self._entries, self._duplicates = entries, annotations.duplicate_files(entries)
    generators = {}
    for split, split_entries in entries.items():
      self._split_counts[split] = {'entries': len(split_entries), 'written': 0, 'partial': 0, 'skipped': 0}
      examples = self._generate_examples(split=split, entries=split_entries)
      first = next(examples, None)  # TFDS cannot write an empty split: leave out a split with no video.
      if first is None:
        logging.warning('%s: split %r has no usable video; it is not written.', self.name, split)
        continue
      generators[split] = itertools.chain([first], examples)
    return generators

  def _generate_examples(self, split: str,
                         entries: Sequence[annotations.VideoEntry]) -> Iterator[Tuple[str, Example]]:
    """(key, example) for every usable entry of `split`; the others are recorded as skipped."""
    indexed = list(enumerate(entries))
    results = ordered_map(lambda item: self._encode_entry(item[1]), indexed, self._workers)
    for (index, entry), (example, reason, info) in zip(indexed, results):
      if example is None:
        self._record_skip(split, entry, reason)
        continue
      if info is not None and info.partial:
        self._record_partial(split, entry, info)
      else:
        self._split_counts[split]['written'] += 1
      yield f'{index:09d}_{entry.video_id}', example

  def _encode_entry(self, entry: annotations.VideoEntry
                   ) -> Tuple[Optional[Example], str, Optional[video_io.VideoInfo]]:
    """(example, '', decoding info) for a usable entry, else (None, why it was skipped, None)."""
    reason = _file_problem(entry.path) or self._duplicates.get((entry.split, entry.video_id), '')
    if reason:
      return None, reason, None
    label_feature = self.info.features['label']
    if entry.label is not None and entry.label not in label_feature.names:
      return None, f'label {entry.label!r} is not among the {label_feature.num_classes} classes', None
    config = self.builder_config
    try:
      frames, info = video_io.decode_video_info(entry.path, fps=config.fps, short_side=config.short_side)
    except video_io.VideoDecodeError as e:
      return None, f'undecodable: {e.reason}', None
    except (OSError, RuntimeError, ValueError, MemoryError) as e:  # Never let one video end the build.
      return None, f'undecodable: {type(e).__name__}: {e}', None
    if frames.ndim != 4 or frames.shape[0] == 0:
      return None, f'no frames decoded (array of shape {frames.shape})', None
    return {
        'video': video_io.encode_jpeg(frames),
        'label': UNLABELED if entry.label is None else label_feature.str2int(entry.label),
        'video_id': entry.video_id,
        'label_text': entry.label or '',
    }, '', info

  def _record_partial(self, split: str, entry: annotations.VideoEntry, info: video_io.VideoInfo) -> None:
    self._split_counts[split]['partial'] += 1
    self._partial.append({'split': split, 'video_id': entry.video_id, 'path': entry.path,
                          'declared_frames': info.declared_frames, 'decoded_frames': info.decoded_frames,
                          'damage': info.damage})
    logging.warning('%s: stored %s video %r (%s) partial: %s', self.name, split, entry.video_id, entry.path,
                    info.describe())

  def _record_skip(self, split: str, entry: annotations.VideoEntry, reason: str) -> None:
    self._split_counts[split]['skipped'] += 1
    self._skipped.append({'split': split, 'video_id': entry.video_id, 'path': entry.path or '',
                          'reason': reason})
    logging.warning('%s: skipped %s video %r (%s): %s', self.name, split, entry.video_id,
                    entry.path or 'no file', reason)

  def _download_and_prepare(self, dl_manager: tfds.download.DownloadManager,
                            download_config: tfds.download.DownloadConfig) -> None:
    super()._download_and_prepare(dl_manager=dl_manager, download_config=download_config)
    # `self.data_dir` is the temporary directory TFDS renames into place once everything is written, so
    # the report only ever appears together with a complete dataset.
    self._write_report(os.fspath(dl_manager.manual_dir))

  def _file_accounting(self, input_dir: str) -> Tuple[Dict[str, int], List[Dict[str, str]]]:
    skipped = {(s['split'], s['video_id']) for s in self._skipped}
    partial = {(p['split'], p['video_id']) for p in self._partial}
    outcomes = {(split, e.video_id): 'partial' if (split, e.video_id) in partial else
                'skipped' if (split, e.video_id) in skipped else 'written'
                for split, entries in self._entries.items() for e in entries}
    outcomes.update({key: 'duplicate' for key in self._duplicates})
    return reporting.file_accounting(self.LAYOUT, input_dir, self._all_entries, self._entries, outcomes)

  def _write_report(self, input_dir: str) -> None:
    config = self.builder_config
    files, unused = self._file_accounting(input_dir)
    report = {
        'builder': self.name,
        'config': config.name,
        'version': str(self.version),
        'input_dir': input_dir,
        'fps': config.fps,
        'short_side': config.short_side,
        'num_classes': self.info.features['label'].num_classes,
        'splits': self._split_counts,
        'num_partial': len(self._partial),
        'num_skipped': len(self._skipped),
        'files': files,
        'partial': self._partial,
        'skipped': self._skipped,
        'unused_files': unused,
    }
    with open(os.path.join(self.data_dir, REPORT_FILENAME), 'w') as f:
      json.dump(report, f, indent=2)
    logging.info('%s: %d video(s) skipped; report in %s', self.name, len(self._skipped),
                 os.path.join(self.data_dir, REPORT_FILENAME))


def _file_problem(path: Optional[str]) -> str:
  """Why the file cannot be a video ('' if it may be one); cheap checks before decoding."""
  if not path:
    return 'missing: no video file found for this annotation row'
  if not os.path.isfile(path):
    return f'missing: {path} does not exist'
  if os.path.getsize(path) == 0:
    return 'empty: zero-byte file'
  return ''
