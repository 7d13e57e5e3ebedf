"""Kinetics-400/600/700 from the official CSVs and the clips the user downloaded.

All three share one layout and differ only in their class count, which is checked against the CSVs;
`vivit_kinetics` accepts any count (a subset, Kinetics-700-2020, a mini-Kinetics).
"""

from vivit_jax.data.ingest.builders import base

_INSTRUCTIONS = """\
Put the Kinetics{version} annotations and clips in the manual directory (`manual_dir`, the `--input`
of scripts/prepare_data.py):

  <manual_dir>/
    train.csv, validate.csv, test.csv    (the official CSVs: label,youtube_id,time_start,time_end,split;
                                          they may also sit in a sub-folder such as kinetics400/)
    ... {{youtube_id}}_{{time_start:06d}}_{{time_end:06d}}.mp4   (the trimmed clips, anywhere below:
                                          split folders such as train/<class>/, or all in one folder)

The clips are used as they are (not trimmed again). Rows whose clip is missing, empty or undecodable are
skipped and listed in report.json. Test rows without a label get label -1 and label_text ''.
"""

_DESCRIPTION = """\
Kinetics{version}: ~10 s YouTube clips of {classes} human actions (Kay et al. 2017; Carreira et al. 2018,
2019), prepared from a local download. Frames are stored as JPEG at the configured fps and short side.
"""

_HOMEPAGE = 'https://github.com/cvdfoundation/kinetics-dataset'


class Kinetics(base.ManualVideoBuilder):
  """Kinetics with whatever classes its CSVs name (any class count)."""

  name = 'vivit_kinetics'
  LAYOUT = 'kinetics'
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS.format(version=' (any class count)')
  DESCRIPTION = _DESCRIPTION.format(version='', classes='N (as many as the CSVs name)')
  HOMEPAGE = _HOMEPAGE


class Kinetics400(Kinetics):
  """Kinetics-400: the CSVs must name exactly 400 classes."""

  name = 'vivit_kinetics400'
  EXPECTED_NUM_CLASSES = 400
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS.format(version='-400')
  DESCRIPTION = _DESCRIPTION.format(version='-400', classes=400)


class Kinetics600(Kinetics):
  """Kinetics-600: the CSVs must name exactly 600 classes."""

  name = 'vivit_kinetics600'
  EXPECTED_NUM_CLASSES = 600
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS.format(version='-600')
  DESCRIPTION = _DESCRIPTION.format(version='-600', classes=600)


class Kinetics700(Kinetics):
  """Kinetics-700: the CSVs must name exactly 700 classes."""

  name = 'vivit_kinetics700'
  EXPECTED_NUM_CLASSES = 700
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS.format(version='-700')
  DESCRIPTION = _DESCRIPTION.format(version='-700', classes=700)
