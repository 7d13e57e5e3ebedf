"""Training end to end on real video records: DMVR TFRecords and a TFDS dataset prepared from a video folder."""

import os

import numpy as np

from tests.data.test_video import dmvr_config, write_split
from tests.tiny import tiny_config
from vivit_jax import train
from vivit_jax.data.ingest import builders
from vivit_jax.data.ingest.video_io import write_video


def test_two_steps_on_dmvr_tfrecords(tmp_path):
  data = str(tmp_path / 'data')
  os.makedirs(data)
  write_split(data, 'train', 0, 20, shards=3)
  write_split(data, 'validation', 20, 9, shards=2)
  write_split(data, 'single', 29, 5, shards=1, frames=3)  # The config's test table.
  config = dmvr_config(data, num_training_steps=2, lr_configs__warmup_steps=1.0, log_eval_steps=1000,
                       eval_batch_size=8, checkpoint_steps=1000, dataset_configs__examples_per_subset__train=20)
  results = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert results['status'] == 'completed'
  assert results['metrics']['valid/num_videos'] == 9
  assert np.isfinite(results['metrics']['train/loss'])
  # Scenic's multi-view test at the end: 2 temporal clips x 3 crops of each of the 5 test videos.
  assert results['metrics']['test/num_videos'] == 5 and results['metrics']['test/num_views'] == 30
  assert np.isfinite(results['metrics']['test/accuracy'])


def _folder(root):
  rng = np.random.default_rng(0)
  for split, count in (('train', 4), ('validation', 3)):
    for label in ('left', 'right'):
      os.makedirs(os.path.join(root, split, label))
      for i in range(count):
        frames = rng.integers(0, 255, (10, 24, 32, 3), dtype=np.uint8)
        write_video(os.path.join(root, split, label, f'{i}.mp4'), frames, fps=10)


def test_two_steps_on_a_tfds_dataset_prepared_from_a_folder(tmp_path):
  _folder(str(tmp_path / 'videos'))
  summary = builders.prepare_tfds('folder', str(tmp_path / 'videos'), str(tmp_path / 'tfds'), fps=0,
                                  short_side=20)
  config = tiny_config(
      'factorized_encoder', num_classes=2, dataset_name='tfds',
      dataset_configs__tfds_name=f"video_folder/{summary['config']}", dataset_configs__base_dir=str(
          tmp_path / 'tfds'), dataset_configs__num_frames=4, dataset_configs__min_resize=20,
      dataset_configs__crop_size=16, dataset_configs__augmentation_params__do_jitter_scale=False,
      dataset_configs__examples_per_subset__train=8, model__patches__size=(4, 4, 2), batch_size=8,
      eval_batch_size=8, num_training_steps=2, lr_configs__warmup_steps=1.0, log_eval_steps=1000,
      checkpoint_steps=1000)
  results = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert results['status'] == 'completed'
  assert results['metrics']['valid/num_videos'] == 6
