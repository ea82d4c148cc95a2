"""Classification metrics in NumPy: accuracy, confusion matrix, per-class precision / recall / F1, a report with
the same structure and numbers as scikit-learn's classification_report(output_dict=True, zero_division=0), and two
paired tests for "model A beats model B on the same examples": McNemar's exact test (McNemar 1947) and the paired
bootstrap (Efron & Tibshirani 1993, ch. 16; Berg-Kirkpatrick et al. 2012, https://aclanthology.org/D12-1091/).

Definitions follow Manning, Raghavan & Schuetze, Introduction to Information Retrieval (2008), section 8.3, and
scikit-learn's documentation (https://scikit-learn.org/stable/modules/model_evaluation.html#precision-recall-f-measure-metrics);
scikit-learn and SciPy are the oracles in tests/test_metrics.py. Explained in lectures/07_finetuning.ipynb.
Tagging adds word-level accuracy and exact-match entity spans (lectures/11_token_classification.ipynb), checked
against seqeval.
Left out on purpose: multi-label metrics, micro averages other than accuracy, sample weights, ROC / PR curves.
Classes are the integers 0 .. n_classes-1; a class absent from both y_true and y_pred still gets a row.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

_HEADERS = ("precision", "recall", "f1-score", "support")


def _as_labels(y_true, y_pred, n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true).reshape(-1)
    y_pred = np.asarray(y_pred).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must have the same length, got {len(y_true)} and {len(y_pred)}")
    if len(y_true) == 0:
        raise ValueError("no examples: y_true and y_pred are empty")
    if not (np.issubdtype(y_true.dtype, np.integer) and np.issubdtype(y_pred.dtype, np.integer)):
        raise ValueError("labels must be integer class ids 0 .. n_classes-1 (map label names to ids first)")
    if n_classes is not None:
        low, high = min(y_true.min(), y_pred.min()), max(y_true.max(), y_pred.max())
        if low < 0 or high >= n_classes:
            raise ValueError(f"class ids must lie in 0 .. {n_classes - 1}, found {low if low < 0 else high}")
    return y_true.astype(np.int64), y_pred.astype(np.int64)


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0.0 where den == 0 (scikit-learn's zero_division=0)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def accuracy(y_true, y_pred) -> float:
    """Eq. 7.1: acc = 1/N sum_n 1[y^_n = y_n]."""
    y_true, y_pred = _as_labels(y_true, y_pred)
    return float(np.mean(y_true == y_pred))


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Eq. 7.2: C[i, j] = #{n : y_n = i and y^_n = j}; rows are true classes, columns predictions. (K, K) int64."""
    y_true, y_pred = _as_labels(y_true, y_pred, n_classes)
    cm = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)  # (K*K,)
    return cm.reshape(n_classes, n_classes)  # (K, K)


