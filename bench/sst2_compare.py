"""Compare fine-tuning runs on SST-2 dev the way two models on the same sentences must be compared: paired.

    python bench/sst2_compare.py out/sst2-*-s*/ --json out/sst2_runs.json

Each argument is a finetune.py run directory named `<arm>-s<seed>` (e.g. out/sst2-mlm-s1337); runs of one arm with
different seeds are grouped. The bag-of-words baseline of bench/sst2_baseline.py is added as one more arm. Printed:
each arm's dev accuracy per seed, its mean and spread; then, for each claim "A beats B" the README and lecture 07
make, the difference per seed with McNemar's exact p-value and the paired-bootstrap 95% interval
(minilm/metrics.py, Eqs. 7.7-7.8). With --json, the gold labels and every run's 872 predictions are written as a
small JSON file that lecture 07 reads, so a fresh clone shows these numbers without re-running the recipe.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.sst2_baseline import bow_baseline  # noqa: E402
from minilm.files import atomic_write_text  # noqa: E402
from minilm.metrics import accuracy, mcnemar_test, paired_bootstrap  # noqa: E402

# the claims the README and lecture 07 make, as (A, B): "A beats B"
CLAIMS = [("mlm", "scratch"), ("clm", "scratch-clm"), ("clm", "mlm"), ("mlm", "bag-of-words"),
          ("clm", "bag-of-words")]


def cpu_name() -> str:
    """The CPU model, for the record: timings hold only for the machine they were measured on."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def read_run(run: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(gold labels, predictions) as class ids from a run's dev_predictions.tsv, and its report.json."""
    report = json.loads((run / "report.json").read_text())
    names = [n for n in report["dev"] if n not in ("accuracy", "macro avg", "weighted avg")]
    with open(run / "dev_predictions.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    gold = np.array([names.index(r["label"]) for r in rows])
    pred = np.array([names.index(r["prediction"]) for r in rows])
    return gold, pred, report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="finetune.py run directories named <arm>-s<seed>")
    p.add_argument("--data", type=Path, default=ROOT / "data" / "sst2", help="prepared SST-2 folder")
    p.add_argument("--json", type=Path, default=None, help="write labels and predictions here (lecture 07 reads it)")
    args = p.parse_args(argv)

    gold = None
    arms: dict[str, dict[str, np.ndarray]] = {}
    reports: dict[str, dict] = {}
    for run in args.runs:
        m = re.fullmatch(r"(?:sst2-)?(.+)-s(\d+)", run.name)
        if m is None:
            print(f"error: {run} is not named <arm>-s<seed>", file=sys.stderr)
            return 1
        try:
            y, pred, report = read_run(run)
        except (OSError, ValueError, KeyError) as e:
            print(f"error: {run} is not a finished finetune.py run ({e})", file=sys.stderr)
            return 1
        if gold is not None and not np.array_equal(gold, y):
            print(f"error: {run} was scored on other dev sentences than {args.runs[0]}", file=sys.stderr)
            return 1
        gold = y
        arms.setdefault(m.group(1), {})[m.group(2)] = pred
        reports[f"{m.group(1)}-s{m.group(2)}"] = {k: report.get(k) for k in ("init", "backbone_kind", "total_time_s")}
    bow = bow_baseline(args.data, C=1.0)
    arms["bag-of-words"] = {"0": bow["predictions"]}

    print(f"{'arm':<14} {'seeds':<24} {'mean':>7} {'spread':>7}")
    for arm, runs in arms.items():
        accs = [accuracy(gold, pred) for pred in runs.values()]
        seeds = " ".join(f"{a:.4f}" for a in accs)
        print(f"{arm:<14} {seeds:<24} {np.mean(accs):>7.4f} {np.ptp(accs):>7.4f}")
    print(f"\n{'claim':<28} {'seed':>5} {'diff':>7} {'McNemar p':>10} {'bootstrap 95% CI':>18}")
    for a, b in CLAIMS:
        if a not in arms or b not in arms:
            continue
        for seed, pred_a in arms[a].items():
            pred_b = arms[b].get(seed, next(iter(arms[b].values())))  # the baseline has one "seed"
            test, boot = mcnemar_test(gold, pred_a, pred_b), paired_bootstrap(gold, pred_a, pred_b)
            print(f"{a + ' > ' + b:<28} {seed:>5} {boot['diff']:>+7.4f} {test['p_value']:>10.4f} "
                  f"[{boot['ci_low']:+.4f}, {boot['ci_high']:+.4f}]")

    if args.json:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        payload = {
            "command": "python bench/sst2_compare.py " + " ".join(str(r) for r in args.runs),
            "commit": commit.stdout.strip() or None, "cpu": cpu_name(),
            "labels": "".join(map(str, gold)),
            "runs": {arm: {seed: "".join(map(str, pred)) for seed, pred in runs.items()} for arm, runs in arms.items()},
            "reports": reports,
        }
        atomic_write_text(args.json, json.dumps(payload, indent=1) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
