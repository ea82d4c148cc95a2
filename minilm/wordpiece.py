"""WordPiece, BERT's tokenizer, written out: basic tokenisation, then greedy longest-match-first word pieces.

WordPiece (Wu et al. 2016, https://arxiv.org/abs/1609.08144, section 4.1; Devlin et al. 2019,
https://arxiv.org/abs/1810.04805, section 3) applies a fixed vocabulary in two steps:
  1. basic tokenisation (Eq. 1.4): drop control characters and turn every whitespace into a space, put spaces around
     CJK ideographs (Chinese has no spaces between words), split on whitespace, lower-case and strip accents for an
     uncased vocabulary ("Café" -> "cafe"), and split every punctuation character off as a word of its own;
  2. word pieces (Eq. 1.5): cut each word into the longest prefix found in the vocabulary, then the longest
     continuation, which the vocabulary spells with a leading "##" ("unaffable" -> "un", "##aff", "##able"); a word
     that cannot be covered, or is longer than 100 characters, becomes [UNK] as a whole.
BPE (minilm/bpe.py) learns merges and applies them in the order learned; WordPiece applies only the vocabulary,
greedily, and never fails on bytes because it has [UNK] instead. lectures/01_tokenizer.ipynb puts the two side by side.

`WordPieceTokenizer` loads a `vocab.txt` (one token per line, id = line number) and has minilm's tokenizer
interface (minilm/tokenizer.py, which imports this file to rebuild it from a checkpoint): BERT's [PAD] / [UNK] /
[CLS] / [SEP] / [MASK] are its pad / unk / cls / sep / mask special tokens, at the ids the vocabulary gives them.
It gives the same ids as `transformers.BertTokenizer` (tests/test_wordpiece.py).

Left out on purpose: training a WordPiece vocabulary (BERT's was built once by Google's internal tool; BPE is the one
minilm trains), sentence-pair inputs, offsets, NFC normalisation (Google's reference tokenizer does none either).
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path
from typing import Iterable

# minilm's role -> BERT's token string
BERT_SPECIALS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
# decode's clean-up, in this order (transformers' clean_up_tokenization): "hello , world ." -> "hello, world."
CLEANUP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
           (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))
MAX_CHARS_PER_WORD = 100  # longer words become [UNK] whole (Google's tokenization.py, max_input_chars_per_word)


# ---------------------------------------------------------------------------------- step 1: basic tokenisation
def is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def is_control(ch: str) -> bool:
    return ch not in "\t\n\r" and unicodedata.category(ch).startswith("C")  # \t\n\r count as whitespace


def is_punctuation(ch: str) -> bool:
    """Unicode punctuation (category P*), and every ASCII character that is not a letter, digit or space: "$", "^",
    "`", "+" are split off too, as BERT does."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def is_cjk(ch: str) -> bool:
    """A CJK Unified Ideograph (the Unicode blocks BERT lists); Hangul, Hiragana and Katakana are not among them."""
    cp = ord(ch)
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF
            or 0x2F800 <= cp <= 0x2FA1F)


def strip_accents(word: str) -> str:
    """'Café' -> 'Cafe': decompose (NFD: 'é' -> 'e' + U+0301) and drop the combining marks (category Mn)."""
    return "".join(ch for ch in unicodedata.normalize("NFD", word) if unicodedata.category(ch) != "Mn")


def split_punctuation(word: str) -> list[str]:
    """'hello,world!' -> ['hello', ',', 'world', '!']: each punctuation character is a word of its own."""
    out: list[str] = []
    start_new = True
    for ch in word:
        if is_punctuation(ch):
            out.append(ch)
            start_new = True
        else:
            if start_new:
                out.append("")
            out[-1] += ch
            start_new = False
    return out


def basic_tokenize(text: str, lower_case: bool = True, accents: bool | None = None,
                   split_cjk: bool = True) -> list[str]:
    """Eq. 1.4: text -> words, before any vocabulary is consulted.

    `accents`: strip accents (True), keep them (False), or None = strip exactly when lower-casing (BERT's default).
    Example: basic_tokenize("Héllo, 世界!") == ['hello', ',', '世', '界', '!'].
    """
    chars = []
    for ch in text:
        if ch == "\x00" or ch == "\ufffd" or is_control(ch):
            continue  # invalid and control characters are dropped
        if split_cjk and is_cjk(ch):
            chars.append(f" {ch} ")  # every ideograph is a word
        else:
            chars.append(" " if is_whitespace(ch) else ch)  # all whitespace becomes a plain space
    words = []
    for word in "".join(chars).split():
        if lower_case:
            word = word.lower()
        if accents if accents is not None else lower_case:
            word = strip_accents(word)
        words.extend(w for w in split_punctuation(word) if w)
    return words


