"""Exercise tagging.py::align_labels (lectures/11_token_classification.ipynb), checked by hand and by its rule."""

import random

import pytest

exercise = pytest.mark.exercise
IGNORE_INDEX = -100


@exercise("tagging.py::align_labels")
def test_align_labels_worked_example(solution):
    pieces, labels = [[5], [7, 8, 9], [4]], [0, 1, 2]
    got = solution(pieces, labels)
    assert tuple(map(list, got)) == ([5, 7, 8, 9, 4], [0, 1, -100, -100, 2]), (
        f"expected ids [5, 7, 8, 9, 4] and labels [0, 1, -100, -100, 2] (the label on each word's first piece), "
        f"got {got}")
    got = solution(pieces, labels, "last")
    assert list(got[1]) == [0, -100, -100, 1, 2], f"piece='last': expected [0, -100, -100, 1, 2], got {list(got[1])}"


@exercise("tagging.py::align_labels")
def test_every_word_is_labelled_exactly_once(solution):
    rng = random.Random(0)
    for _ in range(200):
        pieces = [[rng.randrange(50) for _ in range(rng.randint(1, 4))] for _ in range(rng.randint(1, 8))]
        labels = [rng.randrange(7) for _ in pieces]
        for piece in ("first", "last"):
            ids, token_labels = map(list, solution(pieces, labels, piece))
            assert ids == [i for p in pieces for i in p], f"ids must be the pieces concatenated, got {ids}"
            assert len(token_labels) == len(ids), "one label per token"
            where, start = [], 0
            for p in pieces:
                where.append(start if piece == "first" else start + len(p) - 1)
                start += len(p)
            labelled = [i for i, y in enumerate(token_labels) if y != IGNORE_INDEX]
            assert labelled == where, (f"piece={piece!r}, pieces {pieces}: labels belong at positions {where}, "
                                       f"found them at {labelled}")
            assert [token_labels[i] for i in where] == labels, f"the labels must be the words' labels, in order"
