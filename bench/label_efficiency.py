"""Where pretraining pays: SST-2 dev accuracy against the number of labelled training sentences (issue 18).

    python bench/label_efficiency.py                                  # every arm, size and seed; skips finished runs
    python bench/label_efficiency.py --arms mlm,scratch,bow --sizes 100,300,1000 --jobs 2
    python bench/label_efficiency.py --report-only                    # table, paired tests, plot, JSON from disk

For each training-set size N (a class-stratified sample of N of SST-2's 67,349 phrases, drawn with the run's seed:
`finetune.py --train-limit N --seed S`; "all" is the whole file) and each seed, every arm is trained and scored on
the 872 dev sentences:

  mlm, scratch          the masked LM of `train.py --preset imdb-mlm` (--mlm) and the same model with random weights
  mlm-50k               the same preset pretrained on 10x the reviews (--mlm-50k: data/imdb50k, unsup_50k.txt), at
                        the same compute (6,000 steps x 4,096 tokens: 10 passes over the 5k corpus, 1.4 over the 50k)
  clm, scratch-clm      the causal LM of `train.py --preset imdb-mlm --objective clm` (--clm), and its random twin
  bow                   bag-of-words logistic regression (bench/sst2_baseline.py) on the same N rows

The pretrained and scratch twins of one seed see the same rows in the same order, so their difference is paired.
The fine-tuning recipe (RECIPE below) is fixed in advance and the same for every arm: the sst2 preset's learning
rate and batch, at least MIN_STEPS optimizer steps (one epoch when N is large enough; small N get more epochs:
few-sample fine-tuning needs more steps, Mosbach et al. 2021, https://arxiv.org/abs/2006.04884, section 6; Zhang
et al. 2021, https://arxiv.org/abs/2006.05987, section 5), and `--select last`: the score is that of the last
checkpoint, so nothing is chosen on dev and the number is the one fresh sentences would give. (Picking the best of
several evaluations on 872 sentences, one standard error ~1.4 points, flatters the luckiest run, and the more so
the more evaluations a small-N run makes.) Each run writes its own out dir (<out>/<arm>-n<N>-s<seed>); one with a
report.json is skipped, one with a ckpt.pt is resumed, so a stopped bench continues where it was.

Printed: each arm's dev accuracy per N (mean, sample standard deviation and min-max over seeds), then for each
claim "A beats B" at each N the difference per seed with McNemar's exact p-value and the paired-bootstrap 95%
interval (minilm/metrics.py, Eqs. 7.7-7.8). Written: a PNG (accuracy against N, log x; minilm/plots.py) and a small
JSON (default lectures/results/label_efficiency.json, which lecture 07 plots) with the command, the machine
(lscpu model name, uptime), the recipe, the dev labels and every run's accuracy and predictions.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.sst2_baseline import bow_baseline  # noqa: E402
from bench.sst2_compare import read_run  # noqa: E402
from minilm.checkpoint import find_checkpoint, load_checkpoint  # noqa: E402
from minilm.files import atomic_write_text  # noqa: E402
from minilm.metrics import accuracy, mcnemar_test, paired_bootstrap  # noqa: E402
from minilm.plots import plot_learning_curves  # noqa: E402

SIZES = ["100", "300", "1000", "3000", "10000", "all"]
SEEDS = ["1337", "1", "2"]
# arm -> finetune.py flags; {mlm} / {clm} are the pretrained runs. Pooling as in the README's recipe.
ARMS = {
    "mlm": ["--init", "{mlm}", "--pooling", "mean"],
    "mlm-50k": ["--init", "{mlm50k}", "--pooling", "mean"],
    "scratch": ["--init", "scratch", "--like", "{mlm}", "--pooling", "mean"],
    "clm": ["--init", "{clm}"],
    "scratch-clm": ["--init", "scratch", "--like", "{clm}"],
    "bow": None,  # bag-of-words logistic regression, in this process
}
# the claims compared with a paired test, as (A, B): "A beats B"
CLAIMS = [("mlm", "scratch"), ("clm", "scratch-clm"), ("mlm", "bow"), ("clm", "bow"), ("clm", "mlm"),
          ("mlm-50k", "mlm"), ("mlm-50k", "scratch")]
MIN_STEPS = 500  # 16,000 examples seen at batch 32: the full set's one epoch is 2,105 steps
BATCH_SIZE = 32  # the sst2 preset's
N_EVALS = 5  # fixed dev evaluations per run, logged in metrics.jsonl for the curve of each run; none chooses


def schedule(n_rows: int, min_steps: int = MIN_STEPS, batch_size: int = BATCH_SIZE) -> list[str]:
    """finetune.py flags for a training set of n_rows: one epoch if that is at least min_steps optimizer steps,
    else as many epochs as min_steps needs, cut at exactly min_steps (the warmup and decay follow --max-steps).
    Examples: 67,349 rows -> 1 epoch (2,105 steps); 1,000 rows (32 steps an epoch) -> 16 epochs, 500 steps."""
    per_epoch = math.ceil(n_rows / batch_size)
    if per_epoch >= min_steps:
        steps, flags = per_epoch, ["--epochs", "1"]
    else:
        steps, flags = min_steps, ["--epochs", str(math.ceil(min_steps / per_epoch)), "--max-steps", str(min_steps)]
    return [*flags, "--batch-size", str(batch_size), "--eval-interval", str(max(1, steps // N_EVALS)),
            "--select", "last"]


def count_rows(path: Path) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip()) - 1  # minus the header


def run_dir(out: Path, arm: str, size: str, seed: str) -> Path:
    return out / f"{arm}-n{size}-s{seed}"


def finetune_command(args, arm: str, size: str, seed: str, n_rows: int) -> list[str]:
    flags = [f.format(**pretrained_runs(args)) for f in ARMS[arm]]
    limit = [] if size == "all" else ["--train-limit", size]
    resume = ["--resume"] if (run_dir(args.out, arm, size, seed) / "ckpt.pt").is_file() else []
    return [sys.executable, str(ROOT / "finetune.py"), *flags, "--data", str(args.data), *limit, "--seed", seed,
            *schedule(n_rows if size == "all" else int(size), args.min_steps), "--log-interval", "1000",
            "--out-dir", str(run_dir(args.out, arm, size, seed)), *resume, *shlex.split(args.finetune_args)]


def pretrained_runs(args) -> dict[str, str]:
    """The pretraining run each {placeholder} of ARMS names."""
    return {"mlm": args.mlm, "clm": args.clm, "mlm50k": args.mlm_50k}


def launch(command: list[str], log) -> int:
    """Run one finetune.py command, its output into the open log file; returns the exit code."""
    return subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode


def run_one(args, arm: str, size: str, seed: str, n_rows: int) -> str:
    """Train (or resume) one run, or fit the bag-of-words model; returns a line for the log."""
    directory = run_dir(args.out, arm, size, seed)
    t0, load = time.time(), os.getloadavg()[0]
    before = directory / "bench.json"  # a stopped run that is resumed: its first attempt's time counts too
    earlier = json.loads(before.read_text())["wall_s"] if before.is_file() and arm != "bow" else 0.0
    if arm == "bow":
        result = bow_baseline(args.data, C=1.0, seed=int(seed), train_limit=0 if size == "all" else int(size))
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(directory / "bow.json", json.dumps({
            "accuracy": result["report"]["accuracy"], "predictions": "".join(map(str, result["predictions"])),
            "wall_s": result["time_s"], "train_rows": n_rows if size == "all" else int(size)}) + "\n")
    else:
        command = finetune_command(args, arm, size, seed, n_rows)
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory.with_suffix(".log"), "a", encoding="utf-8") as log:
            log.write(f"$ {shlex.join(command)}\n")
            log.flush()
            code = launch(command, log)
        if code != 0:
            return f"FAILED {directory.name} (exit {code}): see {directory.with_suffix('.log')}"
    wall = time.time() - t0 + earlier
    atomic_write_text(directory / "bench.json", json.dumps({"wall_s": wall, "load_1min_start": load,
                                                            "load_1min_end": os.getloadavg()[0]}) + "\n")
    return f"done {directory.name} in {wall:.0f}s (load {load:.2f})"


def finished(out: Path, arm: str, size: str, seed: str) -> bool:
    return (run_dir(out, arm, size, seed) / ("bow.json" if arm == "bow" else "report.json")).is_file()


def read_result(out: Path, arm: str, size: str, seed: str, names: list[str]) -> dict:
    """{accuracy, predictions (str of class ids), train_rows, steps, wall_s} of a finished run."""
    directory = run_dir(out, arm, size, seed)
    timing = json.loads((directory / "bench.json").read_text()) if (directory / "bench.json").is_file() else {}
    if arm == "bow":
        return {**json.loads((directory / "bow.json").read_text()), **timing}
    gold, pred, report = read_run(directory)
    return {"accuracy": accuracy(gold, pred), "predictions": "".join(map(str, pred)), "train_rows": report["train_rows"],
            "steps": report["steps"], "best_step": report["best_step"], "select": report.get("select"),
            "wall_s": timing.get("wall_s", report.get("total_time_s")), **timing, "gold": "".join(map(str, gold))}


def summarise(runs: dict) -> dict:
    """{arm: {size: {mean, std, min, max, n_seeds, train_rows}}}; std is the sample standard deviation (ddof 1)."""
    summary = {}
    for arm, sizes in runs.items():
        for size, seeds in sizes.items():
            accs = np.array([r["accuracy"] for r in seeds.values()])
            summary.setdefault(arm, {})[size] = {
                "mean": float(accs.mean()), "std": float(accs.std(ddof=1)) if len(accs) > 1 else 0.0,
                "min": float(accs.min()), "max": float(accs.max()), "n_seeds": len(accs),
                "train_rows": next(iter(seeds.values()))["train_rows"]}
    return summary


def paired_tests(runs: dict, gold: np.ndarray) -> list[dict]:
    """For each claim (A, B), size and seed run by both: the accuracy difference A - B on the same dev sentences,
    McNemar's exact p-value (Eq. 7.7) and the paired-bootstrap 95% interval (Eq. 7.8)."""
    rows = []
    for a, b in CLAIMS:
        for size in runs.get(a, {}):
            for seed, run_a in runs[a][size].items():
                run_b = runs.get(b, {}).get(size, {}).get(seed)
                if run_b is None:
                    continue
                pred_a, pred_b = (np.array(list(r["predictions"]), dtype=int) for r in (run_a, run_b))
                test, boot = mcnemar_test(gold, pred_a, pred_b), paired_bootstrap(gold, pred_a, pred_b)
                rows.append({"a": a, "b": b, "size": size, "seed": seed, "diff": boot["diff"],
                             "mcnemar_p": test["p_value"], "b_only_a_right": test["b"], "c_only_b_right": test["c"],
                             "ci_low": boot["ci_low"], "ci_high": boot["ci_high"]})
    return rows


