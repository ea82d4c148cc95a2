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


# ---- paired tests (Eqs. 7.7-7.8) against SciPy ----

def _paired_case(seed: int, N: int, acc_a: float, acc_b: float):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, N)
    pred_a = np.where(rng.random(N) < acc_a, y, 1 - y)
    pred_b = np.where(rng.random(N) < acc_b, y, 1 - y)
    return y, pred_a, pred_b


@pytest.mark.parametrize("seed, N, acc_a, acc_b", [(0, 872, 0.83, 0.80), (1, 50, 0.7, 0.7), (2, 200, 0.9, 0.6),
                                                   (3, 9, 0.5, 0.9)])
def test_mcnemar_matches_scipy_binomtest(seed, N, acc_a, acc_b):
    stats = pytest.importorskip("scipy.stats")
    from minilm.metrics import mcnemar_test

    y, pred_a, pred_b = _paired_case(seed, N, acc_a, acc_b)
    result = mcnemar_test(y, pred_a, pred_b)
    a_right, b_right = pred_a == y, pred_b == y
    assert result["b"] == int(np.sum(a_right & ~b_right)) and result["c"] == int(np.sum(~a_right & b_right))
    n = result["b"] + result["c"]
    expected = stats.binomtest(result["b"], n, 0.5).pvalue if n else 1.0
    assert result["p_value"] == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_mcnemar_ignores_agreements_and_is_symmetric():
    from minilm.metrics import mcnemar_test

    y = np.array([0, 1, 0, 1, 1, 0, 1, 0])
    a = np.array([0, 1, 0, 1, 0, 0, 1, 1])  # wrong on 4 and 7
    b = np.array([0, 1, 1, 1, 1, 0, 1, 1])  # wrong on 2 and 7
    assert mcnemar_test(y, a, b) == {"b": 1, "c": 1, "p_value": 1.0}
    # adding examples that both get right (or both wrong) changes nothing
    y2, a2, b2 = np.r_[y, [1] * 50, [0] * 5], np.r_[a, [1] * 50, [1] * 5], np.r_[b, [1] * 50, [1] * 5]
    assert mcnemar_test(y2, a2, b2) == mcnemar_test(y, a, b)
    y3, a3, b3 = _paired_case(4, 300, 0.9, 0.7)
    forward, backward = mcnemar_test(y3, a3, b3), mcnemar_test(y3, b3, a3)
    assert (forward["b"], forward["c"]) == (backward["c"], backward["b"])
    assert forward["p_value"] == backward["p_value"] < 1e-3


def test_paired_bootstrap_matches_scipy_interval():
    stats = pytest.importorskip("scipy.stats")
    from minilm.metrics import paired_bootstrap

    y, pred_a, pred_b = _paired_case(5, 872, 0.83, 0.80)
    result = paired_bootstrap(y, pred_a, pred_b, n_resamples=20_000, seed=0)
    a_right, b_right = (pred_a == y).astype(float), (pred_b == y).astype(float)
    assert result["diff"] == pytest.approx(a_right.mean() - b_right.mean(), abs=1e-12)
    ref = stats.bootstrap((a_right, b_right), lambda a, b, axis=-1: a.mean(axis) - b.mean(axis), paired=True,
                          vectorized=True, n_resamples=20_000, method="percentile", confidence_level=0.95,
                          random_state=np.random.default_rng(1))
    # two independent Monte-Carlo estimates of the same percentiles: within ~0.3 points of each other
    assert result["ci_low"] == pytest.approx(ref.confidence_interval.low, abs=3e-3)
    assert result["ci_high"] == pytest.approx(ref.confidence_interval.high, abs=3e-3)
    assert result["ci_low"] < result["diff"] < result["ci_high"]


def test_paired_bootstrap_p_value_tracks_mcnemar():
    from minilm.metrics import mcnemar_test, paired_bootstrap

    same = _paired_case(6, 400, 0.8, 0.8)
    clear = _paired_case(7, 400, 0.9, 0.7)
    assert paired_bootstrap(*same)["p_value"] > 0.05 and mcnemar_test(*same)["p_value"] > 0.05
    assert paired_bootstrap(*clear)["p_value"] < 0.01 and mcnemar_test(*clear)["p_value"] < 0.01
    y = np.array([0, 1, 1, 0])
    assert paired_bootstrap(y, y, y) == {"diff": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p_value": 1.0}
