"""The data held against the config before the first step (and before an evaluation): `check_data`.

A dataset that disagrees with its config trains without complaint and reports numbers that mean nothing (a
label beyond `num_classes` one-hot encodes to all zeros, so `num_classes=1` on two-class data reaches loss 0 and
accuracy 1.0). So every split a run reads is checked first, from `Pipeline.split_facts` (DMVR shards are read
once and cached; TFDS and synthetic data know their facts without reading):

- every label is in [0, num_classes), per head for multi-head tasks (one index per head), after `label_offset`;
  every video has one (a multi-label video may have none);
- the videos counted match `dataset_configs.examples_per_subset` where it is set (an error naming both numbers);
- the split holds videos, and no shard is unreadable (truncated, CRC-corrupt: named with the record where it
  breaks) and no record lacks frames; empty shards are named in a warning;
- the classes the data declares (a TFDS ClassLabel) are `num_classes`. (A DMVR `label_map.json` that disagrees
  is refused when the pipeline reads the class names.)

All problems of all splits are reported together, in one `DataError` (the first MAX_LISTED of them).
"""

import logging
from typing import List, Sequence, Tuple

from vivit_jax.data.base import DataError, Pipeline, SplitFacts

MAX_LISTED = 8


def _label_problems(pipeline: Pipeline, split: str, facts: SplitFacts) -> List[str]:
  task, where = pipeline.task, f"split '{split}' ({facts.source})"
  offset = pipeline.config.dataset_configs.get('label_offset') or 0
  shifted = f' after label_offset {offset}' if offset else ''
  problems = []
  if facts.unlabeled and not task.multi_label:  # A multi-label video may belong to no class.
    problems.append(f'{where}: {facts.unlabeled} of {facts.records} videos have no label')
  if facts.label_min is not None and facts.label_min < 0:
    problems.append(f'{where}: class index {facts.label_min}{shifted} is negative; expected indices in '
                    f'[0, {task.num_classes}) (check dataset_configs.label_offset)')
  if task.multi_head:
    bounds = [(f"head '{h.name}'", h.num_classes, m) for h, m in zip(task.heads, facts.label_max)]
    heads = len(task.heads)
    if facts.labels_per_video not in (None, (heads, heads)):
      fewest, most = facts.labels_per_video
      stored = f'{fewest}' if fewest == most else f'{fewest} to {most}'
      problems.append(f'{where}: videos store {stored} class indices, but class_splits defines {heads} heads; '
                      'expected one index per head')
  else:
    bounds = [('dataset_configs.num_classes', task.num_classes, max(facts.label_max))] if facts.label_max else []
  for name, size, largest in bounds:
    if largest >= size:
      problems.append(f'{where}: class index {largest}{shifted} is out of range for {name} = {size}; expected '
                      f'indices in [0, {size}) (set num_classes to at least {largest + 1}, or check label_offset)')
  return problems


def split_problems(pipeline: Pipeline, split: str, facts: SplitFacts, counts_must_match: bool = True) -> List[str]:
  """Everything about `split` that makes a run on it wrong (empty when it may be used); a count that differs from
  `examples_per_subset` is logged as a warning instead unless `counts_must_match`."""
  where = f"split '{split}' ({facts.source})"
  problems = list(facts.problems)
  if facts.records == 0 and not problems:
    problems.append(f'{where} holds no videos')
  expected = pipeline.config.dataset_configs.examples_per_subset.get(split)
  if expected is not None and expected != facts.records and not facts.problems:
    mismatch = (f"'dataset_configs.examples_per_subset.{split}' is {expected}, but {where} holds "
                f'{facts.records} videos')
    if counts_must_match:
      problems.append(f'{mismatch}; set it to {facts.records} (epochs and schedules count with it)')
    else:
      logging.warning('%s; every video there is evaluated', mismatch)
  if facts.classes is not None and facts.classes != pipeline.num_classes:
    problems.append(f"{where} declares {facts.classes} classes, but 'dataset_configs.num_classes' is "
                    f'{pipeline.num_classes}')
  return problems + _label_problems(pipeline, split, facts)


def check_data(pipeline: Pipeline, splits: Sequence[str],
               counts_must_match: bool = True) -> List[Tuple[str, SplitFacts]]:
  """Checks `splits` of `pipeline` against its config; raises one DataError listing every problem, logs the
  notes as warnings, and returns the facts it read. Training checks with `counts_must_match` (epochs count with
  `examples_per_subset`); an evaluation only warns of a different count."""
  problems, checked = [], []
  for split in dict.fromkeys(splits):
    facts = pipeline.split_facts(split)
    checked.append((split, facts))
    problems += split_problems(pipeline, split, facts, counts_must_match)
    for note in facts.notes:
      logging.warning("Split '%s': %s", split, note)
  if problems:
    more = f'; and {len(problems) - MAX_LISTED} more' if len(problems) > MAX_LISTED else ''
    raise DataError(f'the data does not fit the config: {"; ".join(problems[:MAX_LISTED])}{more}')
  return checked
