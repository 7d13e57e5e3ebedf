"""End-to-end training runs on tiny synthetic configs: every variant, resume, failure modes, init_from."""

import logging
import os
import pathlib
import warnings

import numpy as np
import pytest

from tests import paths
from tests.train_testing import assert_trees_equal, host_tree, read_json, train_config
from vivit_jax.train import loop as train
from vivit_jax.checkpoints import CheckpointError, CheckpointManager
from vivit_jax.checkpoints.pretrained_posemb import adapt_posemb
from vivit_jax.config import load_config
from vivit_jax.train import reporting

ROOT = paths.ROOT
VALID_METRICS = ('valid/accuracy', 'valid/accuracy_top_5', 'valid/loss')
TRAIN_METRICS = ('train/loss', 'train/accuracy', 'learning_rate', 'grad_norm')


@pytest.mark.parametrize('kind', ['spacetime', 'factorized_encoder', 'factorized_self_attention_block',
                                  'factorized_dot_product_attention'])
def test_two_steps_of_every_variant(tmp_path, kind):
  workdir = str(tmp_path)
  results = train.train_and_evaluate(train_config(kind, checkpoint_steps=1), workdir)
  assert results['status'] == 'completed' and results['step'] == 2
  metrics = results['metrics']
  for name in TRAIN_METRICS + VALID_METRICS:
    assert np.isfinite(metrics[name]), name
  # 20 validation clips in batches of 8: one exact pass, the padding of the last batch masked out.
  assert metrics['valid/num_videos'] == 20 and metrics['valid/num_views'] == 20
  assert read_json(workdir, 'results.json') == results
  config = read_json(workdir, 'config.json')
  assert config['model']['attention_config']['type'] == kind
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['1', '2']
  assert any(name.startswith('events.out.tfevents') for name in os.listdir(workdir))
  meta = CheckpointManager(workdir).metadata(2)
  assert meta['data']['next_step'] == 2
  assert meta['preprocessing']['num_frames'] == 8 and meta['preprocessing']['crop_size'] == 16
  assert meta['preprocessing']['value_range'] == [-1.0, 1.0]
  assert len(meta['preprocessing']['label_names']) == 5
  assert meta['config']['model']['attention_config']['type'] == kind


