"""Config validation errors name the key, the expected value and the closest valid key."""

import pytest

from tests.config.config_testing import error_of, scenic_config, scenic_file_with


# Errors name the key and suggest the fix.


@pytest.mark.parametrize('path, value, suggestion', [
    ('batchsize', 32, 'batch_size'),  # misspelt top-level key
    ('model.hiden_size', 512, 'model.hidden_size'),  # misspelt nested key
    ('num_classes', 400, 'dataset_configs.num_classes'),  # right name, wrong level
])
def test_unknown_key_names_the_closest_valid_key(path, value, suggestion):
  config = scenic_config()
  *parents, leaf = path.split('.')
  node = config
  for parent in parents:
    node = node[parent]
  node[leaf] = value
  message = error_of(config)
  assert f"unknown config key '{path}'" in message
  assert f"did you mean '{suggestion}'?" in message


def test_wrong_type_number_of_layers(tmp_path):
  path = scenic_file_with(tmp_path, ('config.model.num_layers = 12', "config.model.num_layers = 'twelve'"))
  message = error_of(path)
  assert message.startswith(path)
  assert "'model.num_layers' must be an integer" in message
  assert "'twelve'" in message


def test_wrong_type_patch_size(tmp_path):
  path = scenic_file_with(tmp_path, ('config.model.patches.size = [16, 16, 2]', 'config.model.patches.size = 16'))
  message = error_of(path)
  assert "'model.patches.size' must be a list" in message
  assert 'int 16' in message


@pytest.mark.parametrize('kind, model_number', [('factorized_self_attention_block', 3),
                                                ('factorized_dot_product_attention', 4)])
def test_token_classifier_without_a_class_token(kind, model_number):
  config = scenic_config()
  config.model.attention_config.type = kind
  config.model.classifier = 'token'
  message = error_of(config)
  assert "'model.classifier' is 'token'" in message
  assert f'(Model {model_number}) has no class token' in message
  assert "expected 'gap'" in message


def test_patches_that_do_not_divide_the_crop():
  config = scenic_config()
  config.dataset_configs.crop_size = 200
  message = error_of(config)
  assert "does not divide 'dataset_configs.crop_size' 200" in message
  assert 'multiple of 16x16' in message


def test_tubelet_time_that_does_not_divide_the_frames():
  config = scenic_config()
  config.dataset_configs.num_frames = 31
  message = error_of(config)
  assert "'model.patches.size' time 2 does not divide 'dataset_configs.num_frames' 31" in message


def test_bad_choice_with_suggestion():
  config = scenic_config()
  config.model.attention_config.type = 'spacetim'
  message = error_of(config)
  assert "'model.attention_config.type' is 'spacetim'" in message
  assert "did you mean 'spacetime'?" in message


def test_learning_rate_factor_typo():
  config = scenic_config()
  config.lr_configs.factors = 'constant * cosine_decay * linear_wramup'
  message = error_of(config)
  assert "'lr_configs.factors' has unknown factor 'linear_wramup'" in message
  assert "did you mean 'linear_warmup'?" in message


def test_multihead_without_class_splits():
  config = scenic_config()
  config.model_name = 'vivit_multihead_classification'
  message = error_of(config)
  assert "'vivit_multihead_classification' needs 'dataset_configs.class_splits'" in message


def test_class_splits_that_do_not_sum_to_num_classes():
  config = scenic_config()
  config.model_name = 'vivit_multihead_classification'
  config.dataset_configs.num_classes = 397
  config.dataset_configs.class_splits = [300, 96]
  message = error_of(config)
  assert "'dataset_configs.class_splits' [300, 96] sums to 396" in message
  assert "'dataset_configs.num_classes' is 397" in message


def test_key_and_type_problems_are_reported_together(tmp_path):
  path = scenic_file_with(
      tmp_path, ('config.rng_seed = 0', 'config.rngseed = 0'),
      ('config.model.hidden_size = 768', 'config.model.hiden_size = 768'),
      ('config.model.num_layers = 12', "config.model.num_layers = 'twelve'"))
  message = error_of(path)
  assert '3 problems' in message
  assert "unknown config key 'rngseed'; did you mean 'rng_seed'?" in message
  assert "unknown config key 'model.hiden_size'; did you mean 'model.hidden_size'?" in message
  assert "'model.num_layers' must be an integer" in message


def test_combination_problems_are_reported_together():
  config = scenic_config()
  config.model.attention_config.type = 'factorized_self_attention_block'
  config.dataset_configs.crop_size = 200
  config.dataset_configs.num_frames = 31
  message = error_of(config)
  assert '3 problems' in message
  assert 'has no class token' in message
  assert "'dataset_configs.crop_size' 200" in message
  assert "'dataset_configs.num_frames' 31" in message


def test_unknown_keys_and_bad_combinations_are_reported_together():
  config = scenic_config()
  config.model.hiden_size = 3
  config.model.classifier = 'tokn'
  config.dataset_configs.crop_size = 225
  message = error_of(config)
  assert "'model.hidden_size'" in message and "did you mean 'token'" in message
  assert 'does not divide' in message and '3 problems' in message


def test_a_classifier_without_num_classes_is_refused_at_validation():
  config = scenic_config()
  config.dataset_configs.num_classes = None
  assert "'dataset_configs.num_classes' is not set; expected the number of classes" in error_of(config)


def test_more_sampled_frames_than_the_clip_has_is_said_before_training():
  from vivit_jax.config import ConfigWarning, load_config  # pylint: disable=import-outside-toplevel
  config = scenic_config()
  config.model.temporal_encoding_config.method = 'temporal_sampling'
  config.model.temporal_encoding_config.n_sampled_frames = 64
  config.model.patches.size = [16, 16]
  with pytest.warns(ConfigWarning, match=r"'model.temporal_encoding_config.n_sampled_frames' is 64, more than the "
                                         r"clip's 'dataset_configs.num_frames' \d+: all \d+ frames are used"):
    load_config(config)
