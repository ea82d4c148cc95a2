"""WordPiece (minilm/wordpiece.py): the same ids as Hugging Face's BertTokenizer (Rust) and BertTokenizerLegacy
(Python) on a vocab.txt written here; decode round trips; special tokens; bad vocabularies as clear errors."""

from __future__ import annotations

import json

import pytest

from minilm.tokenizer import tokenizer_from_dict
from minilm.wordpiece import WordPieceTokenizer, basic_tokenize, wordpiece_word

transformers = pytest.importorskip("transformers")

SPECIALS = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["the", "cat", "sat", "on", "mat", "hello", "world", "un", "##aff", "##able", "##a", "play", "##ing", "##ed",
         "run", "##s", "cafe", "caf", "##e", "naive", "resume", "re", "##sum", "世", "界", "12", "##3", "1", "##0",
         ",", ".", "!", "?", "'", "-", "$", ":", "(", ")", '"', "a", "i", "is", "it", "good", "bad", "film", "movie",
         "##ly", "not", "very", "and", "tab", "space", "price", "é", "##é", "ï"]
LETTERS = [c for c in "abcdefghijklmnopqrstuvw"] + ["##" + c for c in "abcdefghijklmnopqrstuvw"]
UNCASED = SPECIALS + WORDS + [t for t in LETTERS if t not in WORDS]
CASED = UNCASED + ["The", "Hello", "World", "Café", "Paris", "##S"]

TEXTS = [
    "Hello, world! The cat sat on the mat.",  # punctuation, capitals
    "Unaffable playing played runs",  # ## continuations, longest match first
    "Café naïve résumé",  # accents (stripped when uncased)
    "世界 hello世界",  # CJK ideographs split off, with or without spaces
    "Price: $12.30 -- 123 1,000",  # numbers and ASCII symbols
    "zzqx unknownword xyzzy",  # words the vocabulary cannot cover -> [UNK]
    "[CLS] hello [SEP] [MASK] world [PAD]",  # special tokens in the text
    "\tTabs\nand  \u00a0 spaces\u200b!",  # odd whitespace and a zero-width (format) character
    "HELLO World",
    "it's not (very) good",
    "a" * 120,  # longer than 100 characters: one [UNK]
    "",
]


@pytest.fixture(scope="module")
def vocab_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("wordpiece")
    files = {}
    for name, vocab in (("uncased", UNCASED), ("cased", CASED)):
        files[name] = root / f"{name}.txt"
        files[name].write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return files


def _hf(vocab_file, lower: bool, accents=None):
    fast = transformers.BertTokenizer(vocab=str(vocab_file), do_lower_case=lower, strip_accents=accents)
    slow = transformers.BertTokenizerLegacy(vocab_file=str(vocab_file), do_lower_case=lower, strip_accents=accents)
    return fast, slow


@pytest.mark.parametrize("casing", [("uncased", True, None), ("cased", False, None), ("cased", False, True),
                                    ("uncased", True, False)])
def test_ids_match_hugging_face(vocab_files, casing):
    name, lower, accents = casing
    fast, slow = _hf(vocab_files[name], lower, accents)
    ours = WordPieceTokenizer.from_file(vocab_files[name], lower_case=lower, accents=accents)
    for text in TEXTS:
        want = fast.encode(text, add_special_tokens=False)
        assert slow.encode(text, add_special_tokens=False) == want, text  # the two references agree
        got = ours.encode(text, allowed_special="all")  # BERT reads "[CLS]" in the text as the special token
        assert got == want, (text, ours.tokenize(text), fast.tokenize(text))


def test_special_strings_are_plain_text_unless_allowed(vocab_files):
    ours = WordPieceTokenizer.from_file(vocab_files["uncased"])
    assert ours.encode("[MASK]", allowed_special="all") == [ours.mask_id]
    assert ours.encode("[MASK]") == [ours.unk_id] + [ours.token_to_id[t] for t in ("m", "##a", "##s", "##k")] + [
        ours.unk_id]  # '[' and ']' are not in this vocabulary


def test_special_roles_sit_where_the_vocabulary_puts_them(vocab_files):
    ours = WordPieceTokenizer.from_file(vocab_files["uncased"])
    assert (ours.pad_id, ours.unk_id, ours.cls_id, ours.sep_id, ours.mask_id) == (0, 2, 3, 4, 5)
    assert ours.bos_id == ours.cls_id and ours.eos_id == ours.sep_id
    assert ours.vocab_size == len(UNCASED)
    same = ours.with_special_tokens(["pad", "mask", "cls", "sep"])  # what train.py / finetune.py ask for: no change
    assert same.special_tokens == ours.special_tokens and same.vocab_size == ours.vocab_size
    with pytest.raises(ValueError, match="unknown special token"):
        ours.with_special_tokens(["<extra>"])  # BERT's five are all there is
    back = tokenizer_from_dict(json.loads(json.dumps(ours.to_dict())))  # a checkpoint's JSON metadata
    assert isinstance(back, WordPieceTokenizer) and back.encode(TEXTS[0]) == ours.encode(TEXTS[0])


def test_decode_matches_bert_and_round_trips(vocab_files):
    fast, slow = _hf(vocab_files["uncased"], True)
    ours = WordPieceTokenizer.from_file(vocab_files["uncased"])
    for text in TEXTS:
        ids = ours.encode(text, allowed_special="all")
        assert ours.decode(ids) == slow.decode(ids), text
        if fast.encode(slow.decode(ids), add_special_tokens=False) == ids:  # where BERT's decode round-trips, ours does
            assert ours.encode(ours.decode(ids), allowed_special="all") == ids, text
    assert ours.decode(ours.encode("Hello, world!")) == "hello, world!"


def test_wordpiece_word_is_greedy_longest_match_first():
    vocab = {"un", "##aff", "##able", "##a", "##ff", "a"}
    assert wordpiece_word("unaffable", vocab) == ["un", "##aff", "##able"]  # '##aff' beats '##a' + '##ff'
    assert wordpiece_word("unaffablex", vocab) == ["[UNK]"]  # a gap makes the whole word unknown
    assert wordpiece_word("a" * 101, vocab) == ["[UNK]"]
    assert basic_tokenize("Héllo, 世界!") == ["hello", ",", "世", "界", "!"]
    assert basic_tokenize("Héllo", lower_case=False) == ["Héllo"]


def test_bad_vocabularies_are_clear_errors(vocab_files, tmp_path):
    with pytest.raises(ValueError, match=r"no \[MASK\]"):
        WordPieceTokenizer([t for t in UNCASED if t != "[MASK]"])
    with pytest.raises(ValueError, match="twice"):
        WordPieceTokenizer(UNCASED + ["cat"])
    with pytest.raises(ValueError, match="cased checkpoint"):  # a cased vocab.txt read as uncased
        WordPieceTokenizer.from_file(vocab_files["cased"], lower_case=True)
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        WordPieceTokenizer.from_pretrained(tmp_path)
    (tmp_path / "vocab.txt").write_text("\n".join(CASED) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="do_lower_case false"):  # no tokenizer_config.json: BERT's default, uncased
        WordPieceTokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    assert WordPieceTokenizer.from_pretrained(tmp_path).encode("The") == [CASED.index("The")]
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": len(CASED) + 1}))
    with pytest.raises(ValueError, match="vocab_size"):
        WordPieceTokenizer.from_pretrained(tmp_path)
