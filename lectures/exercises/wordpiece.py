"""Exercise for lectures/01_tokenizer.ipynb: WordPiece's one step, greedy longest-match-first over a vocabulary.

Write the body; keep the signature as it is (a test compares it with minilm/wordpiece.py). Check your work:

    pytest tests/exercises/test_wordpiece_exercises.py --impl=exercises     # or: python -m minilm.grade

BERT cuts every word (after basic tokenisation: lower-cased, punctuation split off) into pieces of its vocabulary
(Eq. 1.5; Wu et al. 2016, section 4.1). Plain Python strings and sets, no tensors.
"""

from __future__ import annotations


def wordpiece_word(word: str, vocab, unk_token: str = "[UNK]", max_chars: int = 100) -> list[str]:
    """Exercise wordpiece.py::wordpiece_word (Eq. 1.5): split one word into the longest pieces found in `vocab`.

    Start at position 0. Take the longest prefix word[0:end] that is in `vocab`; then, from where it ended, the
    longest piece word[start:end] whose continuation spelling "##" + word[start:end] is in `vocab`; repeat until the
    word is used up. If at some position no piece matches, return [unk_token] for the whole word (the pieces found
    so far are thrown away). A word longer than `max_chars` characters is [unk_token] straight away.
    `vocab` is anything that supports `in`: a set of strings, or a dict token -> id.
    Example: vocab {"un", "##aff", "##able", "##a"}: "unaffable" -> ["un", "##aff", "##able"] ("##aff" is longer than
    "##a", so it wins); "unaffablex" -> ["[UNK]"].

    Hints: two loops: `while start < len(word)` outside, `for end in range(len(word), start, -1)` inside (longest
    first); Python's for ... else runs the else branch when the loop never hit `break`.
    """
    raise NotImplementedError("exercise wordpiece.py::wordpiece_word is not attempted yet")
