"""bench/label_efficiency.py on a tiny synthetic task: the runs it plans (stratified --train-limit, the fixed
schedule, --select last), the JSON's per-seed numbers and paired tests against minilm.metrics, skipping finished
runs, resuming a stopped one, and a real subprocess run."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import label_efficiency  # noqa: E402
from minilm.metrics import accuracy, mcnemar_test  # noqa: E402

FAST = "--dtype float32 --compile off --max-len 16 --device cpu"
GOOD, BAD, FILLER = ["good", "great", "lovely", "fine"], ["bad", "awful", "dull", "poor"], ["the", "film", "was", "a"]


def _sentences(n: int, rng) -> list[tuple[str, int]]:
    rows = []
    for _ in range(n):
        label = int(rng.integers(0, 2)) if rows else 0
        words = list(rng.choice(FILLER, 3)) + [str(rng.choice(GOOD if label else BAD))]
        rows.append((" ".join(rng.permutation(words)), label))
    return rows


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> Path:
    """A 40-row train / 30-row dev sentiment task, a BPE corpus from the same words, and a tiny masked LM."""
    root = tmp_path_factory.mktemp("label_efficiency")
    rng = np.random.default_rng(0)
    data = root / "sst2"
    data.mkdir()
    for name, n in (("train.tsv", 40), ("dev.tsv", 30)):
        rows = _sentences(n, rng)
        (data / name).write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows), encoding="utf-8")
    (data / "meta.json").write_text(json.dumps({"files": {"train": "train.tsv", "dev": "dev.tsv"},
                                                "text_column": "sentence", "label_column": "label",
                                                "labels": ["0", "1"], "label_names": ["negative", "positive"]}))
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(t for t, _ in _sentences(300, rng)) + "\n", encoding="utf-8")
    spec = importlib.util.spec_from_file_location("imdb_prepare", ROOT / "data" / "imdb" / "prepare.py")
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    with contextlib.redirect_stdout(None):
        assert prepare.main(["--source", str(corpus), "--out-dir", str(root / "imdb"), "--vocab-size", "280"]) == 0
        import train
        assert train.main(["--preset", "tiny", "--objective", "mlm", "--data", str(root / "imdb"), "--out-dir",
                           str(root / "mlm"), "--max-iters", "2", "--warmup-iters", "1", "--eval-interval", "2",
                           "--eval-iters", "1", "--samples", "0", "--dtype", "float32", "--compile", "off"]) == 0
    return root


def _args(task: Path, *extra: str) -> list[str]:
    # every pretraining path inside the task folder: the defaults (out/imdb-clm, ...) would read the working directory
    return ["--data", str(task / "sst2"), "--mlm", str(task / "mlm"), "--clm", str(task / "no-clm"),
            "--mlm-50k", str(task / "no-mlm-50k"), "--out", str(task / "runs"),
            "--json", str(task / "results.json"), "--min-steps", "6", "--finetune-args", FAST, *extra]


def _value(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def _in_process(calls: list):
    """launch() that runs finetune.main in this process (a subprocess per run would cost seconds each)."""
    import finetune

    def launch(command, log):
        calls.append(command)
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            return finetune.main(command[2:])
    return launch


def test_bench_runs_skips_resumes_and_writes_paired_results(task, monkeypatch, capsys):
    calls: list = []
    monkeypatch.setattr(label_efficiency, "launch", _in_process(calls))
    plan = ["--arms", "mlm,scratch,bow", "--sizes", "10,all", "--seeds", "1,2"]
    assert label_efficiency.main(_args(task, *plan)) == 0
    assert len(calls) == 8  # 2 fine-tuned arms x 2 sizes x 2 seeds; bag-of-words runs in-process
    small = next(c for c in calls if "--train-limit" in c)
    # 10 rows at batch 32: 1 step an epoch, so 6 epochs cut at the 6 --min-steps; best.pt is the last checkpoint
    assert [_value(small, f) for f in ("--train-limit", "--epochs", "--max-steps", "--select")] == ["10", "6", "6",
                                                                                                   "last"]

    payload = json.loads((task / "results.json").read_text())
    gold = np.array(list(payload["dev_labels"]), dtype=int)
    runs = payload["runs"]
    assert sorted(runs) == ["bow", "mlm", "scratch"] and payload["not_run"] == []
    for arm in ("mlm", "scratch"):
        for seed in ("1", "2"):
            run = runs[arm]["10"][seed]
            directory = task / "runs" / f"{arm}-n10-s{seed}"
            report = json.loads((directory / "report.json").read_text())
            assert report["train_subset"]["limit"] == 10 and report["select"] == "last"
            assert report["best_step"] == report["steps"] == 6  # --select last: nothing chosen on dev
            pred = np.array(list(run["predictions"]), dtype=int)
            assert run["accuracy"] == pytest.approx(accuracy(gold, pred)) == pytest.approx(report["dev"]["accuracy"])
            assert runs[arm]["all"][seed]["train_rows"] == 40
        twins = [json.loads((task / "runs" / f"{a}-n10-s1" / "report.json").read_text())["train_subset"]
                 for a in ("mlm", "scratch")]
        assert twins[0] == twins[1]  # pretrained and scratch twins train on the same rows
    accs = [runs["mlm"]["10"][s]["accuracy"] for s in ("1", "2")]
    assert payload["summary"]["mlm"]["10"]["mean"] == pytest.approx(np.mean(accs))
    assert payload["summary"]["mlm"]["10"]["std"] == pytest.approx(np.std(accs, ddof=1))
    row = next(r for r in payload["paired"] if (r["a"], r["b"], r["size"], r["seed"]) == ("mlm", "scratch", "10", "2"))
    preds = [np.array(list(runs[a]["10"]["2"]["predictions"]), dtype=int) for a in ("mlm", "scratch")]
    assert row["mcnemar_p"] == pytest.approx(mcnemar_test(gold, *preds)["p_value"])
    assert any(r["b"] == "bow" for r in payload["paired"])
    assert payload["pretraining"]["mlm"]["step"] == 2 and payload["pretraining"]["clm"] is None
    assert payload["machine"]["cores"] and "command" in payload and (task / "runs" / "label_efficiency.png").is_file()

    # finished runs are skipped; a stopped one (ckpt.pt, no report.json) is resumed
    (task / "runs" / "scratch-n10-s2" / "report.json").unlink()
    calls.clear()
    capsys.readouterr()
    assert label_efficiency.main(_args(task, *plan)) == 0
    assert "11 already done, 1 to do" in capsys.readouterr().out
    assert len(calls) == 1 and "--resume" in calls[0] and calls[0][calls[0].index("--out-dir") + 1].endswith(
        "scratch-n10-s2")
    resumed = json.loads((task / "results.json").read_text())["runs"]["scratch"]["10"]["2"]
    assert resumed["predictions"] == runs["scratch"]["10"]["2"]["predictions"]  # the same, finished checkpoint
    assert resumed["wall_s"] > runs["scratch"]["10"]["2"]["wall_s"]  # the first attempt's time is kept and added to


def test_bench_subprocess_run_and_bad_input(task, capsys):
    assert label_efficiency.main(_args(task, "--arms", "scratch,bow", "--sizes", "20", "--seeds", "3",
                                       "--jobs", "2")) == 0  # real subprocesses, two at a time
    out = capsys.readouterr().out
    assert "done scratch-n20-s3" in out and "done bow-n20-s3" in out
    log = (task / "runs" / "scratch-n20-s3.log").read_text()
    assert log.startswith("$ ") and _value(shlex.split(log.splitlines()[0][2:]), "--train-limit") == "20"
    assert "done in" in log  # finetune.py's last line: the run finished
    assert label_efficiency.main(_args(task, "--arms", "clm", "--clm", str(task / "nowhere"))) == 1
    assert "not found" in capsys.readouterr().err
    assert label_efficiency.main(_args(task, "--arms", "mlm-50k", "--mlm-50k", str(task / "elsewhere"))) == 1
    assert "elsewhere" in capsys.readouterr().err  # each arm starts from its own pretraining run
    assert label_efficiency.main(_args(task, "--arms", "mlm-50k", "--mlm-50k", str(task / "mlm"), "--dry-run")) == 0
    assert f"--init {task / 'mlm'} --pooling mean" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        label_efficiency.main(_args(task, "--arms", "gpt5"))
