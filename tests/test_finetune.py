"""finetune.py: end to end on a tiny pretrained model (report == scikit-learn's), padding invariance, frozen vs full
fine-tuning, every kind of --init, bad input as one clear line, exact resume, prediction, --train-limit samples and
the --select rules."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from minilm.checkpoint import load_checkpoint, load_classifier, save_checkpoint
from minilm.classifier import SequenceClassifier
from minilm.labelled import ClassificationBatches

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import finetune  # noqa: E402
import train  # noqa: E402

FAST = ["--dtype", "float32", "--compile", "off", "--batch-size", "8", "--max-len", "32", "--log-interval", "1"]


def _load_script(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A few SST-2 rows, 200 IMDB reviews with a small BPE, and tiny masked / causal LMs pretrained for a few steps."""
    shared = ROOT.parent / "shared" / "data"
    if not (shared / "sst2" / "train.tsv").is_file() or not (shared / "imdb_unsup" / "unsup_5k.txt").is_file():
        pytest.skip(f"shared datasets not found at {shared} (SST-2 and imdb_unsup; CI and the dev machines have them)")
    root = tmp_path_factory.mktemp("finetune")
    sst = root / "sst2"
    sst.mkdir()
    for name, n in (("train.tsv", 300), ("dev.tsv", 60), ("test.tsv", 20)):
        lines = (shared / "sst2" / name).read_text(encoding="utf-8").split("\n")
        (sst / name).write_text("\n".join(lines[: n + 1]) + "\n", encoding="utf-8")
    imdb = _load_script(ROOT / "data" / "imdb" / "prepare.py", "imdb_prepare")
    assert imdb.main(["--source", str(shared / "imdb_unsup" / "unsup_5k.txt"), "--out-dir", str(root / "imdb"),
                      "--max-docs", "200", "--vocab-size", "300"]) == 0
    for objective in ("mlm", "clm"):
        assert train.main(["--preset", "tiny", "--objective", objective, "--data", str(root / "imdb"),
                           "--out-dir", str(root / objective), "--max-iters", "4", "--warmup-iters", "1",
                           "--eval-interval", "4", "--eval-iters", "1", "--samples", "0", "--dtype", "float32",
                           "--compile", "off"]) == 0
    return root


def _run(workdir: Path, out: Path, *extra: str) -> int:
    data = ["--train", str(workdir / "sst2" / "train.tsv"), "--dev", str(workdir / "sst2" / "dev.tsv")]
    return finetune.main([*data, "--out-dir", str(out), *FAST, *extra])


def test_end_to_end_report_equals_sklearn(workdir, tmp_path):
    from sklearn.metrics import classification_report as sk_report

    out = tmp_path / "run"
    assert _run(workdir, out, "--init", str(workdir / "mlm"), "--test", str(workdir / "sst2" / "test.tsv"),
                "--label-names", "negative,positive", "--labels", "0,1", "--epochs", "2", "--lr", "1e-3",
                "--select", "metric") == 0  # the preset keeps the last; this run evaluates every epoch and picks
    for name in ("best.pt", "ckpt.pt", "metrics.jsonl", "report.json", "confusion_matrix.png", "predictions.tsv"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    rows = [line.split("\t") for line in (out / "dev_predictions.tsv").read_text().splitlines()[1:]]
    assert len(rows) == 60
    y_true, y_pred = [r[3] for r in rows], [r[1] for r in rows]
    oracle = sk_report(y_true, y_pred, labels=["negative", "positive"], output_dict=True, zero_division=0)
    assert report["dev"].keys() == oracle.keys()
    for key, value in oracle.items():
        if isinstance(value, dict):
            for metric, number in value.items():
                assert report["dev"][key][metric] == pytest.approx(number, abs=1e-12), (key, metric)
        else:
            assert report["dev"][key] == pytest.approx(value, abs=1e-12)
    # the dev file's true labels are the ones written beside the predictions
    dev_labels = [line.split("\t")[1] for line in (workdir / "sst2" / "dev.tsv").read_text().splitlines()[1:61]]
    assert y_true == [["negative", "positive"][int(x)] for x in dev_labels]
    test_rows = (out / "predictions.tsv").read_text().splitlines()
    assert test_rows[0] == "index\tprediction\tprobability" and len(test_rows) == 21  # unlabelled: no label column
    evals = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if "dev_accuracy" in x]
    assert len(evals) == 2  # one evaluation per epoch
    assert report["best_step"] in [e["step"] for e in evals]


