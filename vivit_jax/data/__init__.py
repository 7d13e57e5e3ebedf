"""Input data: `create_pipeline(config)`, the one factory of the pipelines the trainer and evaluators read.

`base.py` holds the interface and what serving needs without a pipeline (`preprocessing_spec`); `synthetic.py`
and `video.py` (tf.data over DMVR TFRecords and TFDS) the pipelines; `transforms/` clip sampling and augmentation;
`ingest/` turning downloaded videos into records (video decoding, annotations, DMVR records, TFDS builders).
"""

from typing import Optional

import ml_collections

from vivit_jax.data.base import (SINGLE_VIEW, Batch, DataError, Pipeline, SplitFacts, Views, prefetch,
                                 preprocessing_spec, read_label_map)
from vivit_jax.data.checks import check_data

DATASETS = ('synthetic', 'video_tfrecord_dataset', 'tfds')


def create_pipeline(config: ml_collections.ConfigDict, process_index: Optional[int] = None,
                    process_count: Optional[int] = None) -> Pipeline:
  """The pipeline for `config.dataset_name`: 'synthetic', 'video_tfrecord_dataset' (DMVR) or 'tfds'."""
  if config.dataset_name == 'synthetic':
    from vivit_jax.data.synthetic import SyntheticPipeline  # pylint: disable=g-import-not-at-top
    return SyntheticPipeline(config, process_index, process_count)
  if config.dataset_name not in DATASETS:
    raise DataError(f"dataset_name '{config.dataset_name}'; expected one of {sorted(DATASETS)}")
  from vivit_jax.data import video  # pylint: disable=g-import-not-at-top  (TensorFlow: only when needed)
  pipelines = {'video_tfrecord_dataset': video.DMVRPipeline, 'tfds': video.TFDSPipeline}
  return pipelines[config.dataset_name](config, process_index, process_count)


__all__ = ['DATASETS', 'SINGLE_VIEW', 'Batch', 'DataError', 'Pipeline', 'SplitFacts', 'Views', 'check_data',
           'create_pipeline', 'prefetch', 'preprocessing_spec', 'read_label_map']
