"""Tiny training configs and helpers shared by the training tests."""

import json
import os

import jax
import numpy as np

from tests.tiny import tiny_config


def train_config(kind='factorized_encoder', **overrides):
  """A tiny synthetic run: 64 training and 20 validation clips of 8x16x16, batch 16, two steps."""
  settings = dict(
      dataset_name='synthetic', dataset_configs__examples_per_subset__train=64,
      dataset_configs__examples_per_subset__validation=20, dataset_configs__augmentation_params__do_flip=False,
      batch_size=16, eval_batch_size=8, num_training_steps=2, lr_configs__warmup_steps=1.0,
      lr_configs__base_learning_rate=0.01, log_summary_steps=1, log_eval_steps=1000, checkpoint_steps=1000,
      dataset_configs__prefetch_to_device=1)
  settings.update(overrides)
  return tiny_config(kind, **settings)


def read_json(workdir, name):
  with open(os.path.join(workdir, name)) as f:
    return json.load(f)


def host_tree(tree):
  """The tree as numpy arrays (for bitwise comparisons)."""
  return jax.tree_util.tree_map(np.asarray, jax.device_get(tree))


def assert_trees_equal(a, b):
  leaves_a, _ = jax.tree_util.tree_flatten_with_path(host_tree(a))
  leaves_b, _ = jax.tree_util.tree_flatten_with_path(host_tree(b))
  assert [p for p, _ in leaves_a] == [p for p, _ in leaves_b]
  for (path, x), (_, y) in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(x, y, err_msg=jax.tree_util.keystr(path))
