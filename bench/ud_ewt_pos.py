"""The part-of-speech recipe on UD English-EWT, timed step by step: prepare, masked-LM pretraining on the training
sentences' text (no tags), fine-tuning, the same model from scratch, and (with --causal) a causal-LM twin.

    python bench/ud_ewt_pos.py --source PATH/TO/ud_ewt --json lectures/results/ud_ewt_pos.json
    python bench/ud_ewt_pos.py --source PATH/TO/ud_ewt --causal          # also what a causal backbone costs
    python bench/ud_ewt_pos.py --source PATH/TO/ud_ewt --causal --keep-finished --json ...  # add the twin only

Every step is the README's command, run as a subprocess; the wall time of each and the machine load before and
after are recorded (the CPU is shared). Printed, and written with --json for lectures/11_token_classification.ipynb:
UPOS word accuracy on dev and test for each model beside the most-frequent-tag baseline (Eq. 11.8), the per-tag F1
on test, and McNemar's exact test (Eq. 7.7) on the test words for each "A beats B" claim.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.sst2_compare import cpu_name  # noqa: E402
from minilm.checkpoint import load_checkpoint  # noqa: E402
from minilm.files import atomic_write_text  # noqa: E402
from minilm.metrics import mcnemar_test  # noqa: E402

# The recipe. Pretraining: imdb-mlm's model and optimiser (4 layers, d_model 128, 50% masking) with a context of 128
# (64 would cut 3% of the test sentences, 128 cuts 0.1%) at the same 4,096 tokens per step.
PRETRAIN = ["--preset", "imdb-mlm", "--max-seq-len", "128", "--batch-size", "32", "--max-iters", "3000",
            "--eval-interval", "1000", "--samples", "0"]
FINETUNE = ["--task", "token", "--epochs", "4", "--batch-size", "32", "--lr", "1e-3", "--eval-interval", "0"]


def run(name: str, cmd: list[str], times: dict) -> None:
    print(f"\n=== {name}: {' '.join(cmd)}", flush=True)
    t = time.time()
    subprocess.run([sys.executable, *cmd], cwd=ROOT, check=True)
    times[name] = round(time.time() - t, 1)
    print(f"=== {name}: {times[name]:.0f} s", flush=True)


def finished(out: Path) -> bool:
    """A fine-tuning run that wrote its report, or a pretraining run whose last checkpoint is at its last step."""
    if (out / "report.json").is_file():
        return True
    if not (out / "ckpt.pt").is_file():
        return False
    _, meta = load_checkpoint(out / "ckpt.pt")
    return meta.get("settings", {}).get("max_iters") == meta.get("step")


def test_predictions(out: Path) -> tuple[list[str], list[str]]:
    rows = [line.split("\t") for line in (out / "test_predictions.tsv").read_text().splitlines() if line]
    return [r[2] for r in rows], [r[1] for r in rows]


def val_loss(run_dir: Path) -> float | None:
    """The last validation loss train.py logged (per masked token, or per token for a causal LM)."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    losses = [r["val_loss"] for r in records if r.get("val_loss") is not None]
    return losses[-1] if losses else None


