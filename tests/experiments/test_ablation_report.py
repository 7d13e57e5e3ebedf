"""The ablation report's picture (matplotlib: axes with units, full entry names, legends, the paper's numbers
wherever the legend names the paper), its Markdown read back, and the committed docs/ablations pictures."""

import glob
import os

import pytest
from PIL import Image

from tests import paths
from vivit_jax.eval.plots import DPI, MIN_PIXELS
from vivit_jax.experiments.ablation import plots, report
from vivit_jax.experiments.ablation import spec as spec_lib

ROOT = str(paths.ROOT)
VARIANTS = spec_lib.load_ablation(os.path.join(ROOT, 'configs', 'ablations', 'model_variants.py'))
DOCS = sorted(glob.glob(os.path.join(ROOT, 'docs', 'ablations', '*.md')))


def variant_rows():
  """Our numbers for the model-variant sweep (one entry not run), beside its paper numbers."""
  rows = []
  for i, entry in enumerate(VARIANTS.entries):
    row = {'name': entry.name, 'params': 86_000_000 + i * 1_000_000, 'gflops': 280.0 + i,
           'valid/accuracy': None if i == 2 else 0.70 + i / 100}
    rows.append(dict(row, **{f'paper_{k}': v for k, v in entry.paper.items()}))
  return rows


def legend_texts(ax):
  return [t.get_text() for t in ax.get_legend().get_texts()]


def test_bars_show_ours_and_the_paper_numbers_the_legend_promises():
  rows = variant_rows()
  curves = {rows[0]['name']: [(100, 0.25), (200, 0.5)], rows[1]['name']: [(100, 0.2), (200, 0.4)]}
  fig = plots.figure(VARIANTS, rows, curves)
  accuracy, gflops, params, learning = fig.axes
  names = [e.name for e in VARIANTS.entries]
  assert [t.get_text() for t in accuracy.get_yticklabels()] == names  # Whole names, never cut to fit.
  assert accuracy.get_xlabel() == 'top-1 accuracy (%)' and list(accuracy.get_xticks()) == list(range(0, 101, 20))
  assert gflops.get_xlabel() == 'GFLOPs per clip (multiply-adds)' and params.get_xlabel() == 'parameters (millions)'
  paper = {k: [e.paper[k] for e in VARIANTS.entries] for k in ('top1', 'gflops', 'params')}
  for ax, key, scale in ((accuracy, 'top1', 1), (gflops, 'gflops', 1), (params, 'params', 1e-6)):
    assert legend_texts(ax)[-1] == 'paper'
    ours_bars, paper_bars = ax.containers
    assert [b.get_width() for b in paper_bars] == pytest.approx([v * scale for v in paper[key]])
    labels = [t.get_text() for t in ax.texts]
    assert all(f'{v * scale:.4g}' in labels or f'{v * scale:.1f}' in labels for v in paper[key]), labels
  assert legend_texts(accuracy) == ['ours (valid/accuracy)', 'paper']
  ours = [b.get_width() for b in accuracy.containers[0]]
  assert ours == pytest.approx([70.0, 71.0, 73.0, 74.0])  # Model 3 was not run: no bar, a note instead.
  assert ' not run' in [t.get_text() for t in accuracy.texts]
  assert learning.get_xlabel() == 'training step' and learning.get_ylabel() == 'valid/accuracy (%)'
  assert legend_texts(learning) == names[:2]
  assert list(learning.lines[0].get_ydata()) == [25.0, 50.0]
  assert "beside the paper's numbers" in fig._suptitle.get_text()  # pylint: disable=protected-access
  assert min(fig.get_size_inches()) * DPI >= MIN_PIXELS


