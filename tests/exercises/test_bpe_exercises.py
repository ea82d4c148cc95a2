"""Exercises of lectures/01_tokenizer.ipynb: pair counts and one BPE merge, checked against Counter and known values."""

from collections import Counter

import pytest

exercise = pytest.mark.exercise


@exercise("bpe.py::get_pair_counts")
def test_pair_counts_known_values(solution):
    got = solution([1, 2, 3, 1, 2])
    expected = {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert got == expected, f"get_pair_counts([1, 2, 3, 1, 2]): expected {expected}, got {got}"
    assert solution([7]) == {} and solution([]) == {}, "a sequence shorter than 2 has no pairs: return {}"


@exercise("bpe.py::get_pair_counts")
def test_pair_counts_match_counter_on_text(solution):
    ids = list("the cat sat on the mat, then the hat".encode("utf-8"))
    expected = dict(Counter(zip(ids, ids[1:])))
    got = solution(ids)
    assert got == expected, (f"pair counts of a sentence's bytes differ from Counter(zip(ids, ids[1:])) at "
                             f"{sorted(set(got.items()) ^ set(expected.items()))[:5]}")


@exercise("bpe.py::get_pair_counts")
def test_pair_counts_accumulate_with_weights(solution):
    counts = {(1, 2): 10}
    result = solution([1, 2, 1, 2], counts, weight=3)
    assert result is counts, "when `counts` is given, add into it and return that same dict"
    assert counts == {(1, 2): 16, (2, 1): 3}, (
        f"{{(1, 2): 10}} plus [1, 2, 1, 2] counted with weight 3: expected {{(1, 2): 16, (2, 1): 3}}, got {counts}")


@exercise("bpe.py::merge")
def test_merge_known_values(solution):
    for ids, pair, new_id, expected in [
        ([1, 2, 3, 1, 2], (1, 2), 4, [4, 3, 4]),
        ([1, 1, 1], (1, 1), 9, [9, 1]),  # left to right, no overlaps
        ([1, 1, 1, 1], (1, 1), 9, [9, 9]),
        ([5, 6, 7], (7, 5), 9, [5, 6, 7]),  # no occurrence
        ([3, 1], (1, 2), 9, [3, 1]),  # a half pair at the end
    ]:
        got = solution(list(ids), pair, new_id)
        assert got == expected, f"merge({ids}, {pair}, {new_id}): expected {expected}, got {got}"


@exercise("bpe.py::merge")
def test_merge_leaves_its_input_unchanged(solution):
    ids = [1, 2, 1, 2]
    solution(ids, (1, 2), 5)
    assert ids == [1, 2, 1, 2], f"merge changed the list it was given into {ids}: build and return a new list"


@exercise("bpe.py::merge")
def test_two_bpe_steps_on_the_textbook_example(solution):
    # The classic example (Gage 1994; Wikipedia, "Byte pair encoding"): aaabdaaabac -> ZabdZabac -> ZYdZYac.
    ids = [ord(c) for c in "aaabdaaabac"]
    ids = solution(ids, (ord("a"), ord("a")), ord("Z"))
    assert "".join(map(chr, ids)) == "ZabdZabac", f"merging 'aa' -> 'Z': expected ZabdZabac, got {''.join(map(chr, ids))}"
    ids = solution(ids, (ord("a"), ord("b")), ord("Y"))
    assert "".join(map(chr, ids)) == "ZYdZYac", f"merging 'ab' -> 'Y': expected ZYdZYac, got {''.join(map(chr, ids))}"