def test_relative_workdir(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  results = train.train_and_evaluate(train_config('spacetime'), 'runs/relative')
  assert results['status'] == 'completed'
  assert CheckpointManager(str(tmp_path / 'runs' / 'relative')).all_steps() == [2]


def test_every_regulariser_together_with_named_heads(tmp_path):
  config = train_config(
      'spacetime', model_name='vivit_multihead_classification', dataset_configs__class_splits=(2, 3),
      dataset_configs__split_names=('verb', 'noun'), label_smoothing=0.1, mixup__alpha=0.3, cutmix__alpha=1.0,
      gradient_accumulation_steps=2, ema_decay=0.9, model__stochastic_droplayer_rate=0.2,
      model__dropout_rate=0.1, model__attention_dropout_rate=0.1, l2_decay_factor=1e-4, max_grad_norm=1.0,
      optimizer='adamw', optimizer_configs__weight_decay=0.05)
  _, results = train.train(config, str(tmp_path))
  metrics = results['metrics']
  for head in ('verb', 'noun'):
    for prefix in ('valid', 'valid_ema'):
      assert 0.0 <= metrics[f'{prefix}/{head}/accuracy'] <= 1.0
      assert np.isfinite(metrics[f'{prefix}/{head}/loss'])
  assert metrics['valid/num_videos'] == 20 and metrics['valid_ema/num_videos'] == 20


class _StopAt:
  """A PreemptionWatcher stand-in that asks to stop once, at `step` (as a SIGTERM would)."""

  def __init__(self, step):
    self.step = step

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    return None

  def should_stop(self, step):
    return step == self.step


def test_interrupted_run_resumes_bitwise(tmp_path, monkeypatch):
  config = train_config('factorized_encoder', num_training_steps=5, model__dropout_rate=0.1,
                        mixup__alpha=0.5, ema_decay=0.5)
  straight, results = train.train(config, str(tmp_path / 'straight'))
  # The training speed: this process's steps after its first (which waited for the compilation).
  speed = read_json(str(tmp_path / 'straight'), 'results.json')['speed']
  assert speed == results['speed'] and (speed['steps'], speed['from_step']) == (4, 1)
  assert speed['clips_per_s'] == pytest.approx(16 * speed['steps_per_s'], rel=1e-3) and speed['steps_per_s'] > 0
  assert f"{speed['steps_per_s']:g} steps/s, {speed['clips_per_s']:g} clips/s" in reporting.format_results(results)

  with monkeypatch.context() as patch:
    patch.setattr(train, 'PreemptionWatcher', lambda: _StopAt(3))
    _, first = train.train(config, str(tmp_path / 'resumed'))
  assert first['status'] == 'preempted' and first['step'] == 3 and 'speed' not in first
  assert CheckpointManager(str(tmp_path / 'resumed')).all_steps() == [3]
  resumed, second = train.train(config, str(tmp_path / 'resumed'))
  assert second['status'] == 'completed' and second['step'] == 5
  assert (second['speed']['steps'], second['speed']['from_step']) == (1, 4)
  assert int(resumed.step) == 5
  assert_trees_equal(resumed, straight)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
  config = train_config('spacetime', num_training_steps=4, checkpoint_steps=1, optimizer='sgd',
                        lr_configs__base_learning_rate=1e30, lr_configs__factors='constant')
  with pytest.raises(train.NonFiniteLossError, match=r'train/loss is (nan|inf|-inf) at step \d') as error:
    train.train(config, str(tmp_path))
  bad_step = int(str(error.value).split('at step ')[1].split(';')[0])
  assert bad_step >= 2
  assert CheckpointManager(str(tmp_path)).all_steps()[-1] == bad_step - 1
  assert read_json(str(tmp_path), 'results.json')['status'].startswith('failed')


def _truncate_state_files(step_dir):
  for root, _, files in os.walk(os.path.join(step_dir, 'state')):
    for name in files:
      with open(os.path.join(root, name), 'r+b') as f:
        f.truncate(0)


def test_unreadable_latest_checkpoint_falls_back_with_a_warning(tmp_path):
  workdir = str(tmp_path)
  # A constant learning rate: both lengths share one compiled train step.
  config = lambda steps: train_config('factorized_encoder', num_training_steps=steps, checkpoint_steps=2,
                                      lr_configs__factors='constant')
  train.train(config(4), workdir)
  _truncate_state_files(os.path.join(workdir, 'checkpoints', '4'))
  with pytest.warns(RuntimeWarning, match=r'checkpoints/4'):
    state, results = train.train(config(6), workdir)
  assert results['status'] == 'completed' and int(state.step) == 6
  assert CheckpointManager(workdir).latest_step() == 6


def test_checkpoint_of_another_model_is_an_error_naming_the_parameters(tmp_path):
  workdir = str(tmp_path)
  train.train(train_config('spacetime'), workdir)
  with pytest.raises(CheckpointError) as error:
    train.train(train_config('spacetime', model__mlp_dim=32, num_training_steps=4), workdir)
  message = str(error.value)
  assert 'MlpBlock_0/Dense_0/kernel' in message and '(12, 24)' in message and '(12, 32)' in message


def test_init_from_a_workdir_loads_everything_but_the_head(tmp_path):
  source = str(tmp_path / 'source')
  trained, _ = train.train(train_config('spacetime'), source)
  config = train_config('spacetime', init_from__checkpoint_path=source, init_from__checkpoint_format='auto',
                        rng_seed=7)
  run = train.setup(config, str(tmp_path / 'target'))
  state, metadata = train.restore_or_initialise(run, CheckpointManager(str(tmp_path / 'target')))
  assert metadata == {} and int(state.step) == 0
  loaded, original = host_tree(state.params), host_tree(trained.params)
  assert_trees_equal(loaded['Transformer'], original['Transformer'])
  assert_trees_equal(loaded['embedding'], original['embedding'])
  assert not np.array_equal(loaded['output_projection']['kernel'], original['output_projection']['kernel'])


def test_init_from_a_workdir_reads_the_sources_token_grid_from_its_config(tmp_path):
  # 4 tubelets of 2x2 patches (16 tokens) -> 4 x 4x4: by its count alone the source would pass for one 4x4 frame.
  source = str(tmp_path / 'source')
  trained, _ = train.train(train_config('spacetime', model__patches__size=(8, 8, 2)), source)
  config = train_config('spacetime', init_from__checkpoint_path=source, init_from__checkpoint_format='auto',
                        init_from__restore_input_embedding=False, init_from__positional_embed_size_change='resize')
  run = train.setup(config, str(tmp_path / 'target'))
  state, _ = train.restore_or_initialise(run, CheckpointManager(str(tmp_path / 'target')))
  old = host_tree(trained.params)['Transformer']['posembed_input']['pos_embedding']
  new = host_tree(state.params)['Transformer']['posembed_input']['pos_embedding']
  expected, _ = adapt_posemb(old, new, source_cls=True, target_cls=True, target_hw=(4, 4), method='resize',
                             per_frame=False, source_grid=(4, 2, 2), where='test')
  np.testing.assert_allclose(new, expected, rtol=1e-6)


def test_workdir_checkpoint_wins_over_init_from(tmp_path):
  source, target = str(tmp_path / 'source'), str(tmp_path / 'target')
  train.train(train_config('spacetime'), source)
  own, _ = train.train(train_config('spacetime', rng_seed=3), target)
  config = train_config('spacetime', rng_seed=3, init_from__checkpoint_path=source,
                        init_from__checkpoint_format='auto')
  state, _ = train.restore_or_initialise(train.setup(config, target), CheckpointManager(target))
  assert_trees_equal(state.params, own.params)


def test_init_from_a_path_without_a_checkpoint_is_a_clear_error(tmp_path):
  config = train_config('spacetime', init_from__checkpoint_path=str(tmp_path / 'nothing'),
                        init_from__checkpoint_format='scenic')
  run = train.setup(config, str(tmp_path / 'target'))
  with pytest.raises(CheckpointError, match='nothing'):
    train.restore_or_initialise(run, CheckpointManager(str(tmp_path / 'target')))


def test_epochs_convert_to_steps_with_the_dataset_size():
  config = train_config('spacetime', num_training_steps=None, num_training_epochs=2.5)
  assert train.training_length(config, 64) == (10, 4.0)
  assert train.training_length(config, 70) == (11, 4.375)
  with pytest.raises(ValueError, match='num_training_epochs'):
    train.training_length(train_config('spacetime', num_training_steps=None), 64)


def test_batch_that_the_mesh_cannot_split_is_an_error():
  with pytest.raises(ValueError, match='eval_batch_size is 12'):
    train.setup(train_config('spacetime', eval_batch_size=12))


def test_synthetic_config_and_its_tiny_preset_load():
  config = load_config(str(ROOT / 'configs' / 'synthetic.py'))
  assert config.dataset_name == 'synthetic'
  assert config.model.attention_config.type == 'factorized_encoder'
  assert not config.dataset_configs.augmentation_params.do_flip
  tiny = load_config(str(ROOT / 'configs' / 'synthetic.py') + ':tiny')
  assert tiny.num_training_steps < 10
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    train.setup(tiny)


def test_any_shipped_config_can_train_on_synthetic_videos():
  config = load_config(str(ROOT / 'configs' / 'kinetics400' / 'vivit_base_k400.py'),
                       ['dataset_name=synthetic', 'batch_size=2'])
  batch = train.create_pipeline(config).train_batch(0)
  assert batch['inputs'].shape == (2, 32, 224, 224, 3) and batch['label'].shape == (2, 400)


def _event_tags(workdir):
  """{tag: [steps]} of the scalars in the run's TensorBoard event files."""
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  accumulator = event_accumulator.EventAccumulator(workdir, size_guidance={'tensors': 0, 'scalars': 0})
  accumulator.Reload()
  return {tag: [e.step for e in accumulator.Tensors(tag)] for tag in accumulator.Tags()['tensors']}


def test_scenic_multi_view_test_runs_every_log_test_epochs_and_at_the_end(tmp_path, caplog):
  # 64 training clips in batches of 16: 4 steps an epoch, a test every epoch (steps 4, 8) and at the end (10).
  config = train_config('spacetime', num_training_steps=10, dataset_configs__examples_per_subset__test=12,
                        dataset_configs__num_test_clips=2, dataset_configs__do_three_spatial_crops=True,
                        dataset_configs__log_test_epochs=1, dataset_configs__test_batch_size=8,
                        eval_max_views_per_batch=16)
  workdir = str(tmp_path)
  with caplog.at_level(logging.INFO):
    results = train.train_and_evaluate(config, workdir)
  metrics = results['metrics']
  assert metrics['test/num_videos'] == 12 and metrics['test/num_views'] == 12 * 2 * 3
  for name in ('accuracy', 'accuracy_top_5', 'loss', 'mean_per_class_accuracy'):
    assert np.isfinite(metrics[f'test/{name}']), name
  assert read_json(workdir, 'results.json')['metrics']['test/num_views'] == 72
  history = reporting.read_history(workdir)
  assert [step for step, _ in history['test/accuracy']] == [4, 8, 10]
  assert history['test/num_views'] == [(4, 72), (8, 72), (10, 72)]
  assert [step for step, _ in history['valid/accuracy']] == [10]  # log_eval_steps 1000: the end only.
  tags = _event_tags(workdir)
  assert tags['test/accuracy'] == [4, 8, 10] and tags['test/num_views'] == [4, 8, 10]
  assert 'No multi-view test' not in caplog.text


def test_a_config_without_test_data_skips_the_test_with_one_line(tmp_path, caplog):
  config = train_config('spacetime')  # Synthetic data, no examples_per_subset.test: no test split.
  assert config.dataset_configs.do_multicrop_test and config.dataset_configs.examples_per_subset.test is None
  with caplog.at_level(logging.INFO):
    results = train.train_and_evaluate(config, str(tmp_path))
  assert results['status'] == 'completed'
  assert not [name for name in results['metrics'] if name.startswith('test/')]
  assert caplog.text.count('No multi-view test during training') == 1
  off = train_config('spacetime', dataset_configs__do_multicrop_test=False,
                     dataset_configs__examples_per_subset__test=8)
  caplog.clear()
  with caplog.at_level(logging.INFO):
    results = train.train_and_evaluate(off, str(tmp_path / 'off'))
  assert not [name for name in results['metrics'] if name.startswith('test/')]
  assert 'No multi-view test' not in caplog.text


def test_parameters_and_gflops_are_logged_at_the_start(tmp_path, caplog):
  with caplog.at_level(logging.INFO):
    results = train.train_and_evaluate(train_config('spacetime'), str(tmp_path))
  model = results['model']
  assert model['variant'] == 'spacetime' and model['params'] > 0 and model['gflops_per_clip'] > 0
  assert f"params {model['params']:,}" in caplog.text and 'gflops_per_clip' in caplog.text
  quiet = train.train_and_evaluate(train_config('spacetime', count_flops=False),
                                   str(tmp_path / 'quiet'))
  assert quiet['model'] == {}


def test_bfloat16_input_batches_train(tmp_path):
  results = train.train_and_evaluate(train_config('spacetime', data_dtype_str='bfloat16'),
                                     str(tmp_path))
  assert np.isfinite(results['metrics']['train/loss']) and results['metrics']['valid/num_videos'] == 20
