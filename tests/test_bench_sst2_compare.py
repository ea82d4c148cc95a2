"""bench/sst2_compare.py: grouping runs by arm and seed, the paired tests it prints, and the JSON lecture 07 reads."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import sst2_compare  # noqa: E402
from minilm.metrics import mcnemar_test  # noqa: E402

NAMES = ["negative", "positive"]


def _run(directory: Path, gold: np.ndarray, pred: np.ndarray) -> Path:
    """A finished finetune.py run as the script sees it: report.json and dev_predictions.tsv."""
    directory.mkdir(parents=True)
    report = {"dev": {"negative": {}, "positive": {}, "accuracy": float(np.mean(gold == pred)), "macro avg": {},
                      "weighted avg": {}}, "init": "test", "backbone_kind": "masked", "total_time_s": 1.0}
    (directory / "report.json").write_text(json.dumps(report))
    rows = ["index\tprediction\tprobability\tlabel"] + [f"{i}\t{NAMES[p]}\t0.9\t{NAMES[y]}"
                                                        for i, (p, y) in enumerate(zip(pred, gold))]
    (directory / "dev_predictions.tsv").write_text("\n".join(rows) + "\n")
    return directory


def test_compare_groups_seeds_and_writes_the_paired_tests(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 2, 200)
    noisy = lambda acc: np.where(rng.random(200) < acc, gold, 1 - gold)  # noqa: E731
    preds = {("mlm", "1"): noisy(0.9), ("mlm", "2"): noisy(0.9), ("scratch", "1"): noisy(0.7),
             ("scratch", "2"): noisy(0.7)}
    runs = [_run(tmp_path / f"sst2-{arm}-s{seed}", gold, p) for (arm, seed), p in preds.items()]
    bow = noisy(0.8)
    monkeypatch.setattr(sst2_compare, "bow_baseline", lambda data, C: {"predictions": bow})
    out = tmp_path / "results.json"
    assert sst2_compare.main([*map(str, runs), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    expected = mcnemar_test(gold, preds["mlm", "1"], preds["scratch", "1"])["p_value"]
    assert f"mlm > scratch" in printed and f"{expected:.4f}" in printed
    payload = json.loads(out.read_text())
    assert payload["labels"] == "".join(map(str, gold))
    assert sorted(payload["runs"]) == ["bag-of-words", "mlm", "scratch"]
    assert payload["runs"]["mlm"]["2"] == "".join(map(str, preds["mlm", "2"]))


def test_compare_refuses_a_run_it_cannot_read(tmp_path, capsys):
    (tmp_path / "sst2-mlm-s1").mkdir()
    assert sst2_compare.main([str(tmp_path / "sst2-mlm-s1")]) == 1
    assert "not a finished finetune.py run" in capsys.readouterr().err
    assert sst2_compare.main([str(tmp_path)]) == 1
