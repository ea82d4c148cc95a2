"""SST-2 bag-of-words baseline: unigram + bigram counts -> logistic regression (scikit-learn), on the same split.

    python bench/sst2_baseline.py                                   # BoW dev accuracy
    python bench/sst2_baseline.py out/sst2-mlm/report.json out/sst2-scratch/report.json   # side by side

The reference point a fine-tuned transformer has to beat: a linear model over which words and word pairs occur,
blind to word order beyond bigrams (Wang & Manning 2012, https://aclanthology.org/P12-2018/, report ~79-83% on
sentence-level SST-style data with such features). Trained on data/sst2/train.tsv (prepare it first:
python data/sst2/prepare.py, or --source PATH for a local copy), scored on data/sst2/dev.tsv with minilm.metrics.
Each report.json given on the command line (written by finetune.py) is printed beside it with its wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from minilm.labelled import read_labelled, stratified_sample  # noqa: E402
from minilm.metrics import classification_report  # noqa: E402


def bow_baseline(data: Path, C: float, seed: int = 0, train_limit: int = 0) -> dict:
    """Fit on train.tsv (or, with train_limit N, on the class-stratified sample of N rows that finetune.py
    --train-limit N --seed SEED trains on), score on dev.tsv; returns the classification report, the dev
    predictions and the wall time."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    t0 = time.time()
    labels = ["0", "1"]
    train_x, train_y, _ = read_labelled(data / "train.tsv", "sentence", "label", labels)
    if train_limit:
        rows = stratified_sample(train_y, train_limit, seed)
        train_x, train_y = [train_x[i] for i in rows], [train_y[i] for i in rows]
    dev_x, dev_y, _ = read_labelled(data / "dev.tsv", "sentence", "label", labels)
    # SST-2 is already lower-cased and tokenised; keep punctuation and n't as tokens (sentiment cues)
    vec = CountVectorizer(ngram_range=(1, 2), token_pattern=r"[^ ]+", binary=True, min_df=1)
    X_train, X_dev = vec.fit_transform(train_x), vec.transform(dev_x)
    clf = LogisticRegression(C=C, max_iter=2000, random_state=seed)
    clf.fit(X_train, train_y)
    predictions = clf.predict(X_dev)  # (N_dev,) class ids
    report = classification_report(np.asarray(dev_y), predictions, ["negative", "positive"])
    return {"report": report, "predictions": predictions, "time_s": time.time() - t0, "features": X_train.shape[1]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("reports", nargs="*", type=Path, help="finetune.py report.json files to print alongside")
    p.add_argument("--data", type=Path, default=ROOT / "data" / "sst2", help="prepared SST-2 folder")
    p.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the logistic regression")
    args = p.parse_args(argv)
    if not (args.data / "train.tsv").is_file():
        print(f"error: {args.data}/train.tsv not found: python data/sst2/prepare.py (--source PATH offline)",
              file=sys.stderr)
        return 1
    rows = []
    for path in args.reports:
        try:
            r = json.loads(path.read_text())
            rows.append((str(path.parent.name), r["dev"]["accuracy"], r["dev"]["macro avg"]["f1-score"],
                         r.get("total_time_s"), f"{r.get('backbone_kind', '?')}, {r.get('init', '?')}"))
        except (OSError, ValueError, KeyError) as e:
            print(f"error: {path} is not a finetune.py report.json ({e})", file=sys.stderr)
            return 1
    bow = bow_baseline(args.data, args.C)
    rows.append(("bag-of-words LR", bow["report"]["accuracy"], bow["report"]["macro avg"]["f1-score"],
                 bow["time_s"], f"unigrams+bigrams, {bow['features']:,} features, C={args.C}"))
    print(f"{'run':<22} {'dev acc':>8} {'macro F1':>9} {'wall':>8}  what")
    for name, acc, f1, t, what in rows:
        wall = f"{t:.0f}s" if t is not None else "?"
        print(f"{name:<22} {acc:>8.4f} {f1:>9.4f} {wall:>8}  {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