@pytest.mark.parametrize("kind", ["mlm", "clm"])
def test_probabilities_do_not_depend_on_padding(workdir, kind):
    lm, tok, _ = finetune.load_backbone(str(workdir / kind))
    model = SequenceClassifier.from_lm(lm, 2).eval()
    view = finetune.input_view(tok, lm.config.causal)
    short = "a gorgeous , witty film"
    long = "the plot is a mess , the acting is wooden and the jokes land with a thud in every single scene"
    ctx = torch.autocast("cpu", enabled=False)
    alone = finetune.predict_proba(model, ClassificationBatches([short], None, view, 4, 32, shuffle=False), ctx)
    both = finetune.predict_proba(model, ClassificationBatches([short, long], None, view, 4, 32, shuffle=False), ctx)
    batch = next(iter(ClassificationBatches([short, long], None, view, 4, 32, shuffle=False)))
    assert batch[1][0].sum() < batch[1].shape[1]  # the short sentence really is padded in the pair
    np.testing.assert_allclose(alone[0], both[0], atol=1e-6, rtol=0)


def _backbone(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.startswith("backbone.")}


def test_freeze_backbone_keeps_weights_bit_identical(workdir, tmp_path):
    original = _backbone(load_checkpoint(workdir / "mlm" / "best.pt")[0]["model"])
    for freeze in (True, False):
        out = tmp_path / f"freeze-{freeze}"
        args = ["--init", str(workdir / "mlm"), "--max-steps", "4", "--lr", "1e-2"]
        assert _run(workdir, out, *args, *(["--freeze-backbone"] if freeze else [])) == 0
        tuned = _backbone(load_checkpoint(out / "ckpt.pt")[0]["model"])
        assert tuned.keys() == original.keys()
        same = [torch.equal(tuned[k], original[k]) for k in original]
        assert all(same) if freeze else not any(same)  # full fine-tuning moves every backbone tensor
        head = load_checkpoint(out / "ckpt.pt")[0]["model"]["head.weight"]
        assert head.abs().sum() > 0


def test_each_init_kind_loads(workdir, tmp_path, shared_data):
    for kind in ("mlm", "clm"):
        lm, tok, desc = finetune.load_backbone(str(workdir / kind))
        saved = load_checkpoint(workdir / kind / "best.pt")[0]["model"]
        assert all(torch.equal(lm.state_dict()[k], v) for k, v in saved.items())
        assert lm.config.causal == (kind == "clm") and tok.mask_id is not None
    scratch, tok, _ = finetune.load_backbone("scratch", like=str(workdir / "mlm"))
    trained, tok2, _ = finetune.load_backbone(str(workdir / "mlm"))
    assert scratch.config == trained.config and tok.to_dict() == tok2.to_dict()
    assert not torch.equal(scratch.backbone.tok_emb.weight, trained.backbone.tok_emb.weight)
    # a tiny Hugging Face GPT-2 saved to disk, and GPT-2's tokenizer from the shared ranks file
    transformers = pytest.importorskip("transformers")
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_embd=16, n_layer=1, n_head=2, n_positions=32))
    hf.save_pretrained(tmp_path / "gpt2")
    ranks = shared_data / "gpt2" / "gpt2.tiktoken"
    if not ranks.is_file():
        pytest.skip(f"{ranks} not found")
    lm, tok, _ = finetune.load_backbone(f"hf-gpt2:{tmp_path / 'gpt2'}", gpt2_ranks=str(ranks))
    assert torch.equal(lm.backbone.tok_emb.weight, hf.transformer.wte.weight)
    assert tok.kind == "gpt2" and tok.eos_id == 50256
    out = tmp_path / "hf-run"
    assert _run(workdir, out, "--init", f"hf-gpt2:{tmp_path / 'gpt2'}", "--gpt2-ranks", str(ranks),
                "--max-steps", "2") == 0
    meta = load_checkpoint(out / "best.pt")[1]
    assert meta["backbone_kind"] == "clm" and meta["pooling"] == "last" and meta["input_format"] == "text <eos>"
    out = tmp_path / "scratch-run"
    assert _run(workdir, out, "--init", "scratch", "--like", str(workdir / "clm"), "--max-steps", "2") == 0


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("finetune.py: error:"), err
    return err


