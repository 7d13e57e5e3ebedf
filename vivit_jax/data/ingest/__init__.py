"""Turning downloaded videos into data the pipelines read: decoding (`video_io.py`, upright by `orientation.py`),
finding a download's files (`video_files.py`), the datasets' annotation layouts (`annotations.py`), DMVR
TFRecords (`dmvr_records.py`), TFDS builders (`builders/`), and the preparation of a whole download into either
(`prepare.py`, decoding in `parallel.py` worker processes), accounted for in `report.json` (`report.py`)."""
