"""Exercise for lectures/11_token_classification.ipynb: put word labels on subword tokens.

Write the body; keep the signature as it is (a test compares it with minilm/tagging.py). Check your work:

    pytest tests/exercises/test_tagging_exercises.py --impl=exercises     # or: python -m minilm.grade

The tests compare with cases worked out by hand and with the rule itself on random words.
"""

from __future__ import annotations

IGNORE_INDEX = -100  # the label of a token that carries no loss and no prediction


def align_labels(word_pieces, word_labels, piece: str = "first") -> tuple[list[int], list[int]]:
    """Exercise tagging.py::align_labels (Eq. 11.2): one label per subword token, each word labelled exactly once.

    word_pieces: a list with, for each word, the list of its token ids (at least one). word_labels: one label per
    word. Return (ids, labels): ids is every word's pieces concatenated in order; labels has the same length, holds
    the word's label on its first piece (BERT, Devlin et al. 2019, section 5.3) and IGNORE_INDEX on every other
    piece. With piece="last" the label goes on each word's last piece instead (what a causal model should use).
        word_pieces [[5], [7, 8, 9], [4]], word_labels [0, 1, 2]
        -> ids [5, 7, 8, 9, 4], labels [0, 1, -100, -100, 2]            (piece="last": [0, -100, -100, 1, 2])

    Hints: keep a running offset, the position where the current word starts in the concatenated row; a word of n
    pieces covers positions offset .. offset + n - 1.
    """
    raise NotImplementedError("exercise tagging.py::align_labels is not attempted yet")
