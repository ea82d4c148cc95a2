"""Tests for minilm/metrics.py against scikit-learn (the oracle) on random and edge-case inputs."""

import re

import numpy as np
import pytest

from minilm.metrics import accuracy, classification_report, confusion_matrix, format_report, precision_recall_f1

sk = pytest.importorskip("sklearn.metrics")


def _cases():
    rng = np.random.default_rng(0)
    cases = []
    for K, N in [(2, 30), (3, 50), (5, 200), (4, 7)]:
        cases.append((f"random-K{K}-N{N}", rng.integers(0, K, N), rng.integers(0, K, N), K))
    cases += [
        ("binary-perfect", np.array([0, 1, 1, 0]), np.array([0, 1, 1, 0]), 2),
        ("binary-one-class-never-predicted", np.array([0, 1, 1, 0, 1]), np.array([0, 0, 0, 0, 0]), 2),
        ("3-class-never-predicted", np.array([0, 1, 2, 2, 2, 1]), np.array([0, 0, 2, 2, 1, 0]), 3),
        ("3-class-absent-everywhere", np.array([0, 1, 1, 0]), np.array([1, 1, 0, 0]), 3),  # class 2 in neither
        ("3-class-predicted-never-true", np.array([0, 0, 1, 1]), np.array([2, 0, 1, 2]), 3),
        ("single-example", np.array([1]), np.array([2]), 3),
    ]
    return cases


CASES = _cases()


@pytest.mark.parametrize("name,y_true,y_pred,K", CASES, ids=[c[0] for c in CASES])
def test_against_sklearn(name, y_true, y_pred, K):
    labels = list(range(K))
    assert accuracy(y_true, y_pred) == pytest.approx(sk.accuracy_score(y_true, y_pred), abs=1e-12)
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, K), sk.confusion_matrix(y_true, y_pred, labels=labels))
    ours = precision_recall_f1(y_true, y_pred, K)
    ref = sk.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)

    names = [f"class {k}" for k in range(K)]
    report = classification_report(y_true, y_pred, names)
    ref = sk.classification_report(y_true, y_pred, labels=labels, target_names=names, output_dict=True,
                                   zero_division=0)
    assert list(report) == list(ref)  # same keys in the same order
    assert report["accuracy"] == pytest.approx(ref["accuracy"], abs=1e-12)
    for key in ref:
        if key != "accuracy":
            assert list(report[key]) == list(ref[key])
            for field in ref[key]:
                assert report[key][field] == pytest.approx(ref[key][field], abs=1e-12), (key, field)
    text = sk.classification_report(y_true, y_pred, labels=labels, target_names=names, zero_division=0)
    # scikit-learn prints support as "1.0" in some edge cases (float support array); ours is always an integer
    text = re.sub(r"(\d+)\.0\n", lambda m: m.group(1).rjust(len(m.group(0)) - 1) + "\n", text)
    assert format_report(report) == text


def test_known_values_by_hand():
    # true 0,1,2,2,2 / pred 0,0,2,2,1 (scikit-learn's docstring example)
    p, r, f, s = precision_recall_f1([0, 1, 2, 2, 2], [0, 0, 2, 2, 1], 3)
    np.testing.assert_allclose(p, [0.5, 0.0, 1.0])
    np.testing.assert_allclose(r, [1.0, 0.0, 2 / 3])
    np.testing.assert_allclose(f, [2 / 3, 0.0, 0.8])
    np.testing.assert_array_equal(s, [1, 1, 3])
    report = classification_report([0, 1, 2, 2, 2], [0, 0, 2, 2, 1], ["a", "b", "c"])
    assert report["macro avg"]["recall"] == pytest.approx((1 + 0 + 2 / 3) / 3)
    assert report["weighted avg"]["precision"] == pytest.approx(0.2 * 0.5 + 0.6 * 1.0)
    assert report["accuracy"] == pytest.approx(0.6)


def test_confusion_matrix_rows_are_true_labels():
    cm = confusion_matrix([0, 0, 1], [1, 1, 1], 2)
    assert cm.tolist() == [[0, 2], [0, 1]]
    assert np.issubdtype(cm.dtype, np.integer)


def test_errors():
    with pytest.raises(ValueError, match="same length"):
        accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="empty"):
        accuracy([], [])
    with pytest.raises(ValueError, match=r"0 \.\. 1"):
        confusion_matrix([0, 2], [0, 1], 2)
    with pytest.raises(ValueError, match="integer"):
        confusion_matrix(["a"], ["b"], 2)
    with pytest.raises(ValueError, match="unique"):
        classification_report([0], [0], ["x", "x"])
