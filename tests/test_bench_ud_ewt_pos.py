"""bench/ud_ewt_pos.py: the JSON lecture 11 reads, from finished runs (accuracies, per-tag F1, McNemar on test words)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import ud_ewt_pos  # noqa: E402
from minilm.metrics import mcnemar_test, tag_report, token_accuracy  # noqa: E402

TAGS = ["NOUN", "VERB", "X"]


def _scores(y, pred) -> dict:
    return {"accuracy": token_accuracy(y, pred), "tags": tag_report(y, pred, TAGS)}


def _run(directory: Path, gold: list[list[int]], pred: list[list[int]], baseline: list[list[int]]) -> Path:
    """A finished finetune.py --task token run as the bench reads it: report.json and test_predictions.tsv."""
    directory.mkdir(parents=True)
    report = {"best_step": 7, **{f"{split}{kind}": _scores(gold, p) for split in ("dev", "test")
                                 for kind, p in (("", pred), ("_baseline", baseline))}}
    (directory / "report.json").write_text(json.dumps(report))
    blocks = ["\n".join(f"w\t{TAGS[p]}\t{TAGS[y]}" for y, p in zip(ys, ps)) for ys, ps in zip(gold, pred)]
    (directory / "test_predictions.tsv").write_text("\n\n".join(blocks) + "\n")
    return directory


def test_report_writes_accuracies_tags_and_the_paired_test(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    gold = [rng.integers(0, 2, 8).tolist() for _ in range(30)]  # X never occurs in gold, but is predicted below
    noisy = lambda acc: [[t if rng.random() < acc else 2 for t in s] for s in gold]  # noqa: E731
    baseline, good, bad = noisy(0.6), noisy(0.9), noisy(0.7)
    monkeypatch.setattr(ud_ewt_pos, "ROOT", tmp_path)
    runs = {"pretrained": "ud-pos", "scratch": "ud-pos-scratch"}
    _run(tmp_path / runs["pretrained"], gold, good, baseline)
    _run(tmp_path / runs["scratch"], gold, bad, baseline)
    (tmp_path / "ud-mlm").mkdir()
    (tmp_path / "ud-mlm" / "metrics.jsonl").write_text('{"step": 1, "val_loss": 3.5}\n{"step": 2, "loss": 3.0}\n')
    args = argparse.Namespace(out="ud", causal=False, pretrain_args="", finetune_args="", json="r.json")
    ud_ewt_pos.report(args, runs, ["--a"], ["--b"], {"pretrain": 1.0}, (1.0, 1.0, 1.0),
                      {"recipe_wall_s": 2.0, "load_after_recipe": (1.0, 1.0, 1.0)})
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["accuracy"]["test"] == pytest.approx({"baseline": token_accuracy(gold, baseline),
                                                         "pretrained": token_accuracy(gold, good),
                                                         "scratch": token_accuracy(gold, bad)})
    assert results["pretrain_val_loss"] == {"mlm": 3.5} and results["best_step"]["scratch"] == 7
    assert sorted(results["test_tags"]) == TAGS and results["test_tags"]["X"]["support"] == 0
    flat = lambda seqs: [t for s in seqs for t in s]  # noqa: E731
    assert results["paired"]["pretrained vs scratch"] == mcnemar_test(flat(gold), flat(good), flat(bad))


def test_keep_finished_runs_only_the_causal_twin_and_keeps_the_recipe_record(tmp_path, monkeypatch):
    """--causal --keep-finished adds the twin to an earlier JSON: the finished recipe steps are not redone, and the
    recipe's wall time and load stay those of the run that made them."""
    rng = np.random.default_rng(1)
    gold = [rng.integers(0, 2, 6).tolist() for _ in range(20)]
    monkeypatch.setattr(ud_ewt_pos, "ROOT", tmp_path)
    for name in ("ud-pos", "ud-pos-scratch"):
        _run(tmp_path / name, gold, gold, gold)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "meta.json").write_text("{}")
    (tmp_path / "ud-mlm").mkdir()
    (tmp_path / "ud-mlm" / "metrics.jsonl").write_text('{"step": 1, "val_loss": 3.5}\n')
    monkeypatch.setattr(ud_ewt_pos, "finished", lambda out: out.name != "ud-clm" and out.name != "ud-pos-clm"
                        or (out / "done").exists())
    ran = []

    def fake_run(name, cmd, times):
        ran.append(name)
        times[name] = 9.0
        out = tmp_path / cmd[cmd.index("--out-dir") + 1]
        if name == "finetune_clm":
            _run(out, gold, [[0] * len(s) for s in gold], gold)
        elif name == "pretrain_clm":
            out.mkdir()
            (out / "metrics.jsonl").write_text('{"step": 1, "val_loss": 4.5}\n')

    monkeypatch.setattr(ud_ewt_pos, "run", fake_run)
    earlier = {"wall_s": {"prepare": 1.0, "pretrain": 2.0, "finetune": 3.0, "scratch": 4.0}, "recipe_wall_s": 10.0,
               "load_before": [0.5, 0.5, 0.5], "load_after_recipe": [1.5, 1.5, 1.5]}
    (tmp_path / "r.json").write_text(json.dumps(earlier))
    assert ud_ewt_pos.main(["--source", "src", "--out", "ud", "--data", "data", "--json", "r.json", "--causal",
                            "--keep-finished"]) == 0
    assert ran == ["pretrain_clm", "finetune_clm"]
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["recipe_wall_s"] == 10.0 and results["load_before"] == [0.5, 0.5, 0.5]
    assert results["wall_s"] == {**earlier["wall_s"], "pretrain_clm": 9.0, "finetune_clm": 9.0}
    assert results["pretrain_val_loss"] == {"mlm": 3.5, "clm": 4.5}
    assert results["accuracy"]["test"]["pretrained"] == 1.0 > results["accuracy"]["test"]["causal"]
    ran.clear()
    (tmp_path / "r.json").write_text(json.dumps(earlier))
    assert ud_ewt_pos.main(["--source", "src", "--out", "ud", "--data", "data", "--json", "r.json"]) == 0
    assert ran == ["prepare", "pretrain", "finetune", "scratch"]  # without the flag every step runs again
