"""Tokenizers: characters, byte-level BPE trained from scratch, and GPT-2's BPE through tiktoken.

A tokenizer maps text to a list of integer ids and back (a round trip: decode(encode(s)) == s). Three kinds share
one interface (`encode`, `decode`, `vocab_size`, `special_tokens`, `pad_id` / `mask_id` / `cls_id` / `sep_id` /
`eos_id`, `to_dict`), and `tokenizer_from_dict` rebuilds any of them from a checkpoint's JSON metadata.

- `CharTokenizer`: one id per character seen in the training text (Tiny Shakespeare: 65).
- `BPETokenizer`: byte-level BPE (Sennrich et al. 2016, https://arxiv.org/abs/1508.07909; GPT-2 paper,
  Radford et al. 2019, section 2.2) trained by the written-out algorithm in `minilm/bpe.py` (Eq. 1.1-1.3);
  once trained it encodes through a `tiktoken.Encoding` built from the learned ranks, which gives the same ids
  as the hand-written encoder (`encode_by_hand`) many times faster.
- `GPT2Tokenizer`: OpenAI's 50,257-token GPT-2 vocabulary, from a local `.tiktoken` ranks file or tiktoken's
  download (minilm/gpt2_ranks.py finds and reads them).

Special tokens (for the masked LM and classification: BERT, Devlin et al. 2019, https://arxiv.org/abs/1810.04805,
section 3) are requested by role, the same way for every kind: `special_tokens=("pad", "mask", "cls", "sep")`
or `tok.with_special_tokens([...])`. They get ids after the base vocabulary, `encode` never produces them from
plain text unless `allowed_special` names them, and `decode` turns them back into their strings.

BERT's WordPiece (lower-casing, accent stripping, greedy longest-match-first) lives in minilm/wordpiece.py.

Left out on purpose: Unicode normalisation and lower-casing (outside WordPiece), SentencePiece.
Explained in lectures/01_tokenizer.ipynb.
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path
from typing import Iterable

import tiktoken

from minilm import bpe
from minilm.files import atomic_write_text
from minilm.gpt2_ranks import find_gpt2_ranks
from minilm.wordpiece import WordPieceTokenizer

# Role name -> token string. cls/bos and sep/eos stand in for each other when only one of the pair exists.
SPECIAL_ROLES = {"pad": "<pad>", "mask": "<mask>", "cls": "<cls>", "sep": "<sep>",
                 "bos": "<bos>", "eos": "<eos>", "unk": "<unk>"}
GPT2_EOT = "<|endoftext|>"


class Tokenizer:
    """Shared special-token handling. Subclasses define `kind`, `base_vocab_size`, `_encode_ordinary`, `_decode_ordinary`."""

    kind = "base"
    _aliases: dict[str, str] = {}  # per-kind role overrides (GPT-2: eos/bos -> <|endoftext|>)
    _builtin: dict[str, int] = {}  # special tokens that belong to the base vocabulary (GPT-2's <|endoftext|>)

    def __init__(self, special_tokens: Iterable[str] = ()):
        self.special_tokens: dict[str, int] = dict(self._builtin)
        for tok in self._resolve(special_tokens):
            if tok not in self.special_tokens:
                self.special_tokens[tok] = self.base_vocab_size + len(self.special_tokens) - len(self._builtin)
        self._id_to_special = {i: tok for tok, i in self.special_tokens.items()}

    @property
    def base_vocab_size(self) -> int:
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        return self.base_vocab_size + len(self.special_tokens) - len(self._builtin)

    def _resolve(self, names: Iterable[str]) -> list[str]:
        if isinstance(names, str):
            names = [names]
        out = []
        for name in names:
            if name in self._aliases:
                out.append(self._aliases[name])
            elif name in SPECIAL_ROLES:
                out.append(SPECIAL_ROLES[name])
            elif name.startswith("<") and name.endswith(">") and len(name) > 2:
                out.append(name)
            else:
                raise ValueError(f"unknown special token {name!r}: use a role in {sorted(SPECIAL_ROLES)} "
                                 f"or a literal string like '<name>'")
        return out

    def with_special_tokens(self, names: Iterable[str]) -> "Tokenizer":
        """A copy with `names` (roles or '<strings>') added after the existing ones; present ones are kept."""
        spec = self.to_dict()
        spec["special_tokens"] = list(self.special_tokens) + [t for t in self._resolve(names)
                                                              if t not in self.special_tokens]
        return tokenizer_from_dict(spec, getattr(self, "ranks_path", None))

    def _id(self, *roles: str) -> int | None:
        for role in roles:
            tok = self._aliases.get(role, SPECIAL_ROLES[role])
            if tok in self.special_tokens:
                return self.special_tokens[tok]
        return None

    pad_id = property(lambda self: self._id("pad"))
    mask_id = property(lambda self: self._id("mask"))
    unk_id = property(lambda self: self._id("unk"))
    cls_id = property(lambda self: self._id("cls", "bos"))
    bos_id = property(lambda self: self._id("bos", "cls"))
    sep_id = property(lambda self: self._id("sep", "eos"))
    eos_id = property(lambda self: self._id("eos", "sep"))

    @property
    def special_ids(self) -> list[int]:
        return sorted(self.special_tokens.values())

    def _allowed(self, allowed_special) -> set[str]:
        if allowed_special == "all":
            return set(self.special_tokens)
        allowed = set(self._resolve(allowed_special))
        unknown = allowed - set(self.special_tokens)
        if unknown:
            raise ValueError(f"allowed_special {sorted(unknown)} are not special tokens of this tokenizer "
                             f"(it has {list(self.special_tokens)}); add them with with_special_tokens()")
        return allowed

    def encode(self, text: str, allowed_special: Iterable[str] | str = ()) -> list[int]:
        """Text -> ids. Special-token strings in `text` are plain text unless named in `allowed_special` (or "all").

        Where allowed special tokens overlap, the longest one that matches wins, scanning left to right (as Hugging
        Face tokenizers match added tokens): with `<|e|>`, `<|e|><|e|>` and `<|e|><|e|><|e|>`, the text
        "a<|e|><|e|><|e|><|e|>" is "a" + "<|e|><|e|><|e|>" + "<|e|>". Every encoder here follows this one rule.
        """
        return self._encode_with_specials(text, allowed_special, self._encode_ordinary)

    def _encode_with_specials(self, text: str, allowed_special, encode_ordinary) -> list[int]:
        """Split `text` at the allowed special strings (longest first), `encode_ordinary(part, offset)` the rest."""
        allowed = self._allowed(allowed_special)
        if not allowed:
            return encode_ordinary(text, 0)
        ids: list[int] = []
        pattern = "(" + "|".join(re.escape(tok) for tok in sorted(allowed, key=len, reverse=True)) + ")"
        pos = 0
        for k, part in enumerate(re.split(pattern, text)):
            if k % 2:  # odd parts are the captured special strings
                ids.append(self.special_tokens[part])
            elif part:
                ids.extend(encode_ordinary(part, pos))
            pos += len(part)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text; a special id becomes its string (e.g. '<pad>')."""
        out, run = [], []
        for i in ids:
            i = int(i)
            if i in self._id_to_special:
                if run:
                    out.append(self._decode_ordinary(run))
                    run = []
                out.append(self._id_to_special[i])
            elif 0 <= i < self.base_vocab_size:
                run.append(i)
            else:
                raise ValueError(f"token id {i} is outside this {self.kind} tokenizer's vocabulary [0, {self.vocab_size})")
        if run:
            out.append(self._decode_ordinary(run))
        return "".join(out)

    def _encode_ordinary(self, text: str, offset: int) -> list[int]:
        raise NotImplementedError

    def _decode_ordinary(self, ids: list[int]) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, special_tokens={self.special_tokens})"


