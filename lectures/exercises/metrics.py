"""Exercise for lectures/07_finetuning.ipynb: per-class precision, recall and F1 of a classifier.

Write the body; keep the signature as it is (a test compares it with minilm/metrics.py). Check your work:

    pytest tests/exercises/test_metrics_exercises.py --impl=exercises     # or: python -m minilm.grade

The test compares with scikit-learn's precision_recall_fscore_support.
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
