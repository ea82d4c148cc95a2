"""data/<name>/prepare.py on the shared copies (../shared/data): expected counts, idempotence, clear one-line
errors for a missing source, an unreachable URL and a checksum mismatch. No network: downloads use file:// URLs."""

from __future__ import annotations

import importlib.util
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from minilm.data import get_document_batch, load_documents, load_meta, load_split
from minilm.labelled import read_labelled
from minilm.tokenizer import tokenizer_from_dict

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data beside the checkout


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found: the shared datasets live in ../shared/data beside the checkout")
    return path


def script(name: str):
    spec = importlib.util.spec_from_file_location(f"prepare_{name}", ROOT / "data" / name / "prepare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shakespeare_char_counts_and_idempotence(tmp_path, capsys):
    source = shared("tinyshakespeare", "input.txt")
    prep = script("shakespeare_char")
    assert prep.main(["--source", str(source), "--out-dir", str(tmp_path)]) == 0
    assert "1,003,854 tokens" in capsys.readouterr().out
    meta = load_meta(tmp_path)
    assert meta["counts"] == {"train": 1_003_854, "val": 111_540} and meta["vocab_size"] == 65
    train = load_split(tmp_path, "train")
    tok = tokenizer_from_dict(meta["tokenizer"])
    assert tok.decode(train[:14].tolist()) == "First Citizen:"
    before = (tmp_path / "train.bin").read_bytes()
    assert prep.main(["--source", str(source), "--out-dir", str(tmp_path)]) == 0
    assert (tmp_path / "train.bin").read_bytes() == before
    assert not list(tmp_path.glob("*.tmp"))


def test_shakespeare_char_download_path_uses_the_url_and_checks_sha256(tmp_path, monkeypatch, capsys):
    prep = script("shakespeare_char")
    monkeypatch.setattr(prep, "URL", shared("tinyshakespeare", "input.txt").as_uri())
    assert prep.main(["--out-dir", str(tmp_path)]) == 0
    assert (tmp_path / "raw" / "input.txt").is_file() and load_meta(tmp_path)["counts"]["val"] == 111_540
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not shakespeare\n")
    monkeypatch.setattr(prep, "URL", wrong.as_uri())
    assert prep.main(["--out-dir", str(tmp_path / "other")]) == 1
    err = capsys.readouterr().err.strip()
    assert "sha256 mismatch" in err and "--source" in err and len(err.splitlines()) == 1


def test_unreachable_url_and_missing_source_are_one_line_errors(tmp_path, monkeypatch, capsys):
    prep = script("shakespeare_char")
    monkeypatch.setattr(prep, "URL", (tmp_path / "nowhere.txt").as_uri())
    assert prep.main(["--out-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: could not download") and "--source" in err and len(err.splitlines()) == 1
    assert prep.main(["--source", str(tmp_path / "missing.txt"), "--out-dir", str(tmp_path)]) == 1
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        prep.main(["--help"])
    assert e.value.code == 0


def test_shakespeare_gpt2_counts(tmp_path):
    source, ranks = shared("tinyshakespeare", "input.txt"), shared("gpt2", "gpt2.tiktoken")
    prep = script("shakespeare")
    assert prep.main(["--source", str(source), "--gpt2-ranks", str(ranks), "--out-dir", str(tmp_path)]) == 0
    meta = load_meta(tmp_path)
    assert meta["counts"] == {"train": 301_966, "val": 36_059}  # nanoGPT's numbers
    assert meta["tokenizer"]["kind"] == "gpt2" and meta["dtype"] == "uint16"
    tok = tokenizer_from_dict(meta["tokenizer"], ranks)
    assert tok.decode(load_split(tmp_path, "train")[:3].tolist()) == "First Citizen:"


def test_sst2_from_folder_and_zip(tmp_path):
    folder = shared("sst2")
    prep = script("sst2")
    out = tmp_path / "out"
    assert prep.main(["--source", str(folder), "--out-dir", str(out)]) == 0
    meta = load_meta(out)
    assert meta["counts"] == {"train": 67_349, "dev": 872, "test": 1_821} and meta["labels"] == ["0", "1"]
    texts, labels, names = read_labelled(out / "train.tsv", "sentence", "label", labels=meta["labels"])
    assert len(texts) == 67_349 and texts[0] == "hide new secretions from the parental units" and labels[0] == 0
    assert sum(labels) == 37_569  # positives, per SOURCE.md
    dev = read_labelled(out / "dev.tsv", "sentence", "label")
    assert len(dev[0]) == 872 and sum(dev[1]) == 444
    test_texts, none, _ = read_labelled(out / "test.tsv", "sentence", None)
    assert len(test_texts) == 1_821 and none is None
    zpath = tmp_path / "SST-2.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for name in ("train.tsv", "dev.tsv", "test.tsv"):
            z.write(folder / name, f"SST-2/{name}")
    assert prep.main(["--source", str(zpath), "--out-dir", str(tmp_path / "z")]) == 0
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        assert (tmp_path / "z" / name).read_bytes() == (out / name).read_bytes()


def test_imdb_from_text_file_cleans_and_writes_documents(tmp_path, capsys):
    lines = shared("imdb_unsup", "unsup_5k.txt").read_text(encoding="utf-8").split("\n")[:120]
    source = tmp_path / "reviews.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert any("<br />" in line for line in lines) and any("\x85" in line for line in lines)
    prep = script("imdb")
    out = tmp_path / "out"
    assert prep.main(["--source", str(source), "--out-dir", str(out), "--vocab-size", "400"]) == 0
    meta = load_meta(out)
    assert meta["documents"] == {"train": 108, "val": 12}  # split on "\n" only: 120 reviews, not more
    tok = tokenizer_from_dict(meta["tokenizer"])
    assert tok.vocab_size == 404 and None not in (tok.pad_id, tok.mask_id, tok.cls_id, tok.sep_id)
    data, docs = load_split(out, "train"), load_documents(out, "train")
    text0 = tok.decode(data[docs[0, 0] : docs[0, 1]].tolist())
    assert text0 == prep.clean(lines[0]) and text0.startswith("I admit, the great majority")
    assert data[docs[0, 1]] == tok.sep_id and docs[-1, 1] + 1 == len(data)
    all_text = tok.decode(data.tolist())
    assert "<br" not in all_text and "\x85" not in all_text and "\x96" not in all_text
    idx, am = get_document_batch(data, docs, [0, 1], 64, tok.pad_id, tok.cls_id, tok.sep_id)
    assert idx.shape == (2, 64) and am.all()


def test_imdb_from_tarball_in_id_order(tmp_path):
    tar_path = tmp_path / "aclImdb_v1.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for name, text in [("10_0", "review ten"), ("2_0", "two<br /><br />lines"), ("0_0", "zero\x96dash"),
                           ("1_0", "one\x85"), ("../pos/5_9", "a labelled review, not unsup")]:
            data = text.encode("utf-8")
            info = tarfile.TarInfo(f"aclImdb/train/unsup/{name}.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    prep = script("imdb")
    assert prep.main(["--source", str(tar_path), "--out-dir", str(tmp_path / "o"), "--vocab-size", "260",
                      "--val-fraction", "0.25"]) == 0
    tok = tokenizer_from_dict(load_meta(tmp_path / "o")["tokenizer"])
    docs = []
    for split in ("train", "val"):
        data, spans = load_split(tmp_path / "o", split), load_documents(tmp_path / "o", split)
        docs += [tok.decode(data[s:e].tolist()) for s, e in spans]
    assert docs == ["zero\u2013dash", "one\u2026", "two lines", "review ten"]


def test_code_points_at_nothing_outside_the_repository():
    """A user's clone has no ../shared: the code cites the canonical sources and --source PATH instead."""
    files = [*ROOT.glob("*.py"), *(ROOT / "minilm").rglob("*.py"), *(ROOT / "bench").glob("*.py"),
             *(ROOT / "data").glob("*/prepare.py")]
    outside = [str(p.relative_to(ROOT)) for p in files if "../shared" in p.read_text(encoding="utf-8")]
    assert not outside, outside
