"""A generic folder of videos: `{split}/{class}/*` or a CSV of `path,label`."""

from vivit_jax.data.ingest.builders import base


class VideoFolder(base.ManualVideoBuilder):
  """Any labelled video collection; the classes are the sorted class folder (or CSV label) names."""

  name = 'vivit_video_folder'
  LAYOUT = 'folder'
  DESCRIPTION = """\
Videos from a local folder tree, one sub-folder per split and class. Frames are stored as JPEG at the
configured fps and short side.
"""
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Arrange the videos in the manual directory (`manual_dir`, the `--input` of scripts/prepare_data.py) as

  <manual_dir>/{split}/{class}/*.{mp4,webm,avi,mkv,mov,...}     e.g. train/juggling/clip001.mp4

or list them in a CSV of `path,label` per split (see vivit_jax/data/ingest/annotations.py: folder_entries).
The class list is the sorted set of class names over all splits. Videos that are empty or undecodable are
skipped and listed in report.json.
"""
