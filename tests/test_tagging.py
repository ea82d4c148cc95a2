"""Token classification: the readers (CoNLL-U ranges, empty nodes, comments; two-column BIO), subword alignment
(each word labelled once, on its first piece; predictions read back per word), padding invariance of the
TokenClassifier, word and entity metrics against scikit-learn and seqeval (broken BIO included), the baseline,
data/ud_ewt/prepare.py, and finetune.py --task token end to end: trains, resumes exactly, predicts, and refuses
bad input with one line."""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minilm.checkpoint import load_checkpoint, load_classifier
from minilm.classifier import TokenClassifier
from minilm.config import IGNORE_INDEX, ModelConfig
from minilm.metrics import entity_scores, entity_spans, tag_report, token_accuracy
from minilm.model import CausalLM, MaskedLM
from minilm.plots import plot_tag_confusion
from minilm.tagging import (MostFrequentTag, TokenBatches, align_labels, encode_words, is_bio, label_positions,
                            predict_words, read_conllu, read_tagged, read_two_column, word_predictions)
from minilm.tokenizer import BPETokenizer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import finetune  # noqa: E402
import train  # noqa: E402

CONLLU = """# newdoc id = weblog-1
# sent_id = s1
# text = I don't like ducks.
1\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t_\t_
2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
2\tdo\tdo\tAUX\tVBP\t_\t4\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_
4\tlike\tlike\tVERB\tVB\t_\t0\troot\t_\t_
5\tducks\tduck\tNOUN\tNNS\t_\t4\tobj\t_\tSpaceAfter=No
6\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_

# sent_id = s2
1\tGo\tgo\tVERB\tVB\t_\t0\troot\t_\t_
1.1\tgo\tgo\tVERB\tVB\t_\t_\t_\t0:root\tCopyOf=1
2\thome\thome\tADV\tRB\t_\t1\tadvmod\t_\t_
"""


# ------------------------------------------------------------------------------------------------------ readers
def test_conllu_reader_skips_comments_multiword_ranges_and_empty_nodes(tmp_path):
    path = tmp_path / "a.conllu"
    path.write_text(CONLLU, encoding="utf-8")
    assert read_conllu(path) == [(["I", "do", "n't", "like", "ducks", "."], ["PRON", "AUX", "PART", "VERB", "NOUN",
                                                                            "PUNCT"]),
                                 (["Go", "home"], ["VERB", "ADV"])]
    words, ids, names = read_tagged(path)
    assert names == sorted(names) and len(names) == 7 and [names[i] for i in ids[1]] == ["VERB", "ADV"]


def test_conllu_reader_names_the_line_of_a_broken_row(tmp_path):
    path = tmp_path / "bad.conllu"
    path.write_text("# c\n1\tI\tPRON\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 2: expected 10 tab-separated"):
        read_conllu(path)


def test_two_column_reader_tabs_spaces_docstart_and_conll2003_columns(tmp_path):
    path = tmp_path / "ner.txt"
    path.write_text("-DOCSTART- -X- -X- O\n\nJohn\tB-PER\nSmith   I-PER\nsleeps O\n\n\n"
                    "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n", encoding="utf-8")
    assert read_two_column(path) == [(["John", "Smith", "sleeps"], ["B-PER", "I-PER", "O"]),
                                     (["EU", "rejects"], ["B-ORG", "O"])]