class CharTokenizer(Tokenizer):
    """One id per character, in sorted order (Tiny Shakespeare: '\\n', ' ', '!', ..., 'z' -> 0..64)."""

    kind = "char"

    def __init__(self, chars: Iterable[str], special_tokens: Iterable[str] = ()):
        self.chars = list(chars)
        if len(set(self.chars)) != len(self.chars) or any(len(c) != 1 for c in self.chars):
            raise ValueError("CharTokenizer needs distinct single characters")
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        super().__init__(special_tokens)

    @classmethod
    def train(cls, text: str, special_tokens: Iterable[str] = (), unk: bool = False) -> "CharTokenizer":
        """Vocabulary = sorted distinct characters of `text`; `unk=True` adds '<unk>' for unseen characters."""
        specials = list(special_tokens) + (["unk"] if unk else [])
        return cls(sorted(set(text)), specials)

    @property
    def base_vocab_size(self) -> int:
        return len(self.chars)

    def _encode_ordinary(self, text: str, offset: int) -> list[int]:
        stoi = self.stoi
        try:
            return [stoi[c] for c in text]
        except KeyError:
            pass
        unk, out = self.unk_id, []
        for pos, c in enumerate(text):
            i = stoi.get(c, unk)
            if i is None:
                raise ValueError(
                    f"character {c!r} at position {offset + pos} is not in this CharTokenizer's vocabulary of "
                    f"{len(self.chars)} characters; build it from text that contains it, or with unk=True to map "
                    f"unseen characters to '<unk>'")
            out.append(i)
        return out

    def _decode_ordinary(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "chars": "".join(self.chars), "special_tokens": dict(self.special_tokens)}