def test_without_paper_numbers_the_legend_does_not_name_the_paper():
  synthetic = spec_lib.load_ablation(os.path.join(ROOT, 'configs', 'ablations', 'synthetic_variants.py'))
  rows = [{'name': e.name, 'params': 150_000, 'gflops': 0.0025, 'valid/accuracy': 0.9} for e in synthetic.entries]
  fig = plots.figure(synthetic, rows)
  assert len(fig.axes) == 3  # No histories, no learning-curve panel.
  for ax in fig.axes:
    assert not any('paper' in t for t in legend_texts(ax)) and len(ax.containers) == 1
  assert 'no paper numbers' in fig._suptitle.get_text()  # pylint: disable=protected-access


def test_far_apart_numbers_get_a_log_axis():
  rows = variant_rows()
  rows[0]['gflops'] = 0.004  # A tiny model beside the paper's 455 GFLOPs.
  gflops = plots.figure(VARIANTS, rows).axes[1]
  assert gflops.get_xscale() == 'log' and gflops.get_xlabel().endswith('log scale')


def test_the_markdown_report_reads_back_at_its_printed_precision():
  rows = [{'name': 'a', 'status': 'completed', 'step': 400, 'params': 185_288, 'gflops': 0.004148,
           'valid/accuracy': 0.459, 'paper_top1': 80.0, 'paper_params': 88_954_000},
          {'name': 'b', 'status': 'not run', 'step': None, 'params': 86_696_080, 'gflops': 283.9,
           'valid/accuracy': None, 'paper_top1': None, 'paper_params': None}]
  columns = list(rows[0])
  curves = {'a': [(100, 0.125), (200, 0.229)], 'b': []}
  text = report.markdown_table(VARIANTS, rows, columns) + report.markdown_curves(VARIANTS, curves)
  back, back_curves = report.read_markdown(text)
  assert back[0] == {**rows[0], 'paper_params': 88_950_000}  # Printed as 88.95M.
  assert back[1] == {**rows[1], 'params': 86_700_000}
  assert back_curves == {'a': [(100, 0.125), (200, 0.229)], 'b': []}
  with pytest.raises(ValueError, match='no Markdown table'):
    report.read_markdown('# nothing here\n')


def _spec(name):
  """The spec a committed report NAME.md was written from: configs/ablations/NAME.py, or STEM.py:PRESET for a
  preset's sweep (whose name is STEM_PRESET)."""
  path = os.path.join(ROOT, 'configs', 'ablations', f'{name}.py')
  if os.path.isfile(path):
    return path
  stem, _, preset = name.rpartition('_')
  return os.path.join(ROOT, 'configs', 'ablations', f'{stem}.py:{preset}')


@pytest.mark.parametrize('markdown', DOCS, ids=os.path.basename)
def test_committed_pictures_are_drawn_from_the_committed_reports(markdown, tmp_path):
  """docs/ablations/NAME.png is `redraw` of NAME.md: the same size as drawn now (the old hand-drawn pictures
  were not), and the report holds every entry of configs/ablations/NAME.py (or of STEM.py's preset)."""
  name = os.path.splitext(os.path.basename(markdown))[0]
  ablation = spec_lib.load_ablation(_spec(name))
  assert ablation.name == name
  with open(markdown) as f:
    rows, curves = report.read_markdown(f.read())
  assert [r['name'] for r in rows] == [e.name for e in ablation.entries] == list(curves)
  drawn = report.redraw(ablation, markdown, str(tmp_path / f'{name}.png'))
  with Image.open(drawn) as fresh, Image.open(os.path.splitext(markdown)[0] + '.png') as committed:
    assert committed.size == fresh.size and min(committed.size) >= MIN_PIXELS


def test_a_sweep_with_no_results_yet_draws_without_empty_legends():
  rows = [{'name': e.name, 'params': 86_000_000, 'gflops': 280.0, 'paper_top1': e.paper['top1']}
          for e in VARIANTS.entries]
  accuracy = plots.figure(VARIANTS, rows).axes[0]
  assert legend_texts(accuracy) == ['paper'] and len(accuracy.containers) == 1  # The paper's bars alone.
  assert [t.get_text() for t in accuracy.texts].count(' not run') == len(rows)