def pretraining(path: str) -> dict | None:
    """What the pretrained arms started from: the checkpoint finetune.py --init loads, its step, validation loss
    and pretraining settings (a preset cut short shows here), and the model's size. None if it is not on disk."""
    try:
        ckpt = find_checkpoint(path)
        _, meta = load_checkpoint(ckpt)
    except (OSError, ValueError):
        return None
    keep = ("objective", "data", "max_iters", "batch_size", "lr", "mask_prob")
    return {"checkpoint": str(ckpt), "preset": meta.get("preset"), "step": meta.get("step"),
            "val_loss": meta.get("val_loss"), "settings": {k: meta.get("settings", {}).get(k) for k in keep},
            "model": {k: meta["model_config"][k] for k in ("n_layers", "d_model", "max_seq_len", "vocab_size")}}


def machine() -> dict:
    """The CPU (lscpu's model name), the load (uptime) and the thread setting, for the record."""
    def shell(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    model = next((line.split(":", 1)[1].strip() for line in shell(["lscpu"]).splitlines()
                  if line.startswith("Model name")), "")
    return {"cpu": model, "cores": os.cpu_count(), "uptime": shell(["uptime"]),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}


ARM_NAMES = {"mlm": "masked LM, pretrained", "scratch": "masked LM's architecture, from scratch",
             "mlm-50k": "masked LM, pretrained on 10x the reviews",
             "clm": "causal LM, pretrained", "scratch-clm": "causal LM's architecture, from scratch",
             "bow": "bag-of-words logistic regression"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default=",".join(SIZES), help="training-set sizes N, comma-separated ('all' = the file)")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, from {', '.join(ARMS)}")
    p.add_argument("--seeds", default=",".join(SEEDS), help="fine-tuning seeds (each also draws its own sample)")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (give each OMP_NUM_THREADS=1 on a small CPU)")
    p.add_argument("--mlm", default="out/imdb-mlm", help="the masked-LM pretraining run (train.py --preset imdb-mlm)")
    p.add_argument("--clm", default="out/imdb-clm", help="the causal-LM pretraining run (--objective clm)")
    p.add_argument("--mlm-50k", default="out/imdb50k-mlm", help="the masked LM pretrained on the 50k-review corpus")
    p.add_argument("--data", type=Path, default=Path("data/sst2"), help="prepared SST-2 folder")
    p.add_argument("--out", type=Path, default=Path("out/label-efficiency"), help="one run directory per arm/N/seed")
    p.add_argument("--min-steps", type=int, default=MIN_STEPS, help="fewest optimizer steps of a run (see schedule)")
    p.add_argument("--finetune-args", default="", help="more finetune.py flags for every run, e.g. '--device cuda'")
    p.add_argument("--json", type=Path, default=ROOT / "lectures" / "results" / "label_efficiency.json",
                   help="where the results JSON goes (lecture 07 reads the default)")
    p.add_argument("--plot", type=Path, default=None, help="the PNG (default: <out>/label_efficiency.png)")
    p.add_argument("--report-only", action="store_true", help="run nothing: summarise the runs already on disk")
    p.add_argument("--dry-run", action="store_true", help="print the commands of the runs still to do, run nothing")
    args = p.parse_args(argv)
    args.sizes, args.arms, args.seeds = (args.sizes.split(","), args.arms.split(","), args.seeds.split(","))
    bad = [a for a in args.arms if a not in ARMS] + [s for s in args.sizes if s != "all" and not s.isdigit()]
    if bad or args.jobs < 1:
        p.error(f"unknown arm(s) or size(s) {bad} (arms: {', '.join(ARMS)}; sizes: integers or 'all'), or --jobs < 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    command = "python bench/label_efficiency.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    if not (args.data / "train.tsv").is_file():
        print(f"error: {args.data}/train.tsv not found: python data/sst2/prepare.py (--source PATH offline)",
              file=sys.stderr)
        return 1
    n_rows = count_rows(args.data / "train.tsv")
    plan = [(arm, size, seed) for size in args.sizes for seed in args.seeds for arm in args.arms]
    todo = [job for job in plan if not finished(args.out, *job)]
    needs = {path for arm, _, _ in todo for key, path in pretrained_runs(args).items()
             if "{" + key + "}" in (ARMS[arm] or [])}
    missing = [path for path in sorted(needs) if not Path(path).exists()]
    if missing and not (args.report_only or args.dry_run):
        print(f"error: pretraining run(s) {missing} not found: train them first (README, 'Fine-tuning'), or leave "
              f"their arms out with --arms", file=sys.stderr)
        return 1
    print(f"{len(plan)} runs planned, {len(plan) - len(todo)} already done, {len(todo)} to do")
    if args.dry_run:
        for arm, size, seed in todo:
            print("bag-of-words" if arm == "bow" else shlex.join(finetune_command(args, arm, size, seed, n_rows)))
        return 0
    if not args.report_only:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for line in pool.map(lambda job: run_one(args, *job, n_rows), todo):
                print(line, flush=True)
    return write_results(args, plan, command)


def write_results(args, plan: list[tuple], command: str) -> int:
    """Read every finished run of the plan; print the table and the paired tests; write the JSON and the plot."""
    from minilm.labelled import read_labelled

    _, gold, _ = read_labelled(args.data / "dev.tsv", "sentence", "label", ["0", "1"])
    gold = np.asarray(gold)
    runs, not_run = {}, []
    for arm, size, seed in plan:
        if not finished(args.out, arm, size, seed):
            not_run.append(f"{arm}-n{size}-s{seed}")
            continue
        result = read_result(args.out, arm, size, seed, ["negative", "positive"])
        if result.pop("gold", "".join(map(str, gold))) != "".join(map(str, gold)):
            print(f"error: {run_dir(args.out, arm, size, seed)} was scored on other dev sentences", file=sys.stderr)
            return 1
        runs.setdefault(arm, {}).setdefault(size, {})[seed] = result
    if not runs:
        print("error: no finished runs to report", file=sys.stderr)
        return 1
    summary, paired = summarise(runs), paired_tests(runs, gold)
    print(f"\n{'arm':<12} {'N':>6} {'seeds':<26} {'mean':>7} {'std':>6} {'min-max':>13}")
    for arm, sizes in summary.items():
        for size, s in sizes.items():
            accs = " ".join(f"{r['accuracy']:.4f}" for r in runs[arm][size].values())
            print(f"{arm:<12} {size:>6} {accs:<26} {s['mean']:>7.4f} {s['std']:>6.4f} {s['min']:.4f}-{s['max']:.4f}")
    print(f"\n{'claim':<20} {'N':>6} {'seed':>5} {'diff':>7} {'McNemar p':>10} {'bootstrap 95% CI':>18}")
    for r in paired:
        print(f"{r['a'] + ' > ' + r['b']:<20} {r['size']:>6} {r['seed']:>5} {r['diff']:>+7.4f} {r['mcnemar_p']:>10.4f} "
              f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]")
    if not_run:
        print(f"\nnot run ({len(not_run)}): {' '.join(not_run)}")
    curves = {ARM_NAMES[arm]: {s["train_rows"]: [r["accuracy"] for r in runs[arm][size].values()]
                               for size, s in sizes.items()} for arm, sizes in summary.items()}
    plot = args.plot or args.out / "label_efficiency.png"
    plot_learning_curves(curves, plot, title="SST-2 dev accuracy against labelled training sentences")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    payload = {"command": command, "commit": commit.stdout.strip() or None, "machine": machine(),
               "recipe": {"select": "last", "min_steps": args.min_steps, "batch_size": BATCH_SIZE,
                          "evaluations_per_run": N_EVALS, "finetune_args": args.finetune_args,
                          "arms": {arm: ARMS[arm] for arm in runs}, **pretrained_runs(args)},
               "pretraining": {key: pretraining(path) for key, path in pretrained_runs(args).items()},
               "arm_names": {arm: ARM_NAMES[arm] for arm in runs}, "dev_labels": "".join(map(str, gold)),
               "summary": summary, "paired": paired, "not_run": not_run, "runs": runs}
    atomic_write_text(args.json, json.dumps(payload, indent=1) + "\n")
    print(f"\nwrote {args.json} and {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