def precision_recall_f1(y_true, y_pred, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class (precision, recall, f1, support), each of shape (K,); 0.0 wherever a denominator is 0.

    Eq. 7.3: P_c = TP_c / (TP_c + FP_c) = C[c, c] / sum_i C[i, c]
    Eq. 7.4: R_c = TP_c / (TP_c + FN_c) = C[c, c] / sum_j C[c, j]
    Eq. 7.5: F1_c = 2 P_c R_c / (P_c + R_c) = 2 TP_c / (2 TP_c + FP_c + FN_c)
    The second form of Eq. 7.5 is what is computed (scikit-learn >= 1.3 does the same); the two agree except
    where P_c + R_c = 0, where both are defined as 0 here.
    """
    cm = confusion_matrix(y_true, y_pred, n_classes)
    tp = np.diag(cm)  # (K,)
    predicted = cm.sum(axis=0)  # (K,) TP + FP
    support = cm.sum(axis=1)  # (K,) TP + FN: how many examples truly are class c
    precision = _safe_divide(tp, predicted)
    recall = _safe_divide(tp, support)
    f1 = _safe_divide(2 * tp, predicted + support)
    return precision, recall, f1, support


def classification_report(y_true, y_pred, label_names: Sequence[str]) -> dict:
    """Dict shaped like sklearn.metrics.classification_report(..., output_dict=True, zero_division=0):
    {name: {"precision", "recall", "f1-score", "support"}, ..., "accuracy": float, "macro avg": {...},
    "weighted avg": {...}}. Values are Python floats (support too, as in scikit-learn).

    Eq. 7.6: macro m = 1/K sum_c m_c;  weighted m = sum_c (n_c / N) m_c  with n_c the support of class c.
    """
    names = [str(n) for n in label_names]
    if len(set(names)) != len(names):
        raise ValueError(f"label names must be unique, got {names}")
    precision, recall, f1, support = precision_recall_f1(y_true, y_pred, len(names))
    report: dict = {}
    for i, name in enumerate(names):
        report[name] = dict(zip(_HEADERS, (float(precision[i]), float(recall[i]), float(f1[i]), float(support[i]))))
    report["accuracy"] = accuracy(y_true, y_pred)
    total = float(support.sum())
    weights = support / support.sum()  # (K,) n_c / N
    report["macro avg"] = dict(zip(_HEADERS, (float(precision.mean()), float(recall.mean()), float(f1.mean()), total)))
    report["weighted avg"] = dict(zip(_HEADERS, (float(weights @ precision), float(weights @ recall),
                                                 float(weights @ f1), total)))
    return report


def format_report(report: dict, digits: int = 2) -> str:
    """Text table in scikit-learn's layout for a dict from classification_report."""
    rows = [name for name in report if name not in ("accuracy", "macro avg", "weighted avg")]
    width = max([len(r) for r in rows] + [len("weighted avg"), digits])
    lines = [f"{'':>{width}s} " + "".join(f" {h:>9}" for h in _HEADERS), ""]

    def row(name: str, values: dict) -> str:
        p, r, f, s = (values[h] for h in _HEADERS)
        return f"{name:>{width}s} " + "".join(f" {v:>9.{digits}f}" for v in (p, r, f)) + f" {int(s):>9}"

    lines += [row(name, report[name]) for name in rows] + [""]
    total = int(report["macro avg"]["support"])
    lines.append(f"{'accuracy':>{width}s} " + f" {'':>9}" * 2 + f" {report['accuracy']:>9.{digits}f} {total:>9}")
    lines += [row("macro avg", report["macro avg"]), row("weighted avg", report["weighted avg"])]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------------
# Paired comparisons. Two models scored on the same N sentences are not independent samples: most sentences are
# right (or wrong) for both. The standard error of one model's accuracy, sqrt(acc (1 - acc) / N), says nothing about
# the difference; only the sentences the two models disagree on carry information about which is better.
# --------------------------------------------------------------------------------------------------------------


def _correct_pairs(y_true, pred_a, pred_b) -> tuple[np.ndarray, np.ndarray]:
    y_true, pred_a = _as_labels(y_true, pred_a)
    _, pred_b = _as_labels(y_true, pred_b)
    return pred_a == y_true, pred_b == y_true  # (N,), (N,) booleans: is A right, is B right


def mcnemar_test(y_true, pred_a, pred_b) -> dict:
    """McNemar's exact test of "A and B are equally accurate" on the same examples (Eq. 7.7).

    b = #{A right, B wrong}, c = #{A wrong, B right}. Under the null hypothesis each of the n = b + c discordant
    examples is equally likely to favour either model, so b ~ Binomial(n, 1/2) and the two-sided exact p-value is
        p = min(1, 2 * sum_{k <= min(b, c)} C(n, k) / 2^n).
    The examples both models get right (or both wrong) do not enter. Returns {"b", "c", "p_value"}.
    """
    a_right, b_right = _correct_pairs(y_true, pred_a, pred_b)
    b = int(np.sum(a_right & ~b_right))
    c = int(np.sum(~a_right & b_right))
    n = b + c
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))  # Eq. 7.7: P(X <= min(b, c)) * 2^n, exact integers
    return {"b": b, "c": c, "p_value": min(1.0, 2 * tail / 2**n)}


def paired_bootstrap(y_true, pred_a, pred_b, n_resamples: int = 10_000, seed: int = 0) -> dict:
    """The paired bootstrap of the accuracy difference acc_A - acc_B (Eq. 7.8).

    Draw N example indices with replacement n_resamples times, the same indices for both models, and recompute the
    difference on each draw: d*_1 .. d*_R. The 95% interval is the 2.5th and 97.5th percentile of d*. The two-sided
    p-value asks how often a resampled difference strays from the observed d by at least |d|, i.e. how often d*
    would reach 0 if the truth were a shift of d (Berg-Kirkpatrick et al. 2012, section 2.2):
        p = #{r : |d*_r - d| >= |d|} / R.
    Returns {"diff", "ci_low", "ci_high", "p_value"}.
    """
    a_right, b_right = _correct_pairs(y_true, pred_a, pred_b)
    delta = a_right.astype(np.float64) - b_right.astype(np.float64)  # (N,): +1, 0 or -1 per example
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(delta), size=(n_resamples, len(delta)))  # (R, N) example indices
    resampled = delta[draws].mean(axis=1)  # Eq. 7.8: d*_r, (R,)
    diff = float(delta.mean())
    low, high = np.percentile(resampled, [2.5, 97.5])
    p_value = float(np.mean(np.abs(resampled - diff) >= abs(diff) - 1e-12))
    return {"diff": diff, "ci_low": float(low), "ci_high": float(high), "p_value": p_value}


