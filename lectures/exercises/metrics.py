"""Exercises for lectures/07_finetuning.ipynb and lectures/11_token_classification.ipynb: per-class precision, recall
and F1 of a classifier; the entity spans of a BIO-tagged sentence.

Write the body; keep the signature as it is (a test compares it with minilm/metrics.py). Check your work:

    pytest tests/exercises/test_metrics_exercises.py --impl=exercises     # or: python -m minilm.grade

The tests compare with scikit-learn's precision_recall_fscore_support, and with seqeval and hand-worked cases.
"""

from __future__ import annotations

import numpy as np  # noqa: F401


def precision_recall_f1(y_true, y_pred, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exercise metrics.py::precision_recall_f1 (Eqs. 7.3-7.5): per-class precision, recall, F1 and support.

    y_true, y_pred: sequences (lists or arrays) of class ids in 0 .. n_classes - 1. For each class c:
        P_c  = TP_c / (TP_c + FP_c)          of the examples predicted c, the fraction that truly are c   (Eq. 7.3)
        R_c  = TP_c / (TP_c + FN_c)          of the examples that truly are c, the fraction found          (Eq. 7.4)
        F1_c = 2 P_c R_c / (P_c + R_c) = 2 TP_c / (2 TP_c + FP_c + FN_c)                                 (Eq. 7.5)
        support_c = TP_c + FN_c, the number of examples whose true class is c
    Return four float/int NumPy arrays of shape (n_classes,): (precision, recall, f1, support). A class that is never
    predicted (or never occurs) gets 0.0 wherever its denominator is 0, as scikit-learn does with zero_division=0.

    Hints: build the (K, K) confusion matrix C[true, pred] with np.add.at; TP = its diagonal, column sums = TP + FP,
    row sums = TP + FN. np.divide(a, b, out=np.zeros(K), where=b > 0) avoids dividing by zero.
    """
    raise NotImplementedError("exercise metrics.py::precision_recall_f1 is not attempted yet")


def entity_spans(tags) -> list[tuple[str, int, int]]:
    """Exercise metrics.py::entity_spans (Eq. 11.4): the entities of one BIO-tagged sentence.

    tags: a list of strings, each "O", "B-TYPE" or "I-TYPE". Return a list of (type, start, end) tuples, end
    exclusive, in left-to-right order. A span starts at "B-X", runs over the "I-X" that follow it and ends before an
    "O", a "B-" tag, or a tag of another type. Broken BIO is read as seqeval (and the CoNLL script conlleval) read it
    by default: an "I-X" that does not continue an X span starts a new one.
        ["B-PER", "I-PER", "O", "B-LOC"]            -> [("PER", 0, 2), ("LOC", 3, 4)]
        ["I-PER", "B-PER", "I-LOC", "I-LOC", "O"]   -> [("PER", 0, 1), ("PER", 1, 2), ("LOC", 2, 4)]
    Raise ValueError for a tag that is not O, B-TYPE or I-TYPE.

    Hints: walk the tags with one open span (its start and type, or None); append ["O"] to the tags so the last
    span closes itself. At each tag, first decide whether the open span ends, then whether a new one starts.
    """
    raise NotImplementedError("exercise metrics.py::entity_spans is not attempted yet")
