"""Exercises metrics.py::precision_recall_f1 (lectures/07_finetuning.ipynb), checked against scikit-learn, and
metrics.py::entity_spans (lectures/11_token_classification.ipynb), checked against seqeval and cases worked by hand."""

import numpy as np
import pytest

exercise = pytest.mark.exercise
sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is the oracle: pip install -e '.[dev]'")


def _check(solution, y_true, y_pred, n_classes, what):
    result = solution(y_true, y_pred, n_classes)
    assert isinstance(result, tuple) and len(result) == 4, "return a tuple (precision, recall, f1, support)"
    expected = sklearn_metrics.precision_recall_fscore_support(y_true, y_pred, labels=list(range(n_classes)),
                                                               zero_division=0)
    for name, got, want in zip(("precision", "recall", "f1", "support"), result, expected):
        got = np.asarray(got)
        assert got.shape == (n_classes,), f"{what}: {name} must have shape ({n_classes},), got {got.shape}"
        assert np.allclose(got, want), (f"{what}: {name} per class, expected {np.round(want, 4).tolist()} "
                                        f"(scikit-learn), got {np.round(got.astype(float), 4).tolist()}")


@exercise("metrics.py::precision_recall_f1")
def test_precision_recall_f1_worked_example(solution):
    # class 0: TP 2, FP 1, FN 1 -> P = R = F1 = 2/3; class 1: TP 1, FP 1, FN 1 -> 1/2; class 2: TP 1, FP 0, FN 0 -> 1.
    _check(solution, [0, 0, 0, 1, 1, 2], [0, 0, 1, 0, 1, 2], 3, "a 6-example, 3-class worked example")


@exercise("metrics.py::precision_recall_f1")
def test_precision_recall_f1_random_labels(solution):
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 5, 200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 5, 200))
    _check(solution, y_true, y_pred, 5, "200 random labels, 5 classes")


@exercise("metrics.py::precision_recall_f1")
def test_precision_recall_f1_empty_classes_give_zero(solution):
    # class 1 is never predicted (P = 0/0), class 3 never occurs nor is predicted (everything 0/0): all 0, no NaN.
    _check(solution, [0, 1, 1, 2], [0, 0, 2, 2], 4, "classes never predicted or never present (0/0 -> 0)")


# ------------------------------------------------------------------------------------------ entity_spans (Eq. 11.4)
def _spans(solution, tags, what):
    result = solution(list(tags))
    assert isinstance(result, list), f"{what}: return a list of (type, start, end) tuples, got {type(result).__name__}"
    return [tuple(s) for s in result]


@exercise("metrics.py::entity_spans")
def test_entity_spans_worked_examples(solution):
    cases = [
        (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 2), ("LOC", 3, 4)], "two clean spans"),
        (["O", "O"], [], "no entity"),
        ([], [], "an empty sentence"),
        (["B-PER", "B-PER"], [("PER", 0, 1), ("PER", 1, 2)], "B- after B- starts a new span"),
        (["B-PER", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 2)], "a type change ends the span"),
        (["I-PER", "I-PER", "O"], [("PER", 0, 2)], "broken BIO: I- at the start opens a span"),
        (["O", "I-ORG", "B-ORG", "I-ORG"], [("ORG", 1, 2), ("ORG", 2, 4)], "broken BIO: I- after O opens a span"),
        (["B-LOC", "I-LOC", "I-LOC"], [("LOC", 0, 3)], "a span running to the end of the sentence"),
    ]
    for tags, want, what in cases:
        got = _spans(solution, tags, what)
        assert sorted(got) == sorted(want), f"{what}: {tags} -> expected {want}, got {got} (end is exclusive)"


@exercise("metrics.py::entity_spans")
def test_entity_spans_equal_seqeval_on_random_tags(solution):
    seqeval = pytest.importorskip("seqeval.metrics.sequence_labeling",
                                  reason="seqeval is the oracle: pip install -e '.[dev]'")
    rng = np.random.default_rng(0)
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    for _ in range(500):
        seq = [tags[i] for i in rng.integers(0, len(tags), rng.integers(1, 9))]
        want = sorted((t, s, e + 1) for t, s, e in seqeval.get_entities(seq))  # seqeval's end is inclusive
        got = _spans(solution, seq, str(seq))
        assert sorted(got) == want, f"{seq}: expected {want} (seqeval's default mode), got {sorted(got)}"


@exercise("metrics.py::entity_spans")
def test_entity_spans_refuses_tags_that_are_not_bio(solution):
    with pytest.raises(ValueError):
        solution(["O", "NOUN"])