# --------------------------------------------------------------------------------------------------------------
# Tagging (lectures/11_token_classification.ipynb): one label per word. Word-level scores pool every word of every
# sentence; entity-level scores compare spans, so a name tagged half right counts as wrong (Tjong Kim Sang & De
# Meulder 2003, https://aclanthology.org/W03-0419/, section 4; conlleval, and seqeval's default mode, score this way).
# --------------------------------------------------------------------------------------------------------------


def _flat_tags(true_seqs, pred_seqs) -> tuple[list, list]:
    if len(true_seqs) != len(pred_seqs):
        raise ValueError(f"{len(true_seqs)} true and {len(pred_seqs)} predicted sentences")
    for n, (t, p) in enumerate(zip(true_seqs, pred_seqs)):
        if len(t) != len(p):
            raise ValueError(f"sentence {n}: {len(t)} true tags but {len(p)} predicted")
    return [y for t in true_seqs for y in t], [y for p in pred_seqs for y in p]


def token_accuracy(true_seqs, pred_seqs) -> float:
    """Eq. 11.3: acc = sum_s sum_i 1[y^_si = y_si] / sum_s n_s: every word counts once, long sentences weigh more.
    Tags may be ids or strings."""
    y_true, y_pred = _flat_tags(true_seqs, pred_seqs)
    if not y_true:
        raise ValueError("no words: the sentences are empty")
    return sum(t == p for t, p in zip(y_true, y_pred)) / len(y_true)  # Eq. 11.3


def tag_report(true_seqs, pred_seqs, label_names: Sequence[str]) -> dict:
    """classification_report (Eqs. 7.3-7.6) over all words: per-tag precision / recall / F1 as scikit-learn gives
    them on the flattened tags; tag ids index label_names."""
    y_true, y_pred = _flat_tags(true_seqs, pred_seqs)
    return classification_report(y_true, y_pred, label_names)


def entity_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Eq. 11.4: the entities of one BIO (IOB2) sentence as (type, start, end), end exclusive, left to right.

    A span starts at `B-X`, runs over the `I-X` that follow and ends before `O`, a `B-` or a tag of another type.
    Broken BIO is read as seqeval's default mode (and conlleval) read it: an `I-X` that does not continue an X span
    starts one. ["B-PER", "I-PER", "O", "I-LOC", "I-ORG"] -> [("PER", 0, 2), ("LOC", 3, 4), ("ORG", 4, 5)].
    """
    spans, start, kind = [], None, None
    for i, tag in enumerate([*tags, "O"]):  # a final O closes the last span
        prefix, typ = ("O", None) if tag == "O" else (tag[:2], tag[2:])
        if prefix not in ("O", "B-", "I-") or (prefix != "O" and not typ):
            raise ValueError(f"tag {tag!r} at position {i} is not BIO: expected O, B-TYPE or I-TYPE")
        if start is not None and (prefix != "I-" or typ != kind):  # O, B- or a new type ends the open span
            spans.append((kind, start, i))
            start = None
        if prefix == "B-" or (prefix == "I-" and start is None):  # B-, or an I- that continues nothing
            start, kind = i, typ
    return spans


def entity_scores(true_seqs, pred_seqs) -> dict:
    """Exact-match span scores, per entity type and pooled ("micro avg"), as seqeval's classification_report in its
    default mode: {type: {"precision", "recall", "f1-score", "support"}, ..., "micro avg": {...}}. Tags are strings.

    With S the set of gold spans (sentence, type, start, end) and S^ the predicted ones (Eq. 11.4):
    Eq. 11.5: P = |S^ n S| / |S^|     Eq. 11.6: R = |S^ n S| / |S|     Eq. 11.7: F1 = 2 P R / (P + R)
    A span counts only if type, start and end all match; 0 wherever a denominator is 0 (seqeval's zero_division).
    """
    _flat_tags(true_seqs, pred_seqs)  # same sentence count and lengths
    gold = {(n, *s) for n, tags in enumerate(true_seqs) for s in entity_spans(tags)}
    pred = {(n, *s) for n, tags in enumerate(pred_seqs) for s in entity_spans(tags)}

    def scores(g: set, p: set) -> dict:
        tp = len(g & p)
        precision, recall = float(_safe_divide(tp, len(p))), float(_safe_divide(tp, len(g)))  # Eqs. 11.5, 11.6
        f1 = float(_safe_divide(2 * precision * recall, precision + recall))  # Eq. 11.7
        return {"precision": precision, "recall": recall, "f1-score": f1, "support": len(g)}

    report = {}
    for typ in sorted({s[1] for s in gold | pred}):
        report[typ] = scores({s for s in gold if s[1] == typ}, {s for s in pred if s[1] == typ})
    report["micro avg"] = scores(gold, pred)
    return report
