"""Token classification data: tagged-sentence readers, word-to-subword label alignment, resumable batches, the
most-frequent-tag baseline.

A tagger labels every word (part of speech, named-entity BIO tags), but the model reads subword tokens. Following
BERT (Devlin et al. 2019, https://arxiv.org/abs/1810.04805, section 5.3), each word is tokenized on its own, its
label goes on its *first* piece and the other pieces (and the special tokens) get IGNORE_INDEX, so the loss and the
predictions count each word exactly once (Eq. 11.2); predictions are read back at those positions. A causal
backbone may label the *last* piece instead (`piece="last"`): the only one that has read the whole word.

Words are encoded as `word` (the first) and ` word` (the rest), which is exactly how the tokenizer splits the
sentence `" ".join(words)` (its pre-tokenizer never joins across a space), so pretraining on that text and
fine-tuning on the words see the same tokens.

Readers: CoNLL-U (https://universaldependencies.org/format.html; the UPOS column, skipping comments, multi-word
token ranges `19-20` and empty nodes `8.1`) and a plain two-column file (word, whitespace, tag; a blank line
between sentences; BIO tags work as they are). Explained in lectures/11_token_classification.ipynb.
Left out on purpose: CoNLL-U's other columns (lemmas, trees), nested entities, sliding windows over long sentences.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from minilm.config import IGNORE_INDEX
from minilm.data import pad_rows, to_device
from minilm.labelled import ClassificationBatches

PIECES = ("first", "last")


# ------------------------------------------------------------------------------------------------------ readers
def _read_sentences(path, word_tag) -> list[tuple[list[str], list[str]]]:
    """(words, tags) per sentence of a file with a word per line and a blank line after each sentence;
    `word_tag(line, lineno)` reads a line's (word, tag), None for a line that holds no word."""
    sentences, words, tags = [], [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():  # a blank line ends a sentence
                if words:
                    sentences.append((words, tags))
                words, tags = [], []
            elif (pair := word_tag(line, lineno)) is not None:
                words.append(pair[0])
                tags.append(pair[1])
    if words:
        sentences.append((words, tags))
    return sentences


def read_conllu(path) -> list[tuple[list[str], list[str]]]:
    """(words, UPOS tags) per sentence of a CoNLL-U file: column 2 (FORM) and column 4 (UPOS)."""

    def word_tag(line: str, lineno: int) -> tuple[str, str] | None:
        if line.startswith("#"):  # sent_id, text, newdoc comments
            return None
        cols = line.rstrip("\r\n").split("\t")
        if len(cols) != 10:
            raise ValueError(f"{path}, line {lineno}: expected 10 tab-separated CoNLL-U columns, got {len(cols)}")
        if "-" in cols[0] or "." in cols[0]:  # `19-20 don't` (its words follow) or the empty node `8.1`
            return None
        if not cols[0].isdigit():
            raise ValueError(f"{path}, line {lineno}: word ID {cols[0]!r} is not an integer, a range or a decimal")
        return cols[1], cols[3]

    return _read_sentences(path, word_tag)


def read_two_column(path) -> list[tuple[list[str], list[str]]]:
    """(words, tags) per sentence of a `word<TAB or spaces>tag` file, sentences separated by blank lines. With more
    columns the first is the word and the last the tag (CoNLL-2003's layout); `-DOCSTART-` lines are skipped."""

    def word_tag(line: str, lineno: int) -> tuple[str, str] | None:
        fields = line.split()
        if fields[0] == "-DOCSTART-":
            return None
        if len(fields) < 2:
            raise ValueError(f"{path}, line {lineno}: expected a word and a tag, got {line.strip()!r}")
        return fields[0], fields[-1]

    return _read_sentences(path, word_tag)


def read_tagged(path, labels=None) -> tuple[list[list[str]], list[list[int]], list[str]]:
    """(words per sentence, tag ids per sentence, label set) from a .conllu or a two-column file.

    `labels` fixes the label set and its order (id k = labels[k]); by default it is the sorted set of tags found.
    A tag outside it is an error naming the sentence and the word.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tagged data file {path} does not exist (did you run the dataset's prepare.py?)")
    sentences = read_conllu(path) if path.suffix.lower() == ".conllu" else read_two_column(path)
    if not sentences:
        raise ValueError(f"{path} has no sentences: expected one `word tag` line per word and a blank line between "
                         f"sentences (or CoNLL-U)")
    names = list(labels) if labels is not None else sorted({t for _, tags in sentences for t in tags})
    to_id = {name: k for k, name in enumerate(names)}
    ids = []
    for n, (words, tags) in enumerate(sentences, 1):
        for word, tag in zip(words, tags):
            if tag not in to_id:
                raise ValueError(f"{path}, sentence {n}, word {word!r}: tag {tag!r} is not in the label set {names}")
        ids.append([to_id[t] for t in tags])
    return [w for w, _ in sentences], ids, names


def is_bio(names) -> bool:
    """Whether a label set is BIO / IOB2 (every tag `O`, `B-TYPE` or `I-TYPE`): then entity spans are scored."""
    return any(n != "O" for n in names) and all(n == "O" or n[:2] in ("B-", "I-") and len(n) > 2 for n in names)


# ------------------------------------------------------------------------------------------------------ alignment
def encode_words(words, tokenizer) -> list[list[int]]:
    """Each word's pieces: `word` for the first, ` word` for the others (the tokenization of " ".join(words))."""
    pieces = [tokenizer.encode(w if i == 0 else " " + w) for i, w in enumerate(words)]
    empty = [w for w, p in zip(words, pieces) if not p]
    if empty:
        raise ValueError(f"the tokenizer gives no tokens for the word {empty[0]!r}")
    return pieces


def label_positions(word_pieces, piece: str = "first") -> list[int]:
    """Position of each word's labelled piece in the concatenated row: [[5], [7, 8, 9], [4]] -> [0, 1, 4] (first)
    or [0, 3, 4] (last)."""
    positions, start = [], 0
    for pieces in word_pieces:
        positions.append(start if piece == "first" else start + len(pieces) - 1)
        start += len(pieces)
    return positions


def align_labels(word_pieces, word_labels, piece: str = "first") -> tuple[list[int], list[int]]:
    """Word labels -> one label per token (Eq. 11.2; Devlin et al. 2019, section 5.3).

    word_pieces [[5], [7, 8, 9], [4]], word_labels [0, 1, 2] -> ids [5, 7, 8, 9, 4], labels [0, 1, -100, -100, 2]:
    each word's label on its first piece (its last with piece="last"), IGNORE_INDEX (-100) on the other pieces.
    """
    assert piece in PIECES, f"piece must be one of {PIECES}, got {piece!r}"
    ids = [i for pieces in word_pieces for i in pieces]
    labels = [IGNORE_INDEX] * len(ids)
    for pos, label in zip(label_positions(word_pieces, piece), word_labels):
        labels[pos] = label
    return ids, labels


class TokenBatches(ClassificationBatches):
    """Seeded, resumable batches of (idx, attention_mask, labels) for token classification, all (B, T).

    Row r is `[cls] pieces [sep]` (the specials the input view has), cut to max_len; labels are aligned by Eq. 11.2
    and padded with IGNORE_INDEX. `positions[r]` holds the row positions of the labelled pieces of the words that
    survived the cut (`n_words[r]` words in the sentence); `truncated` lists the sentences cut. Order, resume and
    state_dict are ClassificationBatches'.
    """

    def __init__(self, words, tags, inputs, batch_size: int, max_len: int, shuffle: bool = True, seed: int = 0,
                 piece: str = "first", device="cpu", bucket: int = 0):
        if tags is not None and len(tags) != len(words):
            raise ValueError(f"{len(words)} sentences but {len(tags)} tag sequences")
        if piece not in PIECES:
            raise ValueError(f"piece must be one of {PIECES}, got {piece!r}")
        head, tail, room = self._start(inputs, batch_size, max_len, shuffle, seed, False, device, bucket, None,
                                       "words")
        rows, row_labels, self.positions, self.n_words, self.truncated = [], [], [], [], []
        for n, sentence in enumerate(words):
            pieces = encode_words(sentence, inputs)
            ids, labels = align_labels(pieces, tags[n] if tags is not None else [0] * len(sentence), piece)
            if len(ids) > room:
                self.truncated.append(n)
            kept = [p + len(head) for p in label_positions(pieces, piece) if p < room]
            rows.append(head + ids[:room] + tail)
            row_labels.append([IGNORE_INDEX] * len(head) + labels[:room] + [IGNORE_INDEX] * len(tail))
            self.positions.append(np.array(kept, dtype=np.int64))
            self.n_words.append(len(sentence))
        self._pack(rows)
        self.flat_labels = None if tags is None else np.fromiter((y for r in row_labels for y in r), dtype=np.int64,
                                                                  count=int(self.offsets[-1]))

    @property
    def n_truncated(self) -> int:
        return len(self.truncated)

    def batch(self, rows) -> tuple:
        rows = [int(r) for r in rows]
        spans = [slice(self.offsets[r], self.offsets[r + 1]) for r in rows]
        idx, attention_mask = pad_rows([self.flat[s] for s in spans], self.pad_id)  # (B, T) each
        labels = None
        if self.flat_labels is not None:
            labels, _ = pad_rows([self.flat_labels[s] for s in spans], IGNORE_INDEX)  # (B, T): padding ignored
        return (to_device(idx, self.device), to_device(attention_mask, self.device),
                None if labels is None else to_device(labels, self.device))


@torch.no_grad()
def predict_words(model, batches: TokenBatches, ctx) -> list[np.ndarray]:
    """Per sentence, in file order (batches must not shuffle): log-probabilities (n_kept, K) of each kept word's tag,
    read at its labelled piece."""
    assert not batches.shuffle, "predict_words reads rows in file order: build the batches with shuffle=False"
    was_training = model.training
    model.eval()
    out: list[np.ndarray] = []
    for idx, mask, _ in batches:
        with ctx:
            logits, _ = model(idx, mask)  # (B, T, K)
        log_probs = F.log_softmax(logits.float(), dim=-1).cpu().numpy()  # (B, T, K)
        for b in range(len(idx)):
            out.append(log_probs[b, batches.positions[len(out)]])  # (n_kept, K)
    model.train(was_training)
    return out


def word_predictions(log_probs: list[np.ndarray], n_words: list[int], fill: int) -> list[list[int]]:
    """Tag ids per word: the argmax where the word was read, `fill` for the words cut off past max_len."""
    return [lp.argmax(axis=1).tolist() + [fill] * (n - len(lp)) for lp, n in zip(log_probs, n_words)]


# ------------------------------------------------------------------------------------------------------ baseline
class MostFrequentTag:
    """The baseline every tagger must beat (Eq. 11.8): each word gets the tag it carried most often in training;
    a word never seen gets the most frequent tag overall. Ties go to the smaller tag id."""

    def __init__(self, words, tags):
        counts: dict[str, Counter] = {}
        overall: Counter = Counter()
        for sentence, sentence_tags in zip(words, tags):
            for word, tag in zip(sentence, sentence_tags):
                counts.setdefault(word, Counter())[tag] += 1
                overall[tag] += 1
        if not overall:
            raise ValueError("MostFrequentTag needs at least one tagged word")

        def best(c: Counter) -> int:
            return min(c, key=lambda t: (-c[t], t))  # Eq. 11.8: argmax_t count(w, t), smallest id on ties

        self.overall = best(overall)
        self.by_word = {word: best(c) for word, c in counts.items()}

    def predict(self, words) -> list[list[int]]:
        return [[self.by_word.get(w, self.overall) for w in sentence] for sentence in words]