def test_read_tagged_refuses_unknown_tags_empty_and_missing_files(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("a X\nb Y\n\nc Z\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"sentence 2, word 'c': tag 'Z' is not in the label set \['X', 'Y'\]"):
        read_tagged(path, ["X", "Y"])
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match="has no sentences"):
        read_tagged(tmp_path / "empty.txt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_tagged(tmp_path / "nope.conllu")


def test_is_bio():
    assert is_bio(["O", "B-PER", "I-PER"]) and is_bio(["B-LOC", "I-LOC"])
    assert not is_bio(["NOUN", "VERB"]) and not is_bio(["O"]) and not is_bio(["O", "B-"]) and not is_bio(["B-X", "X"])


# ------------------------------------------------------------------------------------------------------ alignment
def test_align_labels_worked_example():
    assert align_labels([[5], [7, 8, 9], [4]], [0, 1, 2]) == ([5, 7, 8, 9, 4], [0, 1, -100, -100, 2])
    assert align_labels([[5], [7, 8, 9], [4]], [0, 1, 2], "last") == ([5, 7, 8, 9, 4], [0, -100, -100, 1, 2])
    assert label_positions([[1, 2], [3]], "first") == [0, 2] and label_positions([[1, 2], [3]], "last") == [1, 2]


@pytest.mark.parametrize("piece", ["first", "last"])
def test_each_word_is_labelled_exactly_once_on_its_piece(piece):
    rng = random.Random(0)
    for _ in range(200):
        pieces = [[rng.randrange(100) for _ in range(rng.randint(1, 4))] for _ in range(rng.randint(1, 9))]
        labels = [rng.randrange(5) for _ in pieces]
        ids, token_labels = align_labels(pieces, labels, piece)
        assert ids == [i for p in pieces for i in p]
        starts = np.cumsum([0] + [len(p) for p in pieces])[:-1]
        where = starts if piece == "first" else starts + np.array([len(p) for p in pieces]) - 1
        assert [i for i, y in enumerate(token_labels) if y != IGNORE_INDEX] == where.tolist()
        assert [token_labels[i] for i in where] == labels


@pytest.fixture(scope="module")
def tokenizer() -> BPETokenizer:
    text = "the quick brown fox jumps over the lazy dog . unbelievable tokenization of words " * 20
    return BPETokenizer.train(text, 300, ("pad", "mask", "cls", "sep"))


def test_words_are_encoded_as_the_sentence_is(tokenizer):
    words = ["The", "unbelievable", "fox", ",", "jumps", "!"]
    pieces = encode_words(words, tokenizer)
    assert [i for p in pieces for i in p] == tokenizer.encode(" ".join(words))
    assert any(len(p) > 1 for p in pieces)  # the test needs a word split into several pieces


def test_batches_label_first_pieces_and_predictions_round_trip(tokenizer):
    words = [["the", "unbelievable", "fox"], ["tokenization", "of", "words", "jumps"], ["dog"]]
    tags = [[0, 1, 2], [2, 0, 1, 1], [2]]
    batches = TokenBatches(words, tags, tokenizer, batch_size=2, max_len=32, shuffle=False)
    for r, sentence in enumerate(words):
        row = batches.flat[batches.offsets[r]:batches.offsets[r + 1]]
        labels = batches.flat_labels[batches.offsets[r]:batches.offsets[r + 1]]
        assert row[0] == tokenizer.cls_id and row[-1] == tokenizer.sep_id
        assert labels[batches.positions[r]].tolist() == tags[r]  # the word's tag on its first piece
        assert (labels != IGNORE_INDEX).sum() == len(sentence)  # and nowhere else
        for i, (pos, word) in enumerate(zip(batches.positions[r], sentence)):
            first = tokenizer.decode([int(row[pos])])
            assert (word if i == 0 else " " + word).startswith(first)
    # word-level read-back: log-probs peaked on the true tags give back exactly the tags
    log_probs = [np.log(np.eye(3)[t] * 0.98 + 0.01) for t in tags]
    assert word_predictions(log_probs, batches.n_words, fill=0) == tags
    idx, mask, y = next(iter(batches))
    assert idx.shape == mask.shape == y.shape and (y[mask == 0] == IGNORE_INDEX).all()


def test_truncation_keeps_the_words_that_fit_and_fills_the_rest(tokenizer):
    words = [["the"] + ["unbelievable"] * 19]
    starts = label_positions(encode_words(words[0], tokenizer))
    kept = sum(p < 6 for p in starts)  # 6 = 8 - [cls] - [sep]
    assert 1 < kept < 20
    batches = TokenBatches(words, [[1] * 20], tokenizer, batch_size=1, max_len=8, shuffle=False)
    assert batches.truncated == [0] and batches.positions[0].tolist() == [p + 1 for p in starts[:kept]]
    assert batches.lengths[0] == 8
    assert word_predictions([np.zeros((kept, 3))], batches.n_words, fill=2) == [[0] * kept + [2] * (20 - kept)]


@pytest.mark.parametrize("lm_class", [MaskedLM, CausalLM])
def test_token_predictions_do_not_depend_on_padding(tokenizer, lm_class):
    config = ModelConfig(vocab_size=tokenizer.vocab_size, max_seq_len=32, d_model=32, n_heads=4, n_layers=2)
    model = TokenClassifier.from_lm(lm_class(config), 3).eval()
    short, long = ["the", "fox"], ["the", "unbelievable", "tokenization", "of", "words", "jumps", "over", "dog"]
    alone = TokenBatches([short], None, tokenizer, batch_size=1, max_len=32, shuffle=False)
    padded = TokenBatches([short, long], None, tokenizer, batch_size=2, max_len=32, shuffle=False)
    a = predict_words(model, alone, torch.no_grad())[0]
    b = predict_words(model, padded, torch.no_grad())[0]
    assert padded.lengths[1] > padded.lengths[0]  # the short row really is padded
    torch.testing.assert_close(torch.from_numpy(a), torch.from_numpy(b), atol=1e-5, rtol=1e-5)


def test_token_loss_averages_over_labelled_pieces_only(tiny_config):
    model = TokenClassifier.from_lm(MaskedLM(tiny_config), 4, dropout=0.0)
    idx = torch.randint(0, tiny_config.vocab_size, (2, 6))
    labels = torch.full((2, 6), IGNORE_INDEX)
    labels[0, 1], labels[0, 3], labels[1, 2] = 1, 3, 0
    logits, loss = model(idx, labels=labels)
    assert logits.shape == (2, 6, 4)
    keep = labels != IGNORE_INDEX
    torch.testing.assert_close(loss, F.cross_entropy(logits[keep], labels[keep]))


def test_token_classifier_refuses_bad_arguments(tiny_config):
    with pytest.raises(TypeError, match="from_lm"):
        TokenClassifier(MaskedLM(tiny_config), 3)
    with pytest.raises(ValueError, match="n_classes must be >= 2"):
        TokenClassifier.from_lm(MaskedLM(tiny_config), 1)


# ------------------------------------------------------------------------------------------------------ metrics
def _random_tag_sequences(rng: np.random.Generator, n: int, k: int):
    true = [rng.integers(0, k, rng.integers(1, 12)).tolist() for _ in range(n)]
    pred = [[t if rng.random() < 0.7 else int(rng.integers(0, k)) for t in s] for s in true]
    return true, pred


def test_word_metrics_equal_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    true, pred = _random_tag_sequences(np.random.default_rng(0), 300, 6)
    flat_t, flat_p = sum(true, []), sum(pred, [])
    assert token_accuracy(true, pred) == pytest.approx(sk.accuracy_score(flat_t, flat_p), abs=1e-12)
    names = list("abcdef")
    ours = tag_report(true, pred, names)
    p, r, f, s = sk.precision_recall_fscore_support(flat_t, flat_p, labels=range(6), zero_division=0)
    for k, name in enumerate(names):
        assert [ours[name][h] for h in ("precision", "recall", "f1-score", "support")] == pytest.approx(
            [p[k], r[k], f[k], s[k]], abs=1e-12)
    with pytest.raises(ValueError, match="sentence 0: 2 true tags but 1 predicted"):
        token_accuracy([[0, 1]], [[0]])


BIO = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]


def _random_bio(rng: random.Random, n: int):
    """Sentences of random tags, so broken BIO (I- after O, I-X after B-Y, I- first) is common."""
    true = [[rng.choice(BIO) for _ in range(rng.randint(1, 10))] for _ in range(n)]
    pred = [[t if rng.random() < 0.6 else rng.choice(BIO) for t in s] for s in true]
    return true, pred


def test_entity_spans_equal_seqeval_default_mode_including_broken_bio():
    seqeval = pytest.importorskip("seqeval.metrics.sequence_labeling", reason="seqeval is the oracle")
    rng = random.Random(0)
    broken = 0
    for _ in range(2000):
        tags = [rng.choice(BIO) for _ in range(rng.randint(0, 9))]
        broken += any(t.startswith("I-") and (i == 0 or tags[i - 1][2:] != t[2:]) for i, t in enumerate(tags))
        ours = sorted((typ, start, end - 1) for typ, start, end in entity_spans(tags))  # seqeval: end inclusive
        assert ours == sorted(seqeval.get_entities(tags)), tags
    assert broken > 500
    assert entity_spans(["I-PER", "I-PER", "B-PER", "I-LOC"]) == [("PER", 0, 2), ("PER", 2, 3), ("LOC", 3, 4)]
    with pytest.raises(ValueError, match="not BIO"):
        entity_spans(["O", "NOUN"])


def test_entity_scores_equal_seqeval():
    metrics = pytest.importorskip("seqeval.metrics", reason="seqeval is the oracle")
    true, pred = _random_bio(random.Random(1), 400)
    ours = entity_scores(true, pred)
    oracle = metrics.classification_report(true, pred, output_dict=True, zero_division=0)
    for key in ("PER", "LOC", "ORG", "micro avg"):
        for h in ("precision", "recall", "f1-score", "support"):
            assert ours[key][h] == pytest.approx(oracle[key][h], abs=1e-12), (key, h)
    assert ours["micro avg"]["f1-score"] == pytest.approx(metrics.f1_score(true, pred), abs=1e-12)
    # no predicted spans at all: precision 0/0 -> 0, as seqeval's zero_division=0
    assert entity_scores([["B-PER"]], [["O"]])["micro avg"] == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0,
                                                                "support": 1}


