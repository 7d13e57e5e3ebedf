"""The confusion-matrix picture: a heat map with names, counts and a colour bar up to 30 classes, the most confused
pairs beyond; at least 600 px a side, labels inside the picture, drawn on matplotlib's Agg canvas."""

import numpy as np
import pytest
from PIL import Image

from vivit_jax.eval import metrics, plots


def _texts(ax):
  return [t.get_text() for t in ax.texts]


def _inside_the_figure(fig, labels):
  """Whether every label's drawn box lies within the figure (nothing cut off at an edge)."""
  renderer = fig.canvas.get_renderer()
  fig.draw(renderer)
  box = fig.bbox
  return all(box.x0 - 1 <= b.x0 and b.x1 <= box.x1 + 1 and box.y0 - 1 <= b.y0 and b.y1 <= box.y1 + 1
             for b in (label.get_window_extent(renderer) for label in labels))


def test_a_small_matrix_is_a_heat_map_with_names_counts_and_a_colour_bar(tmp_path):
  confusion = np.array([[5, 1, 0], [0, 3, 2], [0, 0, 0]], np.float64)  # The third class has no video.
  names = ['apply eye makeup', 'a class whose name is long enough to need room', 'zumba']
  fig = plots.confusion_figure(confusion, names, 'Confusion matrix: validation')
  heat, bar = fig.axes  # The matrix and its colour bar.
  assert [t.get_text() for t in heat.get_xticklabels()] == names
  assert [t.get_text() for t in heat.get_yticklabels()] == names
  assert (heat.get_xlabel(), heat.get_ylabel()) == ('predicted class', 'true class')
  assert heat.get_title() == 'Confusion matrix: validation'
  assert sorted(_texts(heat)) == ['1', '2', '3', '5']  # Every non-empty cell's count, and only those.
  assert "% of the true class's videos" in bar.get_ylabel()
  # Colour: the share of the true class's videos (row 0: 5 of 6); an empty row stays 0, not NaN.
  shares = heat.images[0].get_array()
  assert shares[0, 0] == pytest.approx(100 * 5 / 6) and shares[2].tolist() == [0, 0, 0]
  assert heat.images[0].get_clim() == (0, 100)
  assert _inside_the_figure(fig, heat.get_xticklabels() + heat.get_yticklabels())
  path = str(tmp_path / 'c.png')
  plots.save_figure(fig, path)
  with Image.open(path) as image:
    assert image.format == 'PNG' and min(image.size) >= plots.MIN_PIXELS
    assert image.size == tuple(int(round(v)) for v in fig.get_size_inches() * plots.DPI)


def test_thirty_classes_still_get_the_matrix_and_its_side_grows():
  rng = np.random.default_rng(0)
  confusion = rng.integers(0, 4, (30, 30)).astype(np.float64)
  names = [f'class {i}' for i in range(30)]
  fig = plots.confusion_figure(confusion, names)
  assert len(fig.axes) == 2 and len(fig.axes[0].get_xticklabels()) == 30
  assert len(_texts(fig.axes[0])) == int(np.count_nonzero(confusion))
  assert min(fig.get_size_inches()) * plots.DPI >= 1200  # 30 rows of readable cells.


def test_more_than_thirty_classes_show_the_most_confused_pairs():
  classes = 31
  confusion = np.diag(np.full(classes, 10.0))
  confusion[3, 7], confusion[5, 2], confusion[30, 0], confusion[1, 4] = 6, 9, 2, 2
  names = [f'action {i}' for i in range(classes)]
  fig = plots.confusion_figure(confusion, names, 'noun confusion matrix', top_k=3)
  (ax,) = fig.axes
  labels = [t.get_text() for t in ax.get_yticklabels()]
  assert labels == ['action 5 -> action 2', 'action 3 -> action 7', 'action 1 -> action 4']  # Ties: by true class.
  assert [round(p.get_width()) for p in ax.patches] == [9, 6, 2]
  assert _texts(ax) == ['9 (47.4%)', '6 (37.5%)', '2 (16.7%)']  # Of the true class's 19, 16 and 12 videos.
  assert 'most confused pairs of 31 classes (true -> predicted)' in ax.get_title()
  assert '(count' in ax.get_xlabel()
  assert min(fig.get_size_inches()) * plots.DPI >= plots.MIN_PIXELS
  assert _inside_the_figure(fig, ax.get_yticklabels())


def test_no_confusion_at_all_says_so():
  fig = plots.confusion_figure(np.eye(40) * 3, [str(i) for i in range(40)])
  assert 'no video was misclassified' in fig.axes[0].get_title()
  assert 'every video is on the diagonal' in _texts(fig.axes[0])


def test_a_matrix_that_does_not_fit_the_names_is_refused():
  with pytest.raises(ValueError, match=r'\[C, C\] confusion matrix for 3 class names, got \(2, 2\)'):
    plots.confusion_figure(np.eye(2), ['a', 'b', 'c'])


def test_most_confused_pairs_order_and_leave_out_the_diagonal_and_empty_cells():
  confusion = np.array([[50, 2, 3], [3, 40, 0], [0, 1, 9]], np.float64)
  assert metrics.most_confused_pairs(confusion, 10) == [(0, 2, 3), (1, 0, 3), (0, 1, 2), (2, 1, 1)]
  assert metrics.most_confused_pairs(confusion, 1) == [(0, 2, 3)]
  assert metrics.most_confused_pairs(np.eye(3), 5) == []


def test_the_title_says_what_was_evaluated():
  summary = {'split': 'validation', 'views': '4x3', 'aggregation': 'logits', 'num_videos': 20}
  assert plots.confusion_title('', summary) == "Confusion matrix: 'validation', 4x3 views (logits), 20 videos"
  assert plots.confusion_title('noun', {}) == 'noun confusion matrix'
