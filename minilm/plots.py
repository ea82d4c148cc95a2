"""Matplotlib figures for the lectures and the scripts: loss curves, the LR schedule, attention maps, a confusion
matrix (and one for many tags), a pretrained-vs-scratch comparison and learning curves (score against the
number of labelled examples).

Every function builds a matplotlib.figure.Figure directly (no pyplot), so nothing leaks into pyplot's global list
of open figures, the library never picks a backend, and it works headless (PNG rendering goes through Agg). A
Figure returned into a notebook cell is displayed by IPython. With `path`, the PNG is written atomically.
Attention maps follow Vaswani et al. 2017 (https://arxiv.org/abs/1706.03762, figures 3-5); explained in
lectures/07_finetuning.ipynb (and used by lectures/03_attention.ipynb and lectures/06_training.ipynb).
Left out on purpose: interactive plots, styling options, TensorBoard / wandb logging.
"""

from __future__ import annotations

import io
import math
import os
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from minilm.files import atomic_write_bytes


def _finish(fig: Figure, path: str | os.PathLike | None) -> Figure:
    fig.tight_layout()
    if path is not None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120)
        atomic_write_bytes(path, buf.getvalue())
    return fig


def _axes(figsize: tuple[float, float], xlabel: str | None, ylabel: str, title: str):
    """(fig, ax): one labelled plot on a new Figure."""
    fig = Figure(figsize=figsize)
    ax = fig.add_subplot()
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return fig, ax


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, maybe on GPU or in bf16
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def plot_loss_curves(records: Iterable[Mapping], path: str | os.PathLike | None = None,
                     title: str = "loss") -> Figure:
    """Train / val loss against step from metrics.jsonl-style records ({"step", "train_loss", "val_loss", "lr"};
    any key may be missing or None in a record). The learning rate, when present, goes on a right-hand axis."""
    records = list(records)
    fig, ax = _axes((7, 4), "step", "cross-entropy (nats / token)", title)
    plotted = 0
    for key, style in (("train_loss", "-"), ("val_loss", "o-")):
        pts = [(r["step"], r[key]) for r in records if r.get(key) is not None]
        if pts:
            steps, values = zip(*pts)
            ax.plot(steps, values, style, label=key.replace("_", " "), markersize=3)
            plotted += 1
    if not plotted:
        raise ValueError("no train_loss or val_loss values in the records: nothing to plot")
    ax.grid(alpha=0.3)
    lr_pts = [(r["step"], r["lr"]) for r in records if r.get("lr") is not None]
    handles, labels = ax.get_legend_handles_labels()
    if lr_pts:
        ax_lr = ax.twinx()
        steps, lrs = zip(*lr_pts)
        (line,) = ax_lr.plot(steps, lrs, color="grey", alpha=0.6, linewidth=1, label="lr")
        ax_lr.set_ylabel("learning rate")
        handles, labels = handles + [line], labels + ["lr"]
    ax.legend(handles, labels, loc="upper right")
    return _finish(fig, path)


def plot_lr_schedule(fn: Callable[[int], float], max_iters: int, path: str | os.PathLike | None = None,
                     title: str = "learning-rate schedule") -> Figure:
    """fn(step) for step = 0 .. max_iters (e.g. functools.partial(get_lr, lr=..., min_lr=..., ...))."""
    if max_iters < 1:
        raise ValueError(f"max_iters must be >= 1, got {max_iters}")
    steps = np.arange(max_iters + 1)
    fig, ax = _axes((6, 3.5), "step", "learning rate", title)
    ax.plot(steps, [fn(int(s)) for s in steps])
    ax.grid(alpha=0.3)
    return _finish(fig, path)


