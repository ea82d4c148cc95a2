"""Tests for minilm/plots.py: valid PNGs on disk, the expected axes / lines / bars, no pyplot state leaks."""

import functools
import sys

import matplotlib
from matplotlib import _pylab_helpers
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from minilm.plots import (plot_attention, plot_comparison, plot_confusion_matrix, plot_learning_curves, plot_loss_curves,
                          plot_lr_schedule)
from minilm.training import get_lr

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    data = path.read_bytes()
    return data[:8] == PNG_MAGIC and len(data) > 1000


@pytest.fixture(autouse=True)
def _no_pyplot_leaks():
    before = len(_pylab_helpers.Gcf.figs)
    backend = matplotlib.get_backend() if "matplotlib.pyplot" in sys.modules else None
    yield
    assert len(_pylab_helpers.Gcf.figs) == before  # no figure registered with pyplot
    if backend is not None:
        assert matplotlib.get_backend() == backend


def test_loss_curves_with_lr(tmp_path):
    records = [{"step": s, "train_loss": 4.0 - s / 100, "lr": 1e-3} for s in range(0, 100, 10)]
    records += [{"step": s, "val_loss": 4.1 - s / 100} for s in (0, 50, 99)]
    records.append({"step": 100, "train_loss": None, "val_loss": 3.0})
    path = tmp_path / "out" / "loss.png"
    fig = plot_loss_curves(records, path)
    assert isinstance(fig, Figure) and _is_png(path)
    assert len(fig.axes) == 2  # loss axis + twin lr axis
    loss_ax, lr_ax = fig.axes
    assert [len(line.get_xdata()) for line in loss_ax.lines] == [10, 4]  # train, val (None skipped)
    assert len(lr_ax.lines) == 1
    assert len(loss_ax.get_legend().get_texts()) == 3


def test_loss_curves_without_lr_and_empty():
    fig = plot_loss_curves([{"step": 0, "train_loss": 2.0}, {"step": 1, "train_loss": 1.5}])
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 1
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_loss_curves([{"step": 0, "lr": 1.0}])


def test_lr_schedule(tmp_path):
    fn = functools.partial(get_lr, lr=1.0, min_lr=0.1, warmup_iters=10, max_iters=100)
    fig = plot_lr_schedule(fn, 100, tmp_path / "lr.png")
    assert _is_png(tmp_path / "lr.png")
    (line,) = fig.axes[0].lines
    np.testing.assert_allclose(line.get_ydata(), [fn(s) for s in range(101)])


@pytest.mark.parametrize("shape,n_panels", [((5, 5), 1), ((3, 5, 5), 3), ((6, 5, 5), 6)])
def test_attention(tmp_path, shape, n_panels):
    w = torch.softmax(torch.randn(shape).masked_fill(~torch.ones(5, 5, dtype=torch.bool).tril(), -torch.inf), -1)
    fig = plot_attention(w, ["a", "b", " ", "\n", "e"], tmp_path / "attn.png")
    assert _is_png(tmp_path / "attn.png")
    heat = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(heat) == n_panels and len(fig.axes) == 2 * n_panels  # one colorbar per panel
    np.testing.assert_allclose(heat[-1].images[0].get_array(), w.reshape(-1, 5, 5)[-1].numpy(), rtol=1e-6)
    assert [t.get_text() for t in heat[0].get_xticklabels()] == ["a", "b", " ", "\\n", "e"]


def test_attention_rejects_bad_shapes():
    with pytest.raises(ValueError, match="tokens"):
        plot_attention(np.eye(3), ["a", "b"])
    with pytest.raises(ValueError, match=r"\(T, T\)"):
        plot_attention(np.ones((2, 3)), ["a", "b"])


def test_confusion_matrix(tmp_path):
    cm = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 4]])
    fig = plot_confusion_matrix(cm, ["neg", "neu", "pos"], tmp_path / "cm.png")
    assert _is_png(tmp_path / "cm.png")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == [str(v) for v in cm.reshape(-1)]
    fig = plot_confusion_matrix(cm, ["neg", "neu", "pos"], normalize=True)
    assert fig.axes[0].texts[3].get_text() == "0.20"
    with pytest.raises(ValueError, match="label names"):
        plot_confusion_matrix(cm, ["a", "b"])


def test_comparison(tmp_path):
    fig = plot_comparison({"pretrained": 0.86, "scratch": 0.71}, tmp_path / "cmp.png")
    assert _is_png(tmp_path / "cmp.png")
    bars = fig.axes[0].patches
    assert [round(b.get_height(), 6) for b in bars] == [0.86, 0.71]
    with pytest.raises(ValueError):
        plot_comparison({})


def test_learning_curves(tmp_path):
    curves = {"pretrained": {100: [0.6, 0.64], 1000: [0.75, 0.77, 0.76]}, "scratch": {100: [0.52], 1000: [0.6, 0.62]}}
    fig = plot_learning_curves(curves, tmp_path / "curve.png")
    assert _is_png(tmp_path / "curve.png")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    mean_line = ax.lines[0]  # the first arm's line through its means, then its seed dots
    assert list(mean_line.get_xdata()) == [100, 1000]
    np.testing.assert_allclose(mean_line.get_ydata(), [0.62, 0.76])
    dots = [y for line in ax.lines[1:3] for y in line.get_ydata()]
    assert dots == [0.6, 0.64, 0.75, 0.77, 0.76]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["pretrained", "scratch"]
    with pytest.raises(ValueError):
        plot_learning_curves({})