def report(args, runs: dict, pretrain: list, finetune: list, times: dict, load_before, recipe: dict) -> dict:
    """Word accuracy per model and split, test F1 per tag, McNemar per claim: printed, and written with --json."""
    reports = {name: json.loads((ROOT / out / "report.json").read_text()) for name, out in runs.items()}
    first = reports["pretrained"]
    tags = [t for t in first["test"]["tags"] if t not in ("accuracy", "macro avg", "weighted avg")]
    results = {
        "command": "python bench/ud_ewt_pos.py --source PATH/TO/ud_ewt" + (" --causal" if args.causal else "")
                   + "".join(f" --{k.replace('_', '-')} {shlex.quote(getattr(args, k))}"
                             for k in ("pretrain_args", "finetune_args") if getattr(args, k)),
        "pretrain_args": pretrain, "finetune_args": finetune, "cpu": cpu_name(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "load_before": load_before, **recipe,
        "load_after": os.getloadavg(), "wall_s": times,
        "pretrain_val_loss": {kind: val_loss(ROOT / f"{args.out}-{kind}")
                              for kind in ("mlm", "clm") if kind == "mlm" or "causal" in runs},
        "accuracy": {split: {"baseline": first[f"{split}_baseline"]["accuracy"],
                             **{name: r[split]["accuracy"] for name, r in reports.items()}}
                     for split in ("dev", "test")},
        "best_step": {name: r["best_step"] for name, r in reports.items()},
        "test_tags": {tag: {"support": int(first["test"]["tags"][tag]["support"]),
                            "baseline_f1": first["test_baseline"]["tags"][tag]["f1-score"],
                            **{f"{name}_f1": r["test"]["tags"][tag]["f1-score"] for name, r in reports.items()}}
                      for tag in tags},
        "paired": {},
    }
    gold, _ = test_predictions(ROOT / runs["pretrained"])
    as_ids = {name: [tags.index(t) for t in test_predictions(ROOT / out)[1]] for name, out in runs.items()}
    for a, b in [("pretrained", "scratch"), ("pretrained", "causal")]:
        if b in runs:
            results["paired"][f"{a} vs {b}"] = mcnemar_test([tags.index(t) for t in gold], as_ids[a], as_ids[b])
    print(f"\nUD English-EWT UPOS word accuracy ({cpu_name()}, load {load_before[0]:.2f} before, "
          f"{os.getloadavg()[0]:.2f} now; recipe {recipe['recipe_wall_s'] / 60:.1f} min)")
    for split, accs in results["accuracy"].items():
        print(f"  {split}: " + " | ".join(f"{k} {v:.4f}" for k, v in accs.items()))
    for claim, test in results["paired"].items():
        print(f"  {claim}: McNemar b={test['b']} c={test['c']} p={test['p_value']:.2g}")
    if args.json:
        atomic_write_text(ROOT / args.json, json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.json}")
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", required=True, help="folder with en_ewt-ud-{train,dev,test}.conllu")
    p.add_argument("--out", default="out/ud-ewt", help="prefix of the run directories")
    p.add_argument("--data", default="data/ud_ewt", help="where prepare.py writes")
    p.add_argument("--causal", action="store_true", help="also pretrain and fine-tune a causal-LM twin")
    p.add_argument("--json", default="", help="write the results here (e.g. lectures/results/ud_ewt_pos.json)")
    p.add_argument("--pretrain-args", default="", help="extra train.py flags, appended (they override the recipe's)")
    p.add_argument("--finetune-args", default="", help="extra finetune.py flags, appended")
    p.add_argument("--keep-finished", action="store_true",
                   help="do not redo a finished step (a fine-tuning run with its report.json, a pretraining run at "
                        "its last step) that --json already records: its time is read from there")
    args = p.parse_args(argv)
    earlier = (json.loads((ROOT / args.json).read_text())
               if args.keep_finished and args.json and (ROOT / args.json).is_file() else {})
    pretrain, finetune = PRETRAIN + shlex.split(args.pretrain_args), FINETUNE + shlex.split(args.finetune_args)
    load_before, t0, times = os.getloadavg(), time.time(), {}
    data = ["--data", args.data]
    runs = {"pretrained": f"{args.out}-pos", "scratch": f"{args.out}-pos-scratch"}

    def step(name: str, cmd: list[str], done: bool) -> bool:
        """Run one step, or keep it (--keep-finished) when it is done and the earlier JSON has its time."""
        if done and name in earlier.get("wall_s", {}):
            times[name] = earlier["wall_s"][name]
            print(f"=== {name}: kept, finished earlier ({times[name]:.0f} s when it ran)", flush=True)
            return True
        run(name, cmd, times)
        return False

    def out_of(cmd: list[str]) -> Path:
        return ROOT / cmd[cmd.index("--out-dir") + 1]

    steps = [("prepare", ["data/ud_ewt/prepare.py", "--source", args.source, "--out-dir", args.data]),
             ("pretrain", ["train.py", *pretrain, *data, "--out-dir", f"{args.out}-mlm", "--overwrite"]),
             ("finetune", ["finetune.py", *finetune, *data, "--init", f"{args.out}-mlm", "--out-dir",
                           runs["pretrained"], "--overwrite"]),
             ("scratch", ["finetune.py", *finetune, *data, "--init", "scratch", "--like", f"{args.out}-mlm",
                          "--out-dir", runs["scratch"], "--overwrite"])]
    kept = [step(name, cmd, (ROOT / args.data / "meta.json").is_file() if name == "prepare" else finished(out_of(cmd)))
            for name, cmd in steps]
    if all(kept):  # the recipe itself was not re-run: its timing and load are the earlier record's
        load_before = tuple(earlier["load_before"])
        recipe = {k: earlier[k] for k in ("recipe_wall_s", "load_after_recipe")}
    else:
        recipe = {"recipe_wall_s": round(time.time() - t0, 1), "load_after_recipe": os.getloadavg()}
    report(args, runs, pretrain, finetune, times, load_before, recipe)  # written now, in case the twin is stopped
    if args.causal:
        runs["causal"] = f"{args.out}-pos-clm"
        for name, cmd in [("pretrain_clm", ["train.py", *pretrain, "--objective", "clm", *data, "--out-dir",
                                            f"{args.out}-clm", "--overwrite"]),
                          ("finetune_clm", ["finetune.py", *finetune, *data, "--init", f"{args.out}-clm",
                                            "--out-dir", runs["causal"], "--overwrite"])]:
            step(name, cmd, finished(out_of(cmd)))
        report(args, runs, pretrain, finetune, times, load_before, recipe)
    return 0


if __name__ == "__main__":
    sys.exit(main())