class _TiktokenTokenizer(Tokenizer):
    """Encoding and decoding through a tiktoken.Encoding (`self.enc`), which also knows the special tokens."""

    def _build_encoding(self, name: str, ranks: dict[bytes, int], pattern: str) -> None:
        self.enc = tiktoken.Encoding(name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=self.special_tokens)

    def encode(self, text: str, allowed_special: Iterable[str] | str = ()) -> list[int]:
        """As Tokenizer.encode (longest special token first), with tiktoken encoding the text between them.

        The specials are split off here rather than by tiktoken, whose own matching can take a shorter special
        token where two overlap; the ordinary text is encoded the same either way."""
        return self._encode_with_specials(text, allowed_special, lambda part, offset: self.enc.encode_ordinary(part))

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"token id {bad[0]} is outside this {self.kind} tokenizer's vocabulary [0, {self.vocab_size})")
        return self.enc.decode(ids)  # invalid UTF-8 (a cut-off multi-byte char) becomes U+FFFD

    def _decode_ordinary(self, ids: list[int]) -> str:
        return self.enc.decode(ids)


class BPETokenizer(_TiktokenTokenizer):
    """Byte-level BPE learned from text (minilm/bpe.py); ids 0..255 are bytes, 256+k is merge k."""

    kind = "bpe"

    def __init__(self, merges: Iterable[tuple[int, int]], special_tokens: Iterable[str] = (),
                 pattern: str = bpe.GPT2_SPLIT_PATTERN):
        self.merges = [tuple(m) for m in merges]
        self.pattern = pattern
        self.token_bytes = bpe.merges_to_bytes(self.merges)
        self.ranks = {b: i for i, b in enumerate(self.token_bytes)}
        if len(self.ranks) != len(self.token_bytes):
            raise ValueError("two BPE merges produce the same bytes; tiktoken needs one id per byte string")
        super().__init__(special_tokens)
        self._build_encoding("minilm-bpe", self.ranks, pattern)
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def train(cls, text: str, vocab_size: int, special_tokens: Iterable[str] = (),
              pattern: str = bpe.GPT2_SPLIT_PATTERN) -> "BPETokenizer":
        """Learn `vocab_size - 256` merges on `text` (Eq. 1.1-1.2); special tokens come after `vocab_size`."""
        return cls(bpe.train_bpe(text, vocab_size, pattern), special_tokens, pattern)

    @property
    def base_vocab_size(self) -> int:
        return len(self.token_bytes)

    def encode_by_hand(self, text: str, allowed_special: Iterable[str] | str = ()) -> list[int]:
        """The hand-written encoder (Eq. 1.3, minilm/bpe.py): same ids as `encode`, slower."""
        return Tokenizer.encode(self, text, allowed_special)

    def _encode_ordinary(self, text: str, offset: int) -> list[int]:
        return bpe.encode_ordinary(text, self.ranks, self.pattern, self._cache)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "pattern": self.pattern, "merges": [list(m) for m in self.merges],
                # the merged tokens' bytes, base64 like a .tiktoken file: readable, and checked on load
                "tokens_b64": [base64.b64encode(b).decode("ascii") for b in self.token_bytes[256:]],
                "special_tokens": dict(self.special_tokens)}


