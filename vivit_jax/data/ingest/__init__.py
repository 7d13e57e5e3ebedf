"""Turning downloaded videos into data the pipelines read: decoding (`video_io.py`), the datasets' annotation
layouts (`annotations.py`), DMVR TFRecords (`dmvr_records.py`), TFDS builders (`builders/`), and the preparation
of a whole download into either (`prepare.py`)."""
