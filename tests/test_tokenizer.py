"""Tokenizers: round trips on real text, Tiny Shakespeare's 65 characters, deterministic BPE training, the
hand-written BPE encoder against tiktoken (our ranks and GPT-2's), known GPT-2 ids, special tokens, JSON save/load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tiktoken

import minilm.gpt2_ranks

from minilm import bpe
from minilm.gpt2_ranks import GPT2_RANKS_ENV
from minilm.tokenizer import (BPETokenizer, CharTokenizer, GPT2Tokenizer, load_tokenizer, save_tokenizer,
                              tokenizer_from_dict)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data beside the checkout
NON_ASCII = "naïve café – “quotes” … 東京 🤖 Ωmega\x85 tab\tand\nnewline  spaces "


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"{path} not found: the shared datasets live in ../shared/data beside the checkout")
    return path


@pytest.fixture(scope="module")
def shakespeare() -> str:
    return shared("tinyshakespeare", "input.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def imdb_reviews() -> list[str]:
    return shared("imdb_unsup", "unsup_5k.txt").read_text(encoding="utf-8").split("\n")[:600]


@pytest.fixture(scope="module")
def bpe_shakespeare(shakespeare) -> BPETokenizer:
    return BPETokenizer.train(shakespeare, 512, special_tokens=("pad", "mask", "cls", "sep"))


@pytest.fixture(scope="module")
def gpt2() -> GPT2Tokenizer:
    return GPT2Tokenizer(shared("gpt2", "gpt2.tiktoken"), special_tokens=("pad", "mask"))


# ---- char ----

def test_char_vocab_of_tiny_shakespeare_is_65_and_round_trips(shakespeare):
    tok = CharTokenizer.train(shakespeare)
    assert tok.vocab_size == 65 and tok.special_tokens == {}
    assert tok.chars[:3] == ["\n", " ", "!"]
    ids = tok.encode(shakespeare)
    assert min(ids) == 0 and max(ids) == 64
    assert tok.decode(ids) == shakespeare


def test_char_round_trips_non_ascii():
    tok = CharTokenizer.train(NON_ASCII)
    assert tok.decode(tok.encode(NON_ASCII)) == NON_ASCII


def test_char_unknown_character_error_names_char_and_position():
    tok = CharTokenizer.train("abc ")
    with pytest.raises(ValueError, match=r"'é' at position 3.*unk=True"):
        tok.encode("ab é")
    tok_unk = CharTokenizer.train("abc ", unk=True)
    assert tok_unk.unk_id == 4 and tok_unk.encode("aé") == [1, 4]
    assert tok_unk.decode(tok_unk.encode("aé")) == "a<unk>"


def test_char_special_tokens_follow_the_base_vocabulary():
    tok = CharTokenizer.train("<pad>xy", special_tokens=("pad", "mask", "cls", "sep"))
    base = len(set("<pad>xy"))
    assert [tok.pad_id, tok.mask_id, tok.cls_id, tok.sep_id] == [base, base + 1, base + 2, base + 3]
    assert tok.vocab_size == base + 4 and tok.eos_id == tok.sep_id and tok.bos_id == tok.cls_id
    plain = tok.encode("<pad>x")  # plain text: the string "<pad>" is just characters
    assert len(plain) == 6 and max(plain) < base
    assert tok.encode("<pad>x", allowed_special=["pad"]) == [tok.pad_id, tok.encode("x")[0]]
    assert tok.decode([tok.cls_id, *tok.encode("xy"), tok.sep_id]) == "<cls>xy<sep>"


def test_char_json_round_trip(tmp_path):
    tok = CharTokenizer.train("hello world", special_tokens=("pad", "mask"), unk=True)
    path = tmp_path / "tok.json"
    save_tokenizer(tok, path)
    back = load_tokenizer(path)
    assert back.to_dict() == tok.to_dict() == json.loads(path.read_text())
    assert back.encode("hello?") == tok.encode("hello?")


# ---- BPE helpers and training ----

def test_pair_counts_and_merge_on_the_minbpe_example():
    ids = list("aaabdaaabac".encode())
    a, b = ord("a"), ord("b")
    counts = bpe.get_pair_counts(ids)
    assert max(counts, key=counts.get) == (a, a) and counts[(a, a)] == 4 and counts[(a, b)] == 2
    assert bpe.merge(ids, (a, a), 256) == [256, a, b, ord("d"), 256, a, b, a, ord("c")]
    assert bpe.merge([a, a, a], (a, a), 256) == [256, a]  # non-overlapping, left to right


def test_train_learns_the_most_frequent_pair_first():
    merges = bpe.train_bpe("aaabdaaabac aaabdaaabac", 258)
    assert merges[0] == (ord("a"), ord("a")) and len(merges) == 2


def test_naive_bpe_loop_learns_the_docstring_example_and_the_fast_merges_on_shakespeare(shakespeare):
    assert bpe.merge([1, 2, 3, 1, 2], (1, 2), 256) == [256, 3, 256]  # the worked example in train_bpe_naive
    assert bpe.train_bpe_naive("aaabdaaabac aaabdaaabac", 258) == bpe.train_bpe("aaabdaaabac aaabdaaabac", 258)
    text = shakespeare[:200_000]  # the naive loop recounts everything each merge: a fifth of the play is enough
    naive = bpe.train_bpe_naive(text, 256 + 64)
    assert len(naive) == 64 and naive == bpe.train_bpe(text, 256 + 64)  # same merges, same order


def test_bpe_training_is_deterministic(shakespeare, bpe_shakespeare):
    again = BPETokenizer.train(shakespeare, 512, special_tokens=("pad", "mask", "cls", "sep"))
    assert again.merges == bpe_shakespeare.merges and len(again.merges) == 256
    assert again.to_dict() == bpe_shakespeare.to_dict()


def test_bpe_tiktoken_path_equals_hand_written_encoder_on_shakespeare(shakespeare, bpe_shakespeare):
    ids = bpe_shakespeare.encode(shakespeare)
    assert ids == bpe_shakespeare.encode_by_hand(shakespeare)
    assert len(ids) < 0.55 * len(shakespeare)  # 256 merges already cut the length by ~half
    assert bpe_shakespeare.decode(ids) == shakespeare


def test_bpe_tiktoken_path_equals_hand_written_encoder_on_non_ascii_reviews(imdb_reviews):
    tok = BPETokenizer.train("\n".join(imdb_reviews[:300]), 700, special_tokens=("pad", "mask"))
    text = "\n".join(imdb_reviews[300:]) + NON_ASCII
    ids = tok.encode(text)
    assert ids == tok.encode_by_hand(text)
    assert tok.decode(ids) == text
    assert tok.decode(tok.encode(NON_ASCII)) == NON_ASCII


def test_bpe_special_tokens_and_json_round_trip(tmp_path, bpe_shakespeare):
    tok = bpe_shakespeare
    assert tok.base_vocab_size == 512 and tok.vocab_size == 516
    assert (tok.pad_id, tok.mask_id, tok.cls_id, tok.sep_id) == (512, 513, 514, 515)
    text = "<cls>To be<sep><pad>"
    assert max(tok.encode(text)) < 512  # plain text never yields special ids
    ids = tok.encode(text, allowed_special="all")
    assert ids[0] == tok.cls_id and ids[-2:] == [tok.sep_id, tok.pad_id]
    assert ids == tok.encode_by_hand(text, allowed_special="all")
    assert tok.decode(ids) == text
    save_tokenizer(tok, tmp_path / "bpe.json")
    d = json.loads((tmp_path / "bpe.json").read_text())
    assert d["kind"] == "bpe" and len(d["tokens_b64"]) == 256
    back = load_tokenizer(tmp_path / "bpe.json")
    assert back.encode(text, allowed_special="all") == ids and back.special_tokens == tok.special_tokens


@pytest.mark.parametrize("make", [lambda sp: BPETokenizer.train("abc abc", 300, special_tokens=sp),
                                  lambda sp: CharTokenizer.train("abc", special_tokens=sp)], ids=["bpe", "char"])
def test_overlapping_special_tokens_longest_first_on_every_path(make):
    """One rule for every encoder: at each position the longest allowed special token wins (Hugging Face's rule;
    tiktoken alone would give [97, 257, 257] for the BPE case)."""
    tok = make(["<|e|>", "<|e|><|e|>", "<|e|><|e|><|e|>"])
    one, two, three = (tok.special_tokens[s] for s in ("<|e|>", "<|e|><|e|>", "<|e|><|e|><|e|>"))
    a = tok.encode("a")
    assert tok.encode("a<|e|><|e|><|e|><|e|>", allowed_special="all") == [*a, three, one]
    assert tok.encode("<|e|><|e|>a<|e|>", allowed_special=["<|e|>"]) == [one, one, *a, one]  # only those allowed
    if isinstance(tok, BPETokenizer):
        assert tok.encode_by_hand("a<|e|><|e|><|e|><|e|>", allowed_special="all") == [*a, three, one]
        assert tok.encode("a<|e|>b") == tok.encode_by_hand("a<|e|>b")  # not allowed: plain text on both paths


def test_bpe_dict_with_corrupt_tokens_is_rejected(bpe_shakespeare):
    d = bpe_shakespeare.to_dict()
    d["tokens_b64"][0] = "AAAA"
    with pytest.raises(ValueError, match="inconsistent"):
        tokenizer_from_dict(d)


def test_with_special_tokens_same_api_for_every_kind(bpe_shakespeare, gpt2):
    for tok in (CharTokenizer.train("abc"), BPETokenizer(bpe_shakespeare.merges), gpt2):
        more = tok.with_special_tokens(["pad", "mask", "cls", "sep"])
        for name in ("pad_id", "mask_id", "cls_id", "sep_id"):
            assert getattr(more, name) >= more.vocab_size - 4
        assert more.encode("abc") == tok.encode("abc")
        assert tokenizer_from_dict(json.loads(json.dumps(more.to_dict())), shared("gpt2", "gpt2.tiktoken")
                                   ).special_tokens == more.special_tokens


def test_unknown_special_token_name_is_an_error():
    with pytest.raises(ValueError, match="unknown special token"):
        CharTokenizer.train("abc", special_tokens=("padding",))
    with pytest.raises(ValueError, match="not special tokens"):
        CharTokenizer.train("abc").encode("a", allowed_special=["pad"])


# ---- GPT-2 ----

def test_gpt2_known_ids_and_round_trip(gpt2):
    assert gpt2.encode("Hello world") == [15496, 995]
    assert gpt2.encode("Hello world, the quick brown fox.") == [15496, 995, 11, 262, 2068, 7586, 21831, 13]
    assert gpt2.decode(gpt2.encode(NON_ASCII)) == NON_ASCII
    assert gpt2.eos_id == 50256 and gpt2.pad_id == 50257 and gpt2.mask_id == 50258 and gpt2.vocab_size == 50259
    assert 50256 not in gpt2.encode("the end<|endoftext|>")
    assert gpt2.encode("<|endoftext|>", allowed_special=["eos"]) == [50256]
    assert gpt2.decode([50256, 50257]) == "<|endoftext|><pad>"


def test_hand_written_encoder_matches_tiktoken_with_gpt2_ranks(gpt2, shakespeare):
    text = shakespeare[:20_000] + NON_ASCII + " I'll can't 12345 ...!!"
    assert bpe.encode_ordinary(text, gpt2.enc._mergeable_ranks) == gpt2.encode(text)


def test_gpt2_ranks_from_environment_variable(monkeypatch):
    monkeypatch.setenv(GPT2_RANKS_ENV, str(shared("gpt2", "gpt2.tiktoken")))
    tok = GPT2Tokenizer()
    assert tok.encode("Hello world") == [15496, 995]
    assert tokenizer_from_dict(tok.to_dict()).encode("Hello world") == [15496, 995]


def test_gpt2_without_ranks_says_how_to_get_them(monkeypatch, tmp_path):
    monkeypatch.delenv(GPT2_RANKS_ENV, raising=False)
    monkeypatch.setattr(tiktoken, "get_encoding", lambda name: (_ for _ in ()).throw(OSError("offline")))
    monkeypatch.setattr(minilm.gpt2_ranks, "REPO_GPT2_RANKS", tmp_path / "absent" / "gpt2.tiktoken")
    with pytest.raises(FileNotFoundError, match=rf"{GPT2_RANKS_ENV}.*openaipublic"):
        GPT2Tokenizer()
    with pytest.raises(FileNotFoundError, match="--gpt2-ranks"):
        GPT2Tokenizer(tmp_path / "missing.tiktoken")