class GPT2Tokenizer(_TiktokenTokenizer):
    """GPT-2's byte-level BPE: 50,256 merged byte strings + '<|endoftext|>' = 50256 (eos); extras after that."""

    kind = "gpt2"
    _aliases = {"eos": GPT2_EOT, "bos": GPT2_EOT}
    _builtin = {GPT2_EOT: 50256}

    def __init__(self, ranks_path: str | os.PathLike | None = None, special_tokens: Iterable[str] = ()):
        # the file is remembered, so with_special_tokens() reuses it (minilm/gpt2_ranks.py: where it is looked for)
        ranks, self.ranks_path = find_gpt2_ranks(ranks_path)
        if len(ranks) != 50256:
            raise ValueError(f"expected 50,256 GPT-2 ranks, got {len(ranks)}: is this the gpt2 (r50k_base) file?")
        super().__init__(special_tokens)
        self._build_encoding("gpt2", ranks, bpe.GPT2_SPLIT_PATTERN)

    @property
    def base_vocab_size(self) -> int:
        return 50257

    def to_dict(self) -> dict:
        # The 50k ranks are not copied into every checkpoint: they are rebuilt from the file / download.
        return {"kind": self.kind, "special_tokens": dict(self.special_tokens)}


def tokenizer_from_dict(spec: dict, gpt2_ranks_path: str | os.PathLike | None = None) -> Tokenizer:
    """Rebuild any tokenizer from `tok.to_dict()` (e.g. `meta["tokenizer"]` of a checkpoint or meta.json)."""
    kind = spec.get("kind")
    specials = spec.get("special_tokens", {})
    names = sorted(specials, key=specials.get) if isinstance(specials, dict) else list(specials)
    if kind == "char":
        tok = CharTokenizer(spec["chars"], names)
    elif kind == "bpe":
        tok = BPETokenizer(spec["merges"], names, spec.get("pattern", bpe.GPT2_SPLIT_PATTERN))
        stored = spec.get("tokens_b64")
        if stored is not None and [base64.b64decode(b64) for b64 in stored] != tok.token_bytes[256:]:
            raise ValueError("BPE tokenizer dict is inconsistent: 'merges' do not produce 'tokens_b64'")
    elif kind == "gpt2":
        tok = GPT2Tokenizer(gpt2_ranks_path, [n for n in names if n != GPT2_EOT])
    elif kind == "wordpiece":  # BERT's, in minilm/wordpiece.py
        tok = WordPieceTokenizer.from_dict(spec)
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}; expected 'char', 'bpe', 'gpt2' or 'wordpiece'")
    if isinstance(specials, dict) and specials and tok.special_tokens != specials:
        raise ValueError(f"special token ids {specials} do not match the rebuilt tokenizer's {tok.special_tokens}")
    return tok


def save_tokenizer(tok: Tokenizer, path: str | os.PathLike) -> None:
    """Write `tok.to_dict()` as JSON, atomically (minilm/files.py)."""
    atomic_write_text(path, json.dumps(tok.to_dict()))


def load_tokenizer(path: str | os.PathLike, gpt2_ranks_path: str | os.PathLike | None = None) -> Tokenizer:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file {path} does not exist")
    return tokenizer_from_dict(json.loads(path.read_text(encoding="utf-8")), gpt2_ranks_path)