# --------------------------------------------------------------------------------------- step 2: word pieces
def wordpiece_word(word: str, vocab, unk_token: str = "[UNK]", max_chars: int = MAX_CHARS_PER_WORD) -> list[str]:
    """Eq. 1.5: greedy longest-match-first. `vocab`: anything with `in` (a dict token -> id, a set).

    From position `start`, take the longest piece word[start:end] in the vocabulary (spelled "##" + piece when
    start > 0: a continuation), append it, continue at `end`. If no piece matches at some start, the whole word is
    [UNK]: WordPiece does not keep the pieces it found before the gap.
    Example, vocab {un, ##aff, ##able, ##a}: "unaffable" -> ['un', '##aff', '##able'] ('##a' is shorter than '##aff').
    """
    if len(word) > max_chars:
        return [unk_token]
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):  # longest first
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
        else:
            return [unk_token]  # nothing in the vocabulary starts here
        pieces.append(piece)
        start = end
    return pieces


# ------------------------------------------------------------------------------------------------ the tokenizer
class WordPieceTokenizer:
    """BERT's tokenizer from a vocab.txt: `encode(text) -> ids` (Eqs. 1.4-1.5), `decode(ids) -> text`.

    lower_case=True for an uncased vocabulary (bert-base-uncased); `accents` as in `basic_tokenize`. The interface is
    minilm/tokenizer.py's (that module rebuilds this one from a checkpoint), but the special tokens are simpler:
    BERT's five are already in the vocabulary, and there are no others.
    """

    kind = "wordpiece"

    def __init__(self, vocab: Iterable[str], lower_case: bool = True, accents: bool | None = None,
                 split_cjk: bool = True):
        self.vocab = list(vocab)
        self.lower_case, self.accents, self.split_cjk = bool(lower_case), accents, bool(split_cjk)
        self.token_to_id = {tok: i for i, tok in enumerate(self.vocab)}
        if len(self.token_to_id) != len(self.vocab):
            dup = next(t for i, t in enumerate(self.vocab) if self.token_to_id[t] != i)
            raise ValueError(f"the WordPiece vocabulary lists {dup!r} twice: one token per line, each once")
        missing = [t for t in BERT_SPECIALS.values() if t not in self.token_to_id]
        if missing:
            raise ValueError(f"the WordPiece vocabulary has no {', '.join(missing)}: BERT's inputs need "
                             f"{', '.join(BERT_SPECIALS.values())} (is this a BERT vocab.txt?)")
        if self.lower_case:
            cased = [t for t in self.vocab if t != t.lower() and not (t.startswith("[") and t.endswith("]"))]
            if len(cased) > 0.01 * len(self.vocab):  # an uncased vocabulary has (next to) none
                raise ValueError(f"the vocabulary holds {len(cased):,} word pieces with capitals (e.g. "
                                 f"{', '.join(repr(t) for t in cased[:3])}) but lower_case is on, so none of them "
                                 f"could ever be produced: this is a cased checkpoint; load it with "
                                 f"do_lower_case false (tokenizer_config.json)")
        self.special_tokens = {t: self.token_to_id[t] for t in BERT_SPECIALS.values()}  # [PAD] -> 0, ...

    @classmethod
    def from_file(cls, vocab_file, **kw) -> "WordPieceTokenizer":
        """Read a vocab.txt: one token per line, the id is the line number (from 0)."""
        path = Path(vocab_file)
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: a BERT checkpoint directory holds vocab.txt (one token per "
                                    f"line) next to config.json")
        with open(path, encoding="utf-8") as f:
            return cls([line.rstrip("\n") for line in f], **kw)

    @classmethod
    def from_pretrained(cls, path) -> "WordPieceTokenizer":
        """A Hugging Face BERT directory: vocab.txt, casing from tokenizer_config.json (do_lower_case, default true,
        as BERT's), checked against config.json's vocab_size and pad_token_id when that file is there."""
        path = Path(path)
        settings = {}
        if (path / "tokenizer_config.json").is_file():
            settings = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
        try:
            tok = cls.from_file(path / "vocab.txt", lower_case=settings.get("do_lower_case", True),
                                accents=settings.get("strip_accents"),
                                split_cjk=settings.get("tokenize_chinese_chars", True))
        except ValueError as e:
            raise ValueError(f"{path / 'vocab.txt'}: {e}") from None
        if (path / "config.json").is_file():
            hf = json.loads((path / "config.json").read_text(encoding="utf-8"))
            if "vocab_size" in hf and hf["vocab_size"] != tok.vocab_size:
                raise ValueError(f"{path / 'vocab.txt'} has {tok.vocab_size:,} tokens but config.json's vocab_size is "
                                 f"{hf['vocab_size']:,}: the vocabulary does not belong to this model")
            if hf.get("pad_token_id") is not None and hf["pad_token_id"] != tok.pad_id:
                raise ValueError(f"config.json's pad_token_id is {hf['pad_token_id']} but vocab.txt puts [PAD] at "
                                 f"{tok.pad_id}: the vocabulary does not belong to this model")
        return tok

    # minilm's special-token roles (minilm/tokenizer.py): cls stands in for bos and sep for eos, as there
    vocab_size = property(lambda self: len(self.vocab))
    pad_id = property(lambda self: self.special_tokens["[PAD]"])
    unk_id = property(lambda self: self.special_tokens["[UNK]"])
    cls_id = bos_id = property(lambda self: self.special_tokens["[CLS]"])
    sep_id = eos_id = property(lambda self: self.special_tokens["[SEP]"])
    mask_id = property(lambda self: self.special_tokens["[MASK]"])
    special_ids = property(lambda self: sorted(self.special_tokens.values()))

    def _special(self, name: str) -> str:
        """A role ('cls', also 'bos' / 'eos') or a token string ('[CLS]') -> the token string."""
        token = BERT_SPECIALS.get({"bos": "cls", "eos": "sep"}.get(name, name), name)
        if token not in self.special_tokens:
            raise ValueError(f"unknown special token {name!r}: BERT has {list(self.special_tokens)} (roles "
                             f"{sorted(BERT_SPECIALS)})")
        return token

    def with_special_tokens(self, names: Iterable[str]) -> "WordPieceTokenizer":
        """Itself: the special tokens train.py and finetune.py ask for are all in BERT's vocabulary already."""
        for name in [names] if isinstance(names, str) else names:
            self._special(name)  # raises for a token BERT does not have
        return self

    def tokenize(self, text: str) -> list[str]:
        """Text -> word-piece strings (Eqs. 1.4-1.5), e.g. 'Unaffable!' -> ['un', '##aff', '##able', '!']."""
        return [p for w in basic_tokenize(text, self.lower_case, self.accents, self.split_cjk)
                for p in wordpiece_word(w, self.token_to_id)]

    def encode(self, text: str, allowed_special: Iterable[str] | str = ()) -> list[int]:
        """Text -> ids. '[CLS]' in the text is plain text (brackets and letters) unless `allowed_special` names it
        ('cls' or '[CLS]'), or is "all"; BERT's own tokenizer reads every special string as the special token."""
        names = list(self.special_tokens) if allowed_special == "all" else \
            [self._special(n) for n in ([allowed_special] if isinstance(allowed_special, str) else allowed_special)]
        if not names:
            return [self.token_to_id[p] for p in self.tokenize(text)]
        ids = []
        for k, part in enumerate(re.split("(" + "|".join(map(re.escape, names)) + ")", text)):
            ids.extend([self.special_tokens[part]] if k % 2 else self.encode(part))  # odd parts: the specials
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Pieces joined by spaces, '##' continuations glued on, then the spaces before . , ! ? and inside English
        contractions dropped (BERT's decode with its clean-up). Lower-casing, accents and [UNK] are not undone, so
        decode(encode(text)) is the text as BERT read it; encoding that again gives the same ids."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"token id {i} is outside this WordPiece vocabulary [0, {self.vocab_size})")
            out.append(self.vocab[i])
        text = " ".join(out).replace(" ##", "").strip()
        for dirty, clean in CLEANUP:
            text = text.replace(dirty, clean)
        return text

    def to_dict(self) -> dict:
        # The vocabulary is stored whole (bert-base: 30,522 tokens, ~0.3 MB of JSON), so a checkpoint stands alone.
        return {"kind": self.kind, "vocab": self.vocab, "lower_case": self.lower_case, "accents": self.accents,
                "split_cjk": self.split_cjk, "special_tokens": dict(self.special_tokens)}

    @classmethod
    def from_dict(cls, d: dict) -> "WordPieceTokenizer":
        return cls(d["vocab"], d.get("lower_case", True), d.get("accents"), d.get("split_cjk", True))

    def __repr__(self) -> str:
        return f"WordPieceTokenizer(vocab_size={self.vocab_size}, lower_case={self.lower_case})"