def test_most_frequent_tag_baseline_by_hand():
    base = MostFrequentTag([["duck", "duck", "the"], ["duck", "a"]], [[1, 2, 0], [2, 0]])
    assert base.overall == 0  # tag 0 three times, 2 twice, 1 once
    assert base.predict([["duck", "the", "zebra"]]) == [[2, 0, 0]]  # zebra: unseen -> the overall tag
    tie = MostFrequentTag([["x", "x"]], [[3, 1]])
    assert tie.predict([["x"]]) == [[1]]  # ties go to the smaller id


def test_tag_confusion_plot_writes_a_png(tmp_path):
    cm = np.array([[5, 1, 0], [0, 3, 2], [1, 0, 7]])
    fig = plot_tag_confusion(cm, ["ADJ", "NOUN", "VERB"], tmp_path / "cm.png")
    assert (tmp_path / "cm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and len(fig.axes) == 2
    with pytest.raises(ValueError, match="does not match 2 tag names"):
        plot_tag_confusion(cm, ["A", "B"])


# ------------------------------------------------------------------------------------------------------ scripts
def _load_script(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LEXICON = {"DET": ["the", "a", "every"], "ADJ": ["small", "green", "unbelievable"], "NOUN": ["duck", "dog", "river"],
           "VERB": ["sees", "likes", "duck"], "ADP": ["near", "under"], "PUNCT": ["."]}
PATTERN = ["DET", "ADJ", "NOUN", "VERB", "DET", "NOUN", "ADP", "DET", "NOUN", "PUNCT"]


def _conllu(rng: random.Random, n: int, long_first: bool = False) -> str:
    blocks = []
    for s in range(n):
        tags = PATTERN[: rng.randint(4, len(PATTERN))] * (6 if long_first and s == 0 else 1)
        rows = [f"# sent_id = {s}"]
        for i, tag in enumerate(tags, 1):
            rows.append(f"{i}\t{rng.choice(LEXICON[tag])}\t_\t{tag}\t_\t_\t0\tdep\t_\t_")
        blocks.append("\n".join(rows))
    return "\n\n".join(blocks) + "\n\n"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A tiny UD-shaped treebank prepared by data/ud_ewt/prepare.py, and tiny masked / causal LMs pretrained on its
    text for a few steps."""
    root = tmp_path_factory.mktemp("tagging")
    source = root / "source"
    source.mkdir()
    rng = random.Random(0)
    for name, n in (("train", 160), ("dev", 24), ("test", 24)):
        (source / f"en_ewt-ud-{name}.conllu").write_text(_conllu(rng, n), encoding="utf-8")
    prepare = _load_script(ROOT / "data" / "ud_ewt" / "prepare.py", "ud_ewt_prepare")
    assert prepare.main(["--source", str(source), "--out-dir", str(root / "ud"), "--vocab-size", "300"]) == 0
    for objective in ("mlm", "clm"):
        assert train.main(["--preset", "tiny", "--objective", objective, "--data", str(root / "ud"),
                           "--out-dir", str(root / objective), "--max-iters", "4", "--warmup-iters", "1",
                           "--eval-interval", "4", "--eval-iters", "1", "--samples", "0", "--dtype", "float32",
                           "--compile", "off"]) == 0
    return root


FAST = ["--task", "token", "--dtype", "float32", "--compile", "off", "--batch-size", "8", "--log-interval", "1"]


def _run(workdir: Path, out: Path, *extra: str) -> int:
    return finetune.main(["--data", str(workdir / "ud"), "--out-dir", str(out), *FAST, *extra])


def test_prepare_writes_tagged_files_and_the_untagged_text(workdir):
    meta = json.loads((workdir / "ud" / "meta.json").read_text())
    assert meta["task"] == "token" and len(meta["labels"]) == 17 and meta["sentences"]["train"] == 160
    words, _, _ = read_tagged(workdir / "ud" / meta["files"]["train"], meta["labels"])
    from minilm.data import load_split
    from minilm.tokenizer import tokenizer_from_dict
    tok = tokenizer_from_dict(meta["tokenizer"])
    ids = load_split(workdir / "ud", "train")
    first = np.asarray(ids[: np.flatnonzero(np.asarray(ids) == tok.sep_id)[0]]).tolist()
    assert tok.decode(first) == " ".join(words[0])  # the sentence's words, no tags


def test_prepare_refuses_a_source_without_the_files(tmp_path, capsys):
    prepare = _load_script(ROOT / "data" / "ud_ewt" / "prepare.py", "ud_ewt_prepare")
    assert prepare.main(["--source", str(tmp_path), "--out-dir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "lacks" in err and not (tmp_path / "out" / "meta.json").exists()


def test_prepare_on_the_real_treebank_downloads_checks_and_counts(shared_data, tmp_path, monkeypatch, capsys):
    source = shared_data / "ud_ewt"
    if not source.is_dir():
        pytest.skip(f"{source} not found")
    prepare = _load_script(ROOT / "data" / "ud_ewt" / "prepare.py", "ud_ewt_prepare")
    monkeypatch.setattr(prepare, "URL", source.as_uri() + "/{name}")  # the download path, sha256 checked
    assert prepare.main(["--out-dir", str(tmp_path / "ud"), "--vocab-size", "300"]) == 0
    assert "note:" not in capsys.readouterr().out
    meta = json.loads((tmp_path / "ud" / "meta.json").read_text())
    assert meta["sentences"] == {"train": 12_544, "dev": 2_001, "test": 2_077}  # SOURCE.md's counts
    words = {s: read_tagged(tmp_path / "ud" / f, meta["labels"])[0] for s, f in meta["files"].items()}
    assert [sum(map(len, w)) for w in words.values()] == [204_577, 25_147, 25_094]  # words without the N-M ranges
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in meta["files"].values():
        (bad / name).write_bytes((source / name).read_bytes())
    (bad / "en_ewt-ud-dev.conllu").write_bytes((source / "en_ewt-ud-dev.conllu").read_bytes()[:-100])
    monkeypatch.setattr(prepare, "URL", bad.as_uri() + "/{name}")
    assert prepare.main(["--out-dir", str(tmp_path / "other"), "--vocab-size", "300"]) == 1
    err = capsys.readouterr().err
    assert "sha256 mismatch" in err and not (tmp_path / "other" / "meta.json").exists()


def test_end_to_end_pos_report_baseline_and_prediction(workdir, tmp_path, capsys):
    sk = pytest.importorskip("sklearn.metrics")
    out = tmp_path / "pos"
    assert _run(workdir, out, "--init", str(workdir / "mlm"), "--epochs", "3", "--lr", "3e-3") == 0
    printed = capsys.readouterr().out
    assert "most-frequent-tag baseline" in printed and "test per-tag report" in printed
    for name in ("best.pt", "ckpt.pt", "metrics.jsonl", "report.json", "confusion_matrix.png", "dev_predictions.tsv",
                 "test_predictions.tsv"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    rows = [line.split("\t") for line in (out / "test_predictions.tsv").read_text().splitlines() if line]
    assert len(rows) == sum(len(w) for w in read_tagged(workdir / "ud" / "en_ewt-ud-test.conllu")[0])
    y_true, y_pred = [r[2] for r in rows], [r[1] for r in rows]
    assert report["test"]["accuracy"] == pytest.approx(sk.accuracy_score(y_true, y_pred), abs=1e-12)
    assert report["test_baseline"]["accuracy"] > 0.5  # this toy language is mostly unambiguous
    capsys.readouterr()
    assert finetune.main(["--ckpt", str(out), "--predict", "the green duck sees a river .", "--dtype", "float32"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == "the green duck sees a river .".split()
    assert all(line.split("\t")[1] in report["test"]["tags"] for line in lines)
    model, _, meta = load_classifier(out)
    assert isinstance(model, TokenClassifier) and meta["task"] == "token" and meta["piece"] == "first"


def test_causal_backbone_tags_on_the_last_piece(workdir, tmp_path):
    out = tmp_path / "clm"
    assert _run(workdir, out, "--init", str(workdir / "clm"), "--max-steps", "2") == 0
    assert load_classifier(out)[2]["piece"] == "last"


def test_resume_continues_exactly(workdir, tmp_path):
    args = ["--init", str(workdir / "mlm"), "--max-steps", "30", "--eval-interval", "7", "--epochs", "2"]
    assert _run(workdir, tmp_path / "full", *args) == 0  # 20 batches per epoch: the run crosses an epoch
    assert _run(workdir, tmp_path / "split", *args, "--stop-after", "7") == 0
    assert _run(workdir, tmp_path / "split", *args, "--resume") == 0

    def losses(path):
        return [(r["step"], r["loss"]) for r in map(json.loads, (path / "metrics.jsonl").read_text().splitlines())
                if "loss" in r]

    full = losses(tmp_path / "full")
    assert [s for s, _ in full] == list(range(1, 31)) and losses(tmp_path / "split") == full
    a = load_checkpoint(tmp_path / "full" / "ckpt.pt")[0]["model"]
    b = load_checkpoint(tmp_path / "split" / "ckpt.pt")[0]["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ner_two_column_files_score_entities(workdir, tmp_path, capsys):
    seqeval = pytest.importorskip("seqeval.metrics", reason="seqeval is the oracle")
    rng = random.Random(2)

    def sentences(n: int) -> str:
        out = []
        for _ in range(n):
            rows = [f"{rng.choice(['Ann', 'Bob'])}\tB-PER", f"{rng.choice(['Lee', 'Ray'])}\tI-PER", "visited\tO",
                    f"{rng.choice(['Paris', 'Oslo'])}\tB-LOC", ".\tO"]
            out.append("\n".join(rows))
        return "\n\n".join(out) + "\n"

    (tmp_path / "train.txt").write_text(sentences(40))
    (tmp_path / "dev.txt").write_text(sentences(10))
    out = tmp_path / "ner"
    assert finetune.main(["--init", str(workdir / "mlm"), "--train", str(tmp_path / "train.txt"), "--dev",
                          str(tmp_path / "dev.txt"), "--out-dir", str(out), "--metric", "entity_f1", "--max-steps",
                          "3", *FAST]) == 0
    assert "entity F1" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    blocks = (out / "dev_predictions.tsv").read_text().strip().split("\n\n")
    true = [[line.split("\t")[2] for line in b.splitlines()] for b in blocks]
    pred = [[line.split("\t")[1] for line in b.splitlines()] for b in blocks]
    assert report["dev"]["entities"]["micro avg"]["f1-score"] == pytest.approx(seqeval.f1_score(true, pred),
                                                                               abs=1e-12)


# ------------------------------------------------------------------------------------------------------ bad input
def _one_line_error(capsys, out: Path, *must: str) -> None:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("finetune.py: error:"), err
    for text in must:
        assert text in err, err
    assert not (out / "ckpt.pt").exists() and not (out / "best.pt").exists()  # nothing half-written


@pytest.mark.parametrize("train, dev, message", [
    ("a X\nb Y\n", "a X\nb Z\n", "tag 'Z' is not in the label set ['X', 'Y']"),  # a tag outside the label set
    ("", "a X\n", "has no sentences"),  # an empty file
])
def test_bad_tagged_files_are_one_line(workdir, tmp_path, capsys, train, dev, message):
    (tmp_path / "train.txt").write_text(train)
    (tmp_path / "dev.txt").write_text(dev)
    out = tmp_path / "run"
    assert finetune.main(["--init", str(workdir / "mlm"), "--train", str(tmp_path / "train.txt"), "--dev",
                          str(tmp_path / "dev.txt"), "--out-dir", str(out), *FAST]) == 1
    _one_line_error(capsys, out, message)


def test_a_sentence_past_the_context_is_cut_with_a_note_or_refused(workdir, tmp_path, capsys):
    long = tmp_path / "long"
    long.mkdir()
    (long / "train.conllu").write_text(_conllu(random.Random(3), 20, long_first=True))
    (long / "dev.conllu").write_text(_conllu(random.Random(4), 5))
    files = ["--init", str(workdir / "mlm"), "--train", str(long / "train.conllu"), "--dev", str(long / "dev.conllu"),
             "--labels", ",".join(sorted(LEXICON))]
    out = tmp_path / "refused"
    assert finetune.main([*files, "--out-dir", str(out), "--no-truncate", *FAST]) == 1
    _one_line_error(capsys, out, "1 of 20 train sentences are longer than max_len=32", "--no-truncate")
    assert finetune.main([*files, "--out-dir", str(tmp_path / "cut"), "--max-steps", "2", *FAST]) == 0
    assert "note: 1 of 20 train sentences are longer than 32 tokens and were cut" in capsys.readouterr().out


def test_sequence_only_flags_are_refused_for_tokens(workdir, tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(workdir, out, "--init", str(workdir / "mlm"), "--pooling", "mean") == 1
    _one_line_error(capsys, out, "--pooling is for --task sequence")
    assert _run(workdir, out, "--init", str(workdir / "mlm"), "--metric", "entity_f1") == 1
    _one_line_error(capsys, out, "--metric entity_f1 needs BIO tags")
    assert _run(workdir, out, "--init", str(workdir / "mlm"), "--train-limit", "10") == 1
    _one_line_error(capsys, out, "--train-limit draws a class-stratified sample of sentences: it is for --task sequence")
