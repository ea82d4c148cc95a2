"""Exercise of lectures/01_tokenizer.ipynb: WordPiece's greedy longest-match-first, checked against Hugging Face's
WordpieceTokenizer (the Python one, transformers' BertTokenizerLegacy) and hand-worked examples."""

import pytest

exercise = pytest.mark.exercise


@exercise("wordpiece.py::wordpiece_word")
def test_wordpiece_known_values(solution):
    vocab = {"un", "##aff", "##able", "##a", "##ff", "a", "play", "##ing", "p"}
    for word, expected in [
        ("unaffable", ["un", "##aff", "##able"]),  # '##aff' is longer than '##a': longest match first
        ("playing", ["play", "##ing"]),
        ("a", ["a"]),
        ("unaffablex", ["[UNK]"]),  # a gap: the whole word is unknown, not ['un', '##aff', '##able', '[UNK]']
        ("xplay", ["[UNK]"]),  # the first piece has no '##'; 'xplay' has no prefix in vocab
        ("aff", ["a", "##ff"]),  # 'aff' is not a word start, so 'a' + '##ff'
    ]:
        got = solution(word, vocab)
        assert got == expected, f"wordpiece_word({word!r}, {sorted(vocab)}): expected {expected}, got {got}"
    got = solution("a" * 6, {"a", "##a"}, max_chars=5)
    assert got == ["[UNK]"], f"a word longer than max_chars=5 is one unk_token, got {got}"
    got = solution("zz", {"a"}, unk_token="<unk>")
    assert got == ["<unk>"], f"an uncoverable word gives unk_token ('<unk>' here), got {got}"


@exercise("wordpiece.py::wordpiece_word")
def test_wordpiece_matches_hugging_face(solution):
    transformers = pytest.importorskip("transformers")
    from transformers.models.bert.tokenization_bert_legacy import WordpieceTokenizer

    vocab = {t: i for i, t in enumerate(["[UNK]", "the", "cat", "un", "##aff", "##able", "##a", "##b", "##ab", "a",
                                         "b", "ab", "##s", "##ly", "run", "##n", "##ing", "12", "##3", "1", "##0"])}
    hf = WordpieceTokenizer(vocab=vocab, unk_token="[UNK]")
    for word in ["the", "cats", "unaffable", "abab", "ba", "running", "runly", "123", "1000", "c", "bbbb", "unab",
                 "a" * 101, "theab"]:
        want = hf.tokenize(word)
        got = solution(word, vocab)
        assert got == want, f"wordpiece_word({word!r}): transformers gives {want}, got {got}"