def plot_attention(weights, tokens: Sequence[str], path: str | os.PathLike | None = None,
                   title: str | None = None, max_cols: int = 4) -> Figure:
    """Heat map of attention weights (T, T) or one panel per head (H, T, T); row = query, column = key."""
    w = _to_numpy(weights)
    if w.ndim == 2:
        w = w[None]  # (1, T, T)
    if w.ndim != 3 or w.shape[1] != w.shape[2]:
        raise ValueError(f"attention weights must be (T, T) or (H, T, T), got shape {tuple(_to_numpy(weights).shape)}")
    H, T, _ = w.shape
    if len(tokens) != T:
        raise ValueError(f"got {len(tokens)} tokens for {T} attention positions; pass one label per position")
    cols = min(H, max_cols)
    rows = math.ceil(H / cols)
    size = max(2.5, 0.3 * T)
    fig = Figure(figsize=(size * cols + 1, size * rows + 0.5))
    labels = [repr(t)[1:-1] for t in tokens]  # show "\n" and spaces visibly
    for h in range(H):
        ax = fig.add_subplot(rows, cols, h + 1)
        im = ax.imshow(w[h], cmap="viridis", vmin=0.0, vmax=max(float(w[h].max()), 1e-9))
        ax.set_xticks(range(T), labels, rotation=90, fontsize=8)
        ax.set_yticks(range(T), labels, fontsize=8)
        ax.set_xlabel("key")
        ax.set_ylabel("query")
        if H > 1:
            ax.set_title(f"head {h}")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def plot_confusion_matrix(cm, label_names: Sequence[str], path: str | os.PathLike | None = None,
                          normalize: bool = False, title: str = "confusion matrix") -> Figure:
    """Counts (or row-normalised rates) with true class on rows, prediction on columns, each cell annotated."""
    cm = np.asarray(cm)
    K = len(label_names)
    if cm.shape != (K, K):
        raise ValueError(f"confusion matrix shape {cm.shape} does not match {K} label names")
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    fig, ax = _axes((1.0 + 0.8 * K, 0.8 + 0.8 * K), "predicted", "true", title)
    im = ax.imshow(shown, cmap="Blues", vmin=0)
    ax.set_xticks(range(K), list(label_names), rotation=45, ha="right")
    ax.set_yticks(range(K), list(label_names))
    threshold = shown.max() / 2 if shown.size else 0
    for i in range(K):
        for j in range(K):
            text = f"{shown[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
            ax.text(j, i, text, ha="center", va="center", color="white" if shown[i, j] > threshold else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return _finish(fig, path)


def plot_comparison(results: Mapping[str, float], path: str | os.PathLike | None = None,
                    ylabel: str = "accuracy", title: str = "pretrained vs from scratch") -> Figure:
    """Bar chart of one score per run, e.g. {"pretrained": 0.86, "scratch": 0.71}, each bar labelled."""
    if not results:
        raise ValueError("results is empty: pass {run name: score}")
    names, values = list(results), [float(v) for v in results.values()]
    fig, ax = _axes((1.5 + 1.2 * len(names), 3.5), None, ylabel, title)
    bars = ax.bar(names, values, color=[f"C{i}" for i in range(len(names))])
    ax.bar_label(bars, fmt="%.3f")
    if all(0.0 <= v <= 1.0 for v in values):
        ax.set_ylim(0, 1.05)
    return _finish(fig, path)


def plot_learning_curves(curves: Mapping[str, Mapping[int, Sequence[float]]], path: str | os.PathLike | None = None,
                         ylabel: str = "dev accuracy", title: str = "accuracy against labelled examples",
                         xlabel: str = "labelled training examples (log scale)") -> Figure:
    """One line per arm through the mean score at each training-set size, on a log x axis; every seed's score is a
    dot, so the spread is visible. curves = {arm: {n_examples: [score per seed]}}, e.g. {"pretrained": {100: [0.61,
    0.63], 1000: [0.72, 0.74]}, "scratch": {...}} (ULMFiT's figure 3, Howard & Ruder 2018)."""
    if not curves or not any(curves.values()):
        raise ValueError("curves is empty: pass {arm: {n_examples: [score per seed]}}")
    fig, ax = _axes((7.0, 4.0), xlabel, ylabel, title)
    for i, (arm, points) in enumerate(curves.items()):
        ns = sorted(points)
        if not ns:
            continue
        means = [float(np.mean(points[n])) for n in ns]
        ax.plot(ns, means, "-o", color=f"C{i}", label=arm, markersize=4)  # the line through the means
        for n in ns:
            ax.plot([n] * len(points[n]), list(points[n]), ".", color=f"C{i}", alpha=0.4)  # one dot per seed
    ax.set_xscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return _finish(fig, path)


def plot_tag_confusion(cm, tag_names: Sequence[str], path: str | os.PathLike | None = None,
                       title: str = "tag confusion (rows: true tag, normalised)") -> Figure:
    """Row-normalised confusion over many tags (UPOS has 17): colour is the rate, only cells >= 1% are written, as
    percentages, so the off-diagonal mistakes (NOUN -> PROPN, ADP -> SCONJ) stand out."""
    cm = np.asarray(cm)
    K = len(tag_names)
    if cm.shape != (K, K):
        raise ValueError(f"confusion matrix shape {cm.shape} does not match {K} tag names")
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)  # (K, K): each true tag's row sums to 1
    size = min(12.0, 2.0 + 0.45 * K)
    fig, ax = _axes((size + 1, size), "predicted", "true", title)
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(K), list(tag_names), rotation=90, fontsize=8)
    ax.set_yticks(range(K), list(tag_names), fontsize=8)
    for i, j in zip(*np.nonzero(rates >= 0.01)):
        ax.text(j, i, f"{100 * rates[i, j]:.0f}", ha="center", va="center", fontsize=6,
                color="white" if rates[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return _finish(fig, path)
