"""Something-Something v2 from the label files and `.webm` videos the user downloaded."""

from vivit_jax.data.ingest.builders import base


class SomethingSomethingV2(base.ManualVideoBuilder):
  """Something-Something v2: 174 template classes; the test videos carry no label (label -1)."""

  name = 'vivit_something_something_v2'
  LAYOUT = 'ssv2'
  HOMEPAGE = 'https://developer.qualcomm.com/software/ai-datasets/something-something'
  DESCRIPTION = """\
Something-Something v2 (Goyal et al. 2017): 220,847 short clips of people doing 174 template actions with
everyday objects, prepared from a local download. Class names are the templates without brackets (as in
labels.json); frames are stored as JPEG at the configured fps and short side. Do not flip these videos
horizontally in training: several classes say left or right.
"""
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Put the Something-Something v2 files in the manual directory (`manual_dir`, the `--input` of
scripts/prepare_data.py):

  <manual_dir>/
    labels.json                           {"<template without brackets>": "<index>", ...}
    train.json, validation.json, test.json  lists of {"id", "label", "template", "placeholders"}
                                          (test.json: "id" only)
    ... {id}.webm                         the videos (e.g. 20bn-something-something-v2/), anywhere below

Videos that are missing, empty or undecodable are skipped and listed in report.json. Test videos have no
label: label -1 and label_text ''.
"""