def test_bad_init_is_one_clear_line(workdir, tmp_path, capsys):
    assert _run(workdir, tmp_path / "a", "--init", str(tmp_path / "nowhere")) == 1
    assert "no such directory" in _error_line(capsys)
    assert _run(workdir, tmp_path / "b", "--init", "scratch") == 1
    assert "--like" in _error_line(capsys)
    assert _run(workdir, tmp_path / "c", "--init", "hf-gpt2:" + str(tmp_path / "nowhere")) == 1
    assert "not a directory" in _error_line(capsys)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(2)}, foreign)
    assert _run(workdir, tmp_path / "d", "--init", str(foreign)) == 1
    assert "not a minilm checkpoint" in _error_line(capsys)
    clf = tmp_path / "clf.pt"
    save_checkpoint(clf, {"model": {}}, {"kind": "classifier"})
    assert _run(workdir, tmp_path / "e", "--init", str(clf)) == 1
    assert "--ckpt" in _error_line(capsys)
    assert finetune.main(["--ckpt", str(workdir / "mlm"), "--predict", "fine"]) == 1
    assert "not a classifier" in _error_line(capsys)


def test_bad_data_is_one_clear_line(workdir, tmp_path, capsys):
    init = ["--init", str(workdir / "mlm"), "--max-steps", "1"]
    assert _run(workdir, tmp_path / "a", *init, "--text-column", "review") == 1
    assert "no column 'review'" in _error_line(capsys)
    odd = tmp_path / "odd.tsv"
    odd.write_text("sentence\tlabel\ngood\t1\nbad\tmaybe\n")
    assert _run(workdir, tmp_path / "b", *init, "--dev", str(odd), "--labels", "0,1") == 1
    assert "'maybe' is not in the label set" in _error_line(capsys)
    assert _run(workdir, tmp_path / "c", *init, "--no-truncate", "--max-len", "8") == 1
    assert "longer than max_len=8" in _error_line(capsys)
    assert _run(workdir, tmp_path / "d", *init, "--max-len", "8") == 0  # truncating is the default, and said
    assert "were cut" in capsys.readouterr().out


