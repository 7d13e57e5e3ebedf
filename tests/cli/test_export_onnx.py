"""`vivit-export --format=onnx`: a checked ONNX model with the checkpoint's labels, the printed difference, one
`error:` line for bad flags and for a missing onnx extra, and exit status 1 (nothing written) when the model
disagrees."""

import json
import re
import sys

import jax
import numpy as np
import pytest

from tests.cli.running import exit_status
from tests.cli.test_errors import one_error_line
from tests.serving.test_export_onnx import tiny_predictor
from tests.serving.test_predict import load_script
from vivit_jax.checkpoints import save_vivit_jax
from vivit_jax.serving import export_onnx

NAMES = ['archery', 'bowling', 'cycling', 'diving', 'fencing']


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
  """A Model 2 workdir with random weights and a label map beside it."""
  root = tmp_path_factory.mktemp('onnx_cli')
  (root / 'labels.json').write_text(json.dumps({'names': NAMES}))
  predictor = tiny_predictor('factorized_encoder')
  params = jax.tree_util.tree_map(np.asarray, predictor.params)
  save_vivit_jax(str(root / 'run'), params, {'config': json.loads(predictor.config.to_json_best_effort())})
  return str(root / 'run'), str(root / 'labels.json')


def export(argv, capsys):
  """(exit status, stdout, stderr) of `vivit-export` (scripts/export.py) run in this process."""
  status = exit_status(load_script('export').main, argv)
  out, err = capsys.readouterr()
  return status, out, err


def test_writes_a_checked_onnx_model_with_the_label_names(checkpoint, tmp_path, capsys):
  workdir, labels = checkpoint
  output = tmp_path / 'out' / 'model.onnx'
  status, out, err = export([f'--checkpoint={workdir}', f'--label_map={labels}', f'--output={output}',
                             '--format=onnx'], capsys)
  assert status == 0, err
  assert f'Wrote {output}: clips uint8 [B, 8, 16, 16, 3] -> probabilities [B, 5] (ONNX opset 20)' in out
  difference = float(re.search(r'max \|ONNX Runtime - JAX\| = (\S+) \(tolerance 0.0001\)', out).group(1))
  print(f'vivit-export --format=onnx (Model 2): max |ONNX Runtime - JAX| = {difference:.3g}')
  assert difference <= 1e-5
  assert 'WARNING' not in err and 'Traceback' not in err, err  # The converter's chatter stays off the console.
  assert export_onnx.read_onnx_info(str(output))['label_names'] == NAMES
  probs = export_onnx.run_onnx(str(output), np.zeros((3, 8, 16, 16, 3), np.uint8))
  assert probs.shape == (3, 5)
  assert sorted(p.name for p in output.parent.iterdir()) == ['model.onnx']


def test_a_missing_extra_is_one_error_line_before_any_work(tmp_path, capsys, monkeypatch):
  monkeypatch.setitem(sys.modules, 'onnxruntime', None)  # As if `pip install vivit_jax` without [onnx].
  status, _, err = export([f'--checkpoint={tmp_path}/missing', f'--output={tmp_path}/m.onnx', '--format=onnx'],
                          capsys)
  line = one_error_line(status, err)
  assert line == ("error: --format=onnx needs jax2onnx, onnx, onnxruntime; not installed: onnxruntime. "
                  "Install them with: pip install 'vivit_jax[onnx]'")
  assert not (tmp_path / 'm.onnx').exists()


BAD_FLAGS = [
    (['--format=tflite'], "argument --format: invalid choice: 'tflite'"),
    (['--format=onnx', '--platforms=cpu'], '--platforms applies to --format=saved_model only'),
    (['--format=onnx', '--output={tmp}'], '--output {tmp} is a directory; expected a file name'),
    (['--format=onnx', '--output=gs://bucket/m.onnx'], '--format=onnx writes a local file; expected a local path'),
    (['--format=onnx', '--batch_size=0'], "--batch_size: expected a positive integer, got '0'"),
    (['--format=onnx', '--checkpoint={tmp}/missing'], 'No checkpoint at {tmp}/missing'),
]


@pytest.mark.parametrize('argv, expected', BAD_FLAGS, ids=[str(i) for i in range(len(BAD_FLAGS))])
def test_bad_flags_are_one_error_line(argv, expected, checkpoint, tmp_path, capsys):
  defaults = [f'--checkpoint={checkpoint[0]}', f'--output={tmp_path}/m.onnx']
  given = {a.split('=')[0] for a in argv}
  argv = [a for a in defaults if a.split('=')[0] not in given] + [a.format(tmp=tmp_path) for a in argv]
  status, _, err = export(argv, capsys)
  assert expected.format(tmp=tmp_path) in one_error_line(status, err)
  assert not (tmp_path / 'm.onnx').exists()


def test_a_model_that_disagrees_fails_with_status_1_and_is_not_written(checkpoint, tmp_path, capsys, monkeypatch):
  reference = export_onnx.reference_probabilities
  monkeypatch.setattr(export_onnx, 'reference_probabilities', lambda p, clips: reference(p, clips) + 1e-3)
  output = tmp_path / 'm.onnx'
  status, out, err = export([f'--checkpoint={checkpoint[0]}', f'--output={output}', '--format=onnx'], capsys)
  assert status == 1 and out == ''
  assert re.fullmatch(rf'error: {output}: the ONNX model differs from the JAX model by 0.001 \(max \|probability '
                      rf'difference\|; tolerance 0.0001\); {output} was not written\n', err), err
  assert list(tmp_path.iterdir()) == []