def test_resume_continues_exactly(workdir, tmp_path):
    args = ["--init", str(workdir / "mlm"), "--max-steps", "8", "--eval-interval", "4", "--max-train-rows", "40",
            "--epochs", "2"]  # 5 batches per epoch: the stop at step 3 is mid-epoch, and the run crosses an epoch
    assert _run(workdir, tmp_path / "full", *args) == 0
    assert _run(workdir, tmp_path / "split", *args, "--stop-after", "3") == 0
    old = tmp_path / "old"  # the same checkpoint as written before loop_state: its fields at the top of meta
    shutil.copytree(tmp_path / "split", old)
    tensors, meta = load_checkpoint(old / "ckpt.pt")
    loop_state = meta.pop("loop_state")
    save_checkpoint(old / "ckpt.pt", tensors, {**meta, "best": loop_state["best"], "bad_evals": loop_state["bad_evals"]})
    assert _run(workdir, tmp_path / "split", *args, "--resume") == 0
    assert _run(workdir, old, *args, "--resume") == 0

    def losses(path):
        return [(r["step"], r["loss"]) for r in map(json.loads, (path / "metrics.jsonl").read_text().splitlines())
                if "loss" in r]

    full, split = losses(tmp_path / "full"), losses(tmp_path / "split")
    assert [s for s, _ in full] == list(range(1, 9))
    assert split == full == losses(old)  # bit-identical losses on CPU fp32, old checkpoint format included
    a = load_checkpoint(tmp_path / "full" / "ckpt.pt")[0]["model"]
    b = load_checkpoint(tmp_path / "split" / "ckpt.pt")[0]["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_predict_prints_label_and_probability(workdir, tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(workdir, out, "--init", str(workdir / "clm"), "--max-steps", "2") == 0
    capsys.readouterr()
    assert finetune.main(["--ckpt", str(out), "--predict", "a gorgeous , witty film", "--dtype", "float32"]) == 0
    label, prob, text = capsys.readouterr().out.strip().split("\t")
    assert label in ("0", "1") and 0.5 <= float(prob) <= 1.0 and text == "a gorgeous , witty film"
    lines = tmp_path / "lines.txt"
    lines.write_text("great\nawful , just awful\n")
    assert finetune.main(["--ckpt", str(out), "--predict-file", str(lines), "--dtype", "float32"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    model, tok, meta = load_classifier(out)
    assert meta["label_names"] == ["0", "1"] and model.pooling == "last"


def _train_rows(out: Path) -> dict:
    """The training rows a run used, read back from its checkpoint (the record --train-limit writes)."""
    return load_checkpoint(out / "ckpt.pt")[1]["train_subset"]


def test_train_limit_is_a_stratified_seeded_sample_and_resume_keeps_it(workdir, tmp_path, capsys):
    from minilm.labelled import read_labelled

    _, y, _ = read_labelled(workdir / "sst2" / "train.tsv", "sentence", "label", ["0", "1"])
    share = 50 * np.bincount(y) / len(y)
    args = ["--init", str(workdir / "mlm"), "--train-limit", "50", "--max-steps", "8", "--eval-interval", "4",
            "--epochs", "2"]  # 7 batches per epoch: the stop at step 3 is mid-epoch, and the run crosses an epoch
    assert _run(workdir, tmp_path / "a", *args) == 0
    record = _train_rows(tmp_path / "a")
    counts = list(record["class_counts"].values())
    assert sum(counts) == 50 and all(abs(c - s) < 1 for c, s in zip(counts, share))  # proportional, rounded
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["train_rows"] == 50 and report["train_subset"] == record and report["select"] == "last"
    assert _run(workdir, tmp_path / "b", *args) == 0
    assert _run(workdir, tmp_path / "c", *args, "--seed", "7") == 0
    assert _train_rows(tmp_path / "b") == record  # same seed, same rows
    assert _train_rows(tmp_path / "c")["rows_sha256"] != record["rows_sha256"]  # another seed, other rows
    # resume: the same rows (checked against the checkpoint) and bit-identical losses
    assert _run(workdir, tmp_path / "split", *args, "--stop-after", "3") == 0
    capsys.readouterr()
    assert _run(workdir, tmp_path / "split", *args[:-4], "--train-limit", "60", "--max-steps", "8", "--eval-interval",
                "4", "--epochs", "2", "--resume") == 1
    assert "train_subset" in _error_line(capsys)  # other rows than the checkpoint's: refused
    assert _run(workdir, tmp_path / "split", *args, "--resume") == 0
    losses = lambda p: [r["loss"] for r in map(json.loads, (p / "metrics.jsonl").read_text().splitlines())  # noqa: E731
                        if "loss" in r]
    assert losses(tmp_path / "split") == losses(tmp_path / "a")
    assert _train_rows(tmp_path / "split") == record


def test_train_limit_bad_values_are_one_clear_line(workdir, tmp_path, capsys):
    init = ["--init", str(workdir / "mlm"), "--max-steps", "1"]
    assert _run(workdir, tmp_path / "a", *init, "--train-limit", "301") == 1
    assert "more than the 300 training rows" in _error_line(capsys)
    assert not (tmp_path / "a" / "ckpt.pt").exists()
    assert _run(workdir, tmp_path / "b", *init, "--train-limit", "20", "--max-train-rows", "40") == 1
    assert "pass one" in _error_line(capsys)
    assert _run(workdir, tmp_path / "c", *init, "--train-limit", "-5") == 1
    assert "--train-limit must be >= 0" in _error_line(capsys)
    assert _run(workdir, tmp_path / "d", *init, "--select", "last", "--patience", "2") == 1
    assert "--select metric or loss" in _error_line(capsys)


def test_select_picks_best_metric_lowest_loss_or_last(workdir, tmp_path):
    """best.pt is the evaluation --select names, read back from metrics.jsonl; --select last evaluates only at the
    fixed points (every --eval-interval steps and at the end), not at each epoch's end."""
    args = ["--init", str(workdir / "mlm"), "--max-train-rows", "40", "--epochs", "3", "--eval-interval", "4",
            "--lr", "3e-3"]  # 5 batches per epoch, 15 steps
    for select in ("metric", "loss", "last"):
        out = tmp_path / select
        assert _run(workdir, out, *args, "--select", select) == 0
        evals = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "dev_loss" in r]
        best = load_checkpoint(out / "best.pt")[1]
        if select == "last":
            assert [e["step"] for e in evals] == [4, 8, 12, 15] and best["step"] == 15
        else:
            assert [e["step"] for e in evals] == [4, 5, 8, 10, 12, 15]  # the epoch ends 5, 10 and 15 too
            key = "dev_accuracy" if select == "metric" else "dev_loss"
            sign = 1 if select == "metric" else -1
            first_best = max(evals, key=lambda e: (sign * e[key], -e["step"]))  # the first of equals is kept
            assert best["step"] == first_best["step"]
        assert json.loads((out / "report.json").read_text())["best_step"] == best["step"]
