"""Fine-tune a pretrained language model for sentence classification (SST-2 sentiment by default). The loop is written out.

    python finetune.py --init out/imdb-mlm                                  # a train.py run (masked or causal LM)
    python finetune.py --init scratch --like out/imdb-mlm --out-dir out/sst2-scratch   # same model, random weights
    python finetune.py --init hf-gpt2:PATH --gpt2-ranks PATH/TO/gpt2.tiktoken   # a local HF GPT-2 folder
    python finetune.py --init hf-bert:PATH                                  # a local HF BERT folder (preset bert)
    python finetune.py --init out/imdb-mlm --freeze-backbone --out-dir out/sst2-probe  # linear probe
    python finetune.py --ckpt out/sst2 --predict "a gorgeous, witty film"    # label and probability
    python finetune.py --init out/imdb-mlm --train my.csv --dev my_dev.csv --text-column review --label-column stars
    python finetune.py --task token --init out/ud-ewt-mlm --data data/ud_ewt --out-dir out/ud-ewt-pos  # POS tagging
    python finetune.py --task token --init out/ud-ewt-mlm --train ner.txt --dev ner_dev.txt   # word<TAB>BIO-tag lines
    python finetune.py --ckpt out/ud-ewt-pos --predict "I saw her duck"      # one tag per word

"Pretrain, then fine-tune" (GPT-1: Radford et al. 2018, section 3.2; BERT: Devlin et al. 2019,
https://arxiv.org/abs/1810.04805, section 4.1): the pretrained backbone is kept, its LM head is dropped, and a
SequenceClassifier (minilm/classifier.py: pooling, Eq. 5.4, then dropout + linear, Eq. 5.5) is trained on the labels
with a small learning rate. Read it top to bottom beside lectures/07_finetuning.ipynb: settings, setup() (backbone,
head, data), resume(), evaluate_and_checkpoint(), then finetune() with one `for epoch: for batch:` loop written out,
its state in `loop_state` (Eq. 6.7 warmup + linear decay or Eq. 6.6 cosine -> forward/backward over grad_accum
micro-batches -> Eq. 6.8 clipping -> AdamW, Eqs. 6.2-6.5 -> evaluation on dev, best checkpoint, early stopping),
then the report (Eqs. 7.1-7.6, minilm/metrics.py), a confusion-matrix PNG and test-set predictions.

--task token tags every word instead (lectures/11_token_classification.ipynb): the same loop, checkpoints and resume,
with minilm/tagging.py's batches (a word's tag on one subword piece, Eq. 11.2), a TokenClassifier head (Eq. 11.1),
word accuracy, a per-tag table and, for BIO tags, entity P/R/F1 (Eqs. 11.3-11.7), beside the most-frequent-tag
baseline (Eq. 11.8).

Inputs: a masked-LM backbone reads `[cls] text [sep]` and pools the [cls] state (or the mean); a causal backbone reads
`text <eos>` and pools the last real token, the only one that has seen the whole text.
Outputs in --out-dir: best.pt (the evaluation --select keeps: the best dev metric, the lowest dev loss, or the last),
ckpt.pt (latest, for --resume), metrics.jsonl, report.json, confusion_matrix.png, dev_predictions.tsv, and
predictions.tsv for an unlabelled test split (--task token: dev_predictions.tsv and test_predictions.tsv as
`word<TAB>prediction<TAB>tag` lines, the baseline in report.json). --train-limit N trains on a stratified random
sample of N rows.
This file prints; the library (minilm/) only returns.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from minilm.checkpoint import (check_compatible, find_checkpoint, load_checkpoint, load_classifier, load_model,
                               prepare_out_dir, read_metrics, save_checkpoint, write_metrics)
from minilm.classifier import POOLINGS, SequenceClassifier, TokenClassifier
from minilm.cli import OneLineParser, add_dataclass_args, check_flags, dataclass_from_args, run_main, setting
from minilm.config import ModelConfig
from minilm.files import atomic_write_text
from minilm.labelled import ClassificationBatches, read_labelled, stratified_sample
from minilm.metrics import (classification_report, confusion_matrix, entity_scores, format_report, tag_report,
                            token_accuracy)
from minilm.model import CausalLM, MaskedLM
from minilm.plots import plot_confusion_matrix, plot_tag_confusion
from minilm.tagging import MostFrequentTag, TokenBatches, is_bio, predict_words, read_tagged, word_predictions
from minilm.tokenizer import GPT2Tokenizer, tokenizer_from_dict
from minilm.training import (autocast_context, clip_grad_norm, configure_optimizer, format_eta, get_lr,
                             get_lr_linear, make_grad_scaler, maybe_compile, resolve_device, resolve_dtype,
                             rng_state, set_rng_state, set_seed)
from minilm.wordpiece import WordPieceTokenizer

ROOT = Path(__file__).resolve().parent
HF_GPT2 = "hf-gpt2:"
HF_BERT = "hf-bert:"


# ------------------------------------------------------------------------------------------------------ settings
@dataclass
class FinetuneSettings:
    init: str = setting("", "what to start from: a train.py run directory or checkpoint file (masked or causal LM), "
                        "hf-gpt2:PATH (a local Hugging Face GPT-2 folder), hf-bert:PATH (a local Hugging Face BERT "
                        "folder with vocab.txt), or scratch (with --like)")
    like: str = setting("", "--init scratch: copy the architecture and tokenizer of this train.py run, not its weights")
    gpt2_ranks: str = setting("", "GPT-2 BPE ranks file for hf-gpt2 (else $MINILM_GPT2_RANKS or data/gpt2/gpt2.tiktoken)")
    task: str = setting("sequence", "sequence: one label per text; token: one tag per word (.conllu or two-column "
                        "`word tag` files, e.g. data/ud_ewt)", choices=["sequence", "token"])
    data: str = setting("data/sst2", "prepared labelled dataset folder (meta.json + train/dev/test .tsv)")
    train: str = setting("", "labelled training file (.tsv, .csv or .jsonl); default: from --data")
    dev: str = setting("", "labelled dev file (evaluated during training); default: from --data")
    test: str = setting("", "test file, labelled (reported) or not (predicted); default: from --data, if it has one")
    text_column: str = setting("", "column (or JSON key) holding the text; default: from --data's meta.json, or 'sentence'")
    label_column: str = setting("", "column (or JSON key) holding the label; default: from meta.json, or 'label'")
    labels: str = setting("", "comma-separated label set in class-id order (default: meta.json's, else the sorted "
                          "labels of the training file); a label outside it is an error")
    label_names: str = setting("", "comma-separated display names for the labels (default: meta.json's, else the labels)")
    max_train_rows: int = setting(0, "use only the first N training rows (0 = all): quick runs and tests")
    train_limit: int = setting(0, "train on a class-stratified random sample of N training rows, drawn with --seed "
                               "(0 = all): points of a learning curve (bench/label_efficiency.py)")
    out_dir: str = setting("out/sst2", "where best.pt, ckpt.pt, metrics.jsonl and the report go")
    device: str = setting("auto", "auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps")
    dtype: str = setting("auto", "autocast dtype: auto (bf16 where fast), float32, bfloat16, float16",
                         choices=["auto", "float32", "bfloat16", "float16"])
    compile: str = setting("auto", "torch.compile: auto (on for CUDA), on, off", choices=["auto", "on", "off"])
    pooling: str = setting("auto", "sentence vector (Eq. 5.4): auto (cls for a masked LM, last for a causal LM), cls, "
                           "mean or last", choices=["auto", *POOLINGS])
    piece: str = setting("auto", "--task token: the subword piece that carries a word's tag (Eq. 11.2): auto (first "
                         "for a masked LM, Devlin et al.; last for a causal LM, the piece that has read the word)",
                         choices=["auto", "first", "last"])
    head_dropout: float = setting(0.1, "dropout before the linear head (BERT: 0.1)")
    freeze_backbone: bool = setting(False, "train the head only (a linear probe); the backbone stays bit-identical")
    max_len: int = setting(0, "longest input in tokens, special tokens included (0 = the model's max_seq_len)")
    no_truncate: bool = setting(False, "a text longer than --max-len is an error instead of being cut")
    epochs: int = setting(1, "passes over the training set")
    max_steps: int = setting(0, "stop after this many optimizer steps in total (0 = run all epochs)")
    stop_after: int = setting(0, "stop at this step after writing a checkpoint (0 = off); --resume continues: the "
                              "schedule still follows epochs / max_steps")
    batch_size: int = setting(32, "sentences per micro-batch")
    grad_accum: int = setting(1, "micro-batches per optimizer step")
    lr: float = setting(5e-4, "peak learning rate")
    min_lr: float = setting(0.0, "learning rate at the end of the decay (BERT: 0)")
    schedule: str = setting("linear", "decay after warmup: linear (Eq. 6.7, BERT) or cosine (Eq. 6.6)",
                            choices=["linear", "cosine"])
    warmup: float = setting(0.06, "warmup as a fraction of all optimizer steps (RoBERTa: 0.06)")
    weight_decay: float = setting(0.01, "AdamW decoupled weight decay on >= 2-D weights (BERT: 0.01)")
    beta1: float = setting(0.9, "AdamW beta1")
    beta2: float = setting(0.98, "AdamW beta2 (RoBERTa fine-tuning: 0.98)")
    grad_clip: float = setting(1.0, "clip the global gradient norm to this (0 = off)")
    eval_interval: int = setting(500, "evaluate on dev every N optimizer steps (0 = at the end of every epoch only)")
    metric: str = setting("accuracy", "dev metric that picks best.pt and drives early stopping",
                          choices=["accuracy", "macro_f1", "entity_f1"])
    select: str = setting("metric", "what best.pt is: the evaluation with the best dev --metric (metric), the lowest "
                          "dev loss (loss), or the last one (last: nothing is chosen on dev, so the dev score is "
                          "an honest estimate; dev is then evaluated only every --eval-interval steps and at the end)",
                          choices=["metric", "loss", "last"])
    patience: int = setting(0, "stop after this many evaluations without a better dev metric (0 = never)")
    log_interval: int = setting(100, "print a progress line every N optimizer steps")
    seed: int = setting(1337, "random seed (head initialisation, data order, dropout)")
    resume: bool = setting(False, "continue the run in --out-dir exactly where it stopped")
    overwrite: bool = setting(False, "start afresh even if --out-dir already holds a run")
    ckpt: str = setting("", "prediction mode: a fine-tuned run directory or checkpoint (best.pt first)")
    predict: str = setting("", "with --ckpt: classify this text and print label and probability")
    predict_file: str = setting("", "with --ckpt: classify every line of this .txt (or the text column of a .tsv/.csv/.jsonl)")
    debug: bool = setting(False, "show full tracebacks instead of one-line errors")


# Named presets. "sst2" (the default) is the recipe's fine-tuning budget, the same for every minilm --init. It
# keeps the last checkpoint (--select last): the best of five evaluations on SST-2's 872 dev sentences (one standard
# error ~1.4 points) would flatter the luckiest run, and the schedule is fixed in advance (issue 18).
PRESETS: dict[str, dict] = {
    "sst2": dict(epochs=1, batch_size=32, lr=5e-4, warmup=0.06, eval_interval=500, log_interval=100, select="last"),
    "tiny": dict(epochs=1, batch_size=16, lr=1e-3, max_train_rows=300, log_interval=5, out_dir="out/sst2-tiny"),
    # BERT's own fine-tuning recipe, the default for --init hf-bert: batch 32, lr 2e-5, 3 epochs (Devlin et al. 2019,
    # appendix A.3, from their grid {16, 32} x {5e-5, 3e-5, 2e-5} x {2, 3, 4}); Adam beta2 0.999 and weight decay
    # 0.01 (appendix A.2); linear warmup over the first 10% of steps (warmup_proportion=0.1 in Google's
    # run_classifier.py), then linear decay to 0.
    "bert": dict(epochs=3, batch_size=32, lr=2e-5, warmup=0.1, beta2=0.999, weight_decay=0.01, eval_interval=500,
                 log_interval=100, out_dir="out/sst2-bert"),
}
DEFAULT_PRESET = "sst2"


def parse_settings(argv=None) -> tuple[FinetuneSettings, str]:
    p = OneLineParser(prog="finetune.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help=f"named settings (default: bert for --init hf-bert, else {DEFAULT_PRESET}); flags override it")
    add_dataclass_args(p, FinetuneSettings, group_title="fine-tuning")
    args = p.parse_args(argv)
    preset = args.preset or ("bert" if (args.init or "").startswith(HF_BERT) else DEFAULT_PRESET)
    return dataclass_from_args(FinetuneSettings, args, PRESETS[preset]), preset


def check_settings(settings: FinetuneSettings) -> None:
    check_flags(settings, positive=["epochs", "batch_size", "grad_accum", "log_interval"],
                non_negative=["max_train_rows", "train_limit", "max_len", "max_steps", "stop_after", "eval_interval",
                              "patience", "weight_decay", "grad_clip", "min_lr"],
                rules=[(settings.lr > 0 and settings.min_lr <= settings.lr,
                        f"need --lr > 0 and --min-lr <= --lr, got lr={settings.lr}, min_lr={settings.min_lr}"),
                       (0 <= settings.warmup < 1,
                        f"--warmup is a fraction of the steps in [0, 1), got {settings.warmup}"),
                       (0 <= settings.head_dropout < 1,
                        f"--head-dropout must be in [0, 1), got {settings.head_dropout}"),
                       (0 <= settings.beta1 < 1 and 0 <= settings.beta2 < 1,
                        f"--beta1/--beta2 must be in [0, 1), got {settings.beta1}, {settings.beta2}"),
                       (not (settings.resume and settings.overwrite),
                        "--resume and --overwrite contradict each other: pick one"),
                       (not (settings.train_limit and settings.max_train_rows),
                        "--train-limit (a stratified random sample) and --max-train-rows (the first rows) are two "
                        "ways to shrink the training set: pass one"),
                       (not (settings.select == "last" and settings.patience),
                        "--patience stops on dev evaluations without a gain, and --select last never looks for one: "
                        "use --select metric or loss with --patience"),
                       (settings.task == "sequence" or not settings.train_limit,
                        "--train-limit draws a class-stratified sample of sentences: it is for --task sequence"),
                       (settings.task == "sequence" or settings.pooling == "auto",
                        "--pooling is for --task sequence: a token classifier reads every position"),
                       (settings.task == "token" or settings.piece == "auto", "--piece needs --task token"),
                       (settings.task == "token" or settings.metric != "entity_f1", "--metric entity_f1 needs --task "
                        "token (and BIO tags)")])


# ------------------------------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    settings, preset = parse_settings(argv)
    predicting = settings.ckpt or settings.predict or settings.predict_file
    return run_main("finetune.py", lambda: predict(settings) if predicting else finetune(settings, preset),
                    settings.debug)


# ------------------------------------------------------------------------------------------------------ model
def load_backbone(init: str, like: str = "", gpt2_ranks: str = "") -> tuple[torch.nn.Module, object, str]:
    """(language model, tokenizer, description) for --init; the LM's .backbone is what the classifier keeps."""
    if not init:
        raise ValueError("--init is required: a train.py run directory (e.g. out/imdb-mlm), hf-gpt2:PATH, "
                         "hf-bert:PATH, or scratch --like DIR (or --ckpt DIR --predict TEXT to use a fine-tuned model)")
    if init.startswith(HF_GPT2):
        path = Path(init[len(HF_GPT2):])
        if not path.is_dir():
            raise FileNotFoundError(f"--init {init}: {path} is not a directory; pass hf-gpt2:PATH with the folder "
                                    f"written by transformers' GPT2LMHeadModel.save_pretrained")
        return CausalLM.from_pretrained(path), GPT2Tokenizer(gpt2_ranks or None), f"Hugging Face GPT-2 {path}"
    if init.startswith(HF_BERT):
        path = Path(init[len(HF_BERT):])
        if not path.is_dir():
            raise FileNotFoundError(f"--init {init}: {path} is not a directory; pass hf-bert:PATH with the folder of a "
                                    f"Hugging Face BERT checkpoint (config.json, model.safetensors, vocab.txt)")
        tokenizer = WordPieceTokenizer.from_pretrained(path)  # first: a missing vocab.txt is the likelier mistake
        return MaskedLM.from_pretrained(path), tokenizer, f"Hugging Face BERT {path}"
    if init == "scratch":
        if not like:
            raise ValueError("--init scratch needs --like DIR: the train.py run whose architecture and tokenizer "
                             "to copy (its weights are not used)")
        lm, tokenizer, meta = load_model(like)
        model = type(lm)(lm.config)  # the same architecture, fresh GPT-2 initialisation (Eq. 5.6)
        return model, tokenizer, f"random weights shaped like {like} ({meta['kind']})"
    if like:
        raise ValueError("--like only goes with --init scratch")
    if not Path(init).exists():
        raise FileNotFoundError(f"--init {init}: no such directory or file. Use a train.py run directory "
                                f"(e.g. out/imdb-mlm), a checkpoint file, hf-gpt2:PATH, or scratch --like DIR")
    model, tokenizer, meta = load_model(init)
    return model, tokenizer, f"{meta['kind']} checkpoint {find_checkpoint(init)}"


class CausalInputs:
    """The tokenizer as ClassificationBatches sees it for a causal backbone: no [cls] at the start (the model never
    saw one there) and <eos> at the end, so the last token, which "last" pooling reads, has seen the whole text."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.cls_id, self.sep_id, self.pad_id = None, tokenizer.eos_id, tokenizer.pad_id

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)


def input_view(tokenizer, causal: bool):
    """What ClassificationBatches encodes with: `[cls] text [sep]` (masked LM) or `text <eos>` (causal LM)."""
    return CausalInputs(tokenizer) if causal else tokenizer


# ------------------------------------------------------------------------------------------------------ data
def resolve_data(settings: FinetuneSettings) -> dict:
    """Files, columns and label set, from --data's meta.json unless the flags name them."""
    meta = {}
    data_dir = Path(settings.data)
    if not data_dir.is_absolute() and not data_dir.exists() and (ROOT / data_dir).exists():
        data_dir = ROOT / data_dir
    if not settings.train:
        if not (data_dir / "meta.json").is_file():
            hint = (" (SST-2: python data/sst2/prepare.py, or --source PATH for a local copy of GLUE's SST-2)"
                    if data_dir.name == "sst2" else "")
            raise FileNotFoundError(f"{data_dir}/meta.json not found: prepare the dataset first{hint}, or pass "
                                    f"--train FILE --dev FILE")
        meta = json.loads((data_dir / "meta.json").read_text())
    files = {k: data_dir / v for k, v in meta.get("files", {}).items()}
    for split in ("train", "dev", "test"):
        if getattr(settings, split):
            files[split] = Path(getattr(settings, split))
        elif settings.train:
            files.pop(split, None)  # explicit files: only those the flags name
    if "train" not in files or "dev" not in files:
        raise ValueError("need a training and a dev file: --train FILE --dev FILE (or --data DIR with meta.json)")
    labels = settings.labels.split(",") if settings.labels else meta.get("labels")
    names = (settings.label_names.split(",") if settings.label_names
             else (meta.get("label_names") if not settings.labels else None))
    return {"files": files, "text_column": settings.text_column or meta.get("text_column", "sentence"),
            "label_column": settings.label_column or meta.get("label_column", "label"),
            "labels": labels, "names": names}


def has_column(path: Path, column: str) -> bool:
    """Whether a .tsv/.csv header (or the first JSON line) names `column`: a test split may be unlabelled."""
    with open(path, encoding="utf-8") as f:
        first = f.readline().rstrip("\n")
    if path.suffix.lower() in (".jsonl", ".json"):
        try:
            return column in json.loads(first)
        except (json.JSONDecodeError, TypeError):
            return False
    return column in first.split("\t" if path.suffix.lower() == ".tsv" else ",")


def limit_train(texts: list[str], y: list[int], settings: FinetuneSettings, names: list[str]):
    """--train-limit N: (texts, labels, record) of a class-stratified sample of N rows drawn with --seed
    (minilm/labelled.py, stratified_sample: per-class counts proportional, largest-remainder rounding). The record
    goes into every checkpoint and report.json, and --resume checks that it draws the same rows."""
    n = settings.train_limit
    if n > len(y):
        raise ValueError(f"--train-limit {n} is more than the {len(y):,} training rows: pass a smaller N, or 0 for "
                         f"all of them")
    rows = stratified_sample(y, n, settings.seed)
    texts, y = [texts[i] for i in rows], [y[i] for i in rows]
    counts = np.bincount(y, minlength=len(names))
    record = {"limit": n, "seed": settings.seed, "class_counts": {name: int(c) for name, c in zip(names, counts)},
              "rows_sha256": hashlib.sha256(np.asarray(rows, dtype=np.int64).tobytes()).hexdigest()}
    return texts, y, record


def make_batches(texts, labels, inputs, settings: FinetuneSettings, max_len: int, shuffle: bool, what: str,
                 device: str, batch_size: int | None = None) -> ClassificationBatches:
    """ClassificationBatches, after reporting (or refusing, with --no-truncate) texts longer than max_len: the
    boundary where a user's text meets the model's context (max_len <= max_seq_len, checked in setup)."""
    batches = ClassificationBatches(texts, labels, inputs, batch_size or settings.batch_size, max_len, shuffle=shuffle,
                                    seed=settings.seed, device=device, bucket=50 if shuffle else 0)  # less padding
    if batches.n_truncated:
        specials = (inputs.cls_id is not None) + (inputs.sep_id is not None)
        first = next(i for i, t in enumerate(texts) if len(inputs.encode(t)) + specials > max_len)
        if settings.no_truncate:
            raise ValueError(f"{batches.n_truncated} of {len(texts)} {what} texts are longer than max_len={max_len} "
                             f"tokens (the first is row {first + 1}: {texts[first][:60]!r}...); drop --no-truncate "
                             f"to cut them, or shorten them")
        print(f"note: {batches.n_truncated} of {len(texts):,} {what} texts are longer than {max_len} tokens and were "
              f"cut (first: row {first + 1}); --no-truncate makes this an error")
    return batches


@torch.no_grad()
def predict_proba(model, batches: ClassificationBatches, ctx) -> np.ndarray:
    """Class probabilities (N, K) for every row, in file order (batches must not shuffle)."""
    was_training = model.training
    model.eval()
    out = []
    for idx, mask, _ in batches:
        with ctx:
            logits, _ = model(idx, mask)  # (B, K)
        out.append(F.softmax(logits.float(), dim=-1).cpu())
    model.train(was_training)
    return torch.cat(out).numpy()  # (N, K)


def dev_metrics(probs: np.ndarray, y: list[int], names: list[str]) -> dict:
    pred = probs.argmax(axis=1)
    report = classification_report(np.asarray(y), pred, names)
    p_true = probs[np.arange(len(y)), y]
    return {"accuracy": report["accuracy"], "macro_f1": report["macro avg"]["f1-score"],
            "loss": float(-np.log(np.clip(p_true, 1e-12, None)).mean()), "report": report}


def make_token_batches(words, tags, inputs, settings: FinetuneSettings, max_len: int, shuffle: bool, what: str,
                       device: str, piece: str, batch_size: int | None = None) -> TokenBatches:
    """TokenBatches (Eq. 11.2), after reporting (or refusing, with --no-truncate) sentences longer than max_len."""
    batches = TokenBatches(words, tags, inputs, batch_size or settings.batch_size, max_len, shuffle=shuffle,
                           seed=settings.seed, piece=piece, device=device, bucket=50 if shuffle else 0)
    if batches.truncated:
        first, n = batches.truncated[0], batches.n_truncated
        if settings.no_truncate:
            raise ValueError(f"{n} of {len(words)} {what} sentences are longer than max_len={max_len} tokens (the "
                             f"first is sentence {first + 1}: {' '.join(words[first])[:60]!r}...); drop --no-truncate "
                             f"to cut them, or split them")
        cut = sum(k - len(p) for k, p in zip(batches.n_words, batches.positions))
        fate = "are not trained on" if shuffle else "are predicted as the most frequent tag"  # shuffle: training
        print(f"note: {n} of {len(words):,} {what} sentences are longer than {max_len} tokens and were cut (first: "
              f"sentence {first + 1}); the {cut:,} words past the cut {fate}; --no-truncate makes this an error")
    return batches


def score_tags(y, pred, names: list[str]) -> dict:
    """Word accuracy (Eq. 11.3), the per-tag table (Eqs. 7.3-7.6) and, for BIO tags, entity P/R/F1 (Eqs. 11.5-11.7)."""
    scores = {"accuracy": token_accuracy(y, pred), "tags": tag_report(y, pred, names)}
    if is_bio(names):
        scores["entities"] = entity_scores([[names[t] for t in s] for s in y], [[names[t] for t in s] for s in pred])
    return scores


def tag_metrics(log_probs: list[np.ndarray], y, n_words: list[int], names: list[str], fill: int) -> dict:
    """Dev scores of a tagger: accuracy, macro F1 over tags, entity F1 (BIO only) and the loss per word read."""
    pred = word_predictions(log_probs, n_words, fill)
    scores = score_tags(y, pred, names)
    nll = np.concatenate([-lp[np.arange(len(lp)), t[: len(lp)]] for lp, t in zip(log_probs, y)])  # (words read,)
    dev = {"accuracy": scores["accuracy"], "macro_f1": scores["tags"]["macro avg"]["f1-score"],
           "loss": float(nll.mean())}
    if "entities" in scores:
        dev["entity_f1"] = scores["entities"]["micro avg"]["f1-score"]
    return dev


# ------------------------------------------------------------------------------------------------------ setup
@dataclass
class Run:
    """Everything setup() builds and the loop uses; the loop's changing state lives in `loop_state` instead."""
    settings: FinetuneSettings
    device: str
    ctx: object  # the autocast context
    out_dir: Path
    source: str  # what the backbone came from (--init, or the resumed run's record of it)
    config: ModelConfig
    inputs: object  # what ClassificationBatches encodes with (input_view)
    max_len: int
    data: dict  # resolve_data(): files, columns, label set (+ --task token: dev_words, the baseline)
    names: list[str]  # display names of the labels, in class-id order
    n_train: int  # training rows used
    dev_y: list  # labels, or (--task token) tag ids per sentence
    train_batches: ClassificationBatches  # TokenBatches for --task token
    dev_batches: ClassificationBatches
    raw_model: SequenceClassifier | TokenClassifier  # saved and evaluated; the compiled wrapper in `model` only trains
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    steps_per_epoch: int
    max_steps: int
    run_meta: dict  # what every checkpoint records about the run


def build_backbone(settings: FinetuneSettings, ckpt_file: Path):
    """(language model, tokenizer, source, checkpoint): from --init, or on --resume the shape ckpt.pt records (its
    weights are loaded by resume()); checkpoint is ckpt.pt's (tensors, meta) on --resume, else None."""
    if not settings.resume:
        return (*load_backbone(settings.init, settings.like, settings.gpt2_ranks), None)
    tensors, meta = load_checkpoint(ckpt_file)
    if meta.get("kind") != "classifier":
        raise ValueError(f"{ckpt_file} is not a finetune.py checkpoint (kind {meta.get('kind')!r})")
    lm = (MaskedLM if meta["backbone_kind"] == "mlm" else CausalLM)(ModelConfig.from_dict(meta["model_config"]))
    return lm, tokenizer_from_dict(meta["tokenizer"], settings.gpt2_ranks or None), meta["init"], (tensors, meta)


def setup(settings: FinetuneSettings, preset: str) -> tuple[Run, tuple | None]:
    """Device, run directory, backbone + a fresh head, data and optimizer: (run, ckpt.pt's contents on --resume)."""
    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    set_seed(settings.seed)
    out_dir = prepare_out_dir(settings.out_dir, settings.resume, settings.overwrite, "fine-tune")
    lm, tokenizer, source, checkpoint = build_backbone(settings, out_dir / "ckpt.pt")
    config = lm.config
    inputs = input_view(tokenizer, config.causal)
    max_len = settings.max_len or config.max_seq_len
    if max_len > config.max_seq_len:
        raise ValueError(f"--max-len {max_len} exceeds the model's context max_seq_len={config.max_seq_len}")

    data = resolve_data(settings)
    piece = settings.piece if settings.piece != "auto" else ("last" if config.causal else "first")
    if settings.task == "token":
        train_batches, dev_batches, dev_y, names, n_train = tagged_data(settings, data, inputs, max_len, device, piece)
        model = TokenClassifier.from_lm(lm, len(names), settings.head_dropout)
    else:
        train_batches, dev_batches, dev_y, names, n_train = text_data(settings, data, inputs, max_len, device)
        model = SequenceClassifier.from_lm(lm, len(names), None if settings.pooling == "auto" else settings.pooling,
                                           settings.head_dropout)
    labels, text_col, label_col = data["labels"], data["text_column"], data["label_column"]
    train_subset = data.get("train_subset")  # --train-limit: which rows (sequence task only)
    if settings.freeze_backbone:
        for p in model.backbone.parameters():
            p.requires_grad_(False)
    model.to(device)
    optimizer = configure_optimizer(model, settings.lr, settings.weight_decay, (settings.beta1, settings.beta2),
                                    device_type=device.split(":")[0])
    steps_per_epoch = math.ceil(len(train_batches) / settings.grad_accum)
    run_meta = {"kind": "classifier", "backbone_kind": "clm" if config.causal else "mlm",
                "model_config": config.to_dict(), "tokenizer": tokenizer.to_dict(), "labels": labels,
                "label_names": names, "n_classes": len(labels), "pooling": model.pooling,
                "head_dropout": settings.head_dropout, "max_len": max_len,
                "input_format": "text <eos>" if config.causal else "[cls] text [sep]", "init": source,
                "text_column": text_col, "label_column": label_col, "preset": preset, "task": settings.task,
                "train_subset": train_subset, "select": settings.select, "settings": dataclasses.asdict(settings)}
    if settings.task == "token":
        run_meta.update(piece=piece, fill_tag=data["baseline"].overall,
                        input_format="words <eos>" if config.causal else "[cls] words [sep]")
    run = Run(settings, device, autocast_context(device, dtype), out_dir, source, config, inputs, max_len, data, names,
              n_train, dev_y, train_batches, dev_batches, raw_model=model, model=model, optimizer=optimizer,
              scaler=make_grad_scaler(device, dtype), steps_per_epoch=steps_per_epoch,
              max_steps=min(settings.max_steps or math.inf, settings.epochs * steps_per_epoch), run_meta=run_meta)
    return run, checkpoint


def text_data(settings: FinetuneSettings, data: dict, inputs, max_len: int, device: str) -> tuple:
    """Sentence classification: (train batches, dev batches, dev labels, label names, training rows)."""
    text_col, label_col = data["text_column"], data["label_column"]
    train_texts, train_y, labels = read_labelled(data["files"]["train"], text_col, label_col, data["labels"])
    names = data["names"] or labels
    if len(names) != len(labels):
        raise ValueError(f"{len(names)} label names {names} for {len(labels)} labels {labels}")
    if settings.max_train_rows:
        train_texts, train_y = train_texts[:settings.max_train_rows], train_y[:settings.max_train_rows]
    if settings.train_limit:  # data gains the record of which rows: checkpoints and report.json keep it
        train_texts, train_y, data["train_subset"] = limit_train(train_texts, train_y, settings, names)
    dev_texts, dev_y, _ = read_labelled(data["files"]["dev"], text_col, label_col, labels)
    data["labels"] = labels
    train_batches = make_batches(train_texts, train_y, inputs, settings, max_len, True, "train", device)
    dev_batches = make_batches(dev_texts, dev_y, inputs, settings, max_len, False, "dev", device,
                               2 * settings.batch_size)
    return train_batches, dev_batches, dev_y, names, len(train_texts)


def tagged_data(settings: FinetuneSettings, data: dict, inputs, max_len: int, device: str, piece: str) -> tuple:
    """Tagging: (train batches, dev batches, dev tag ids, tag names, training sentences); data gains the dev words
    and the most-frequent-tag baseline (Eq. 11.8), learnt from the training sentences used."""
    train_words, train_y, labels = read_tagged(data["files"]["train"], data["labels"])
    if settings.max_train_rows:
        train_words, train_y = train_words[:settings.max_train_rows], train_y[:settings.max_train_rows]
    dev_words, dev_y, _ = read_tagged(data["files"]["dev"], labels)
    if settings.metric == "entity_f1" and not is_bio(labels):
        raise ValueError(f"--metric entity_f1 needs BIO tags (O, B-TYPE, I-TYPE); the tags are {labels}")
    data.update(labels=labels, dev_words=dev_words, baseline=MostFrequentTag(train_words, train_y))
    train_batches = make_token_batches(train_words, train_y, inputs, settings, max_len, True, "train", device, piece)
    dev_batches = make_token_batches(dev_words, dev_y, inputs, settings, max_len, False, "dev", device, piece,
                                     2 * settings.batch_size)
    return train_batches, dev_batches, dev_y, labels, len(train_words)


# ------------------------------------------------------------------------------------------------------ checkpoints
def resume(run: Run, checkpoint: tuple) -> tuple[dict, list[dict]]:
    """(loop_state, metrics records) of the run in --out-dir; weights, optimizer, RNG and data order continue."""
    tensors, meta = checkpoint
    keys = ["model_config", "labels", "pooling", "max_len", "task"]
    if run.run_meta["train_subset"] or meta.get("train_subset"):  # the same --train-limit rows (older runs: none)
        keys.append("train_subset")
    if "select" in meta:  # best.pt's rule cannot change mid-run (older runs chose by the dev metric)
        keys.append("select")
    # checkpoints from before --task were all sequence classifiers
    check_compatible({"task": "sequence", **meta}, {k: run.run_meta[k] for k in keys})
    run.raw_model.load_state_dict(tensors["model"])
    run.optimizer.load_state_dict(tensors["optimizer"])
    run.scaler.load_state_dict(tensors["scaler"])
    set_rng_state(tensors["rng"])  # dropout masks continue exactly
    batches = run.train_batches
    batches.load_state_dict(meta["batches"])  # data order continues mid-epoch
    if batches.position >= len(batches):  # saved at the end of an epoch: the next one starts
        batches.load_state_dict({**meta["batches"], "epoch": meta["batches"]["epoch"] + 1, "position": 0})
    # checkpoints written before loop_state existed kept its fields at the top level of meta
    loop_state = meta.get("loop_state") or {k: meta[k] for k in ("step", "best", "bad_evals")}
    loop_state = {**loop_state, "last_saved": loop_state["step"]}
    print(f"resuming {run.out_dir} at step {loop_state['step']}, epoch {batches.epoch} (best.pt by --select "
          f"{run.settings.select}: score {loop_state['best']:.4f})")
    return loop_state, read_metrics(run.out_dir, before_step=loop_state["step"] + 1)  # later lines are redone


def save(run: Run, path: Path, loop_state: dict, full: bool, extra: dict) -> None:
    tensors = {"model": run.raw_model.state_dict()}
    if full:  # what an exact resume needs; best.pt only needs the weights
        tensors.update(optimizer=run.optimizer.state_dict(), scaler=run.scaler.state_dict(), rng=rng_state())
    save_checkpoint(path, tensors, {**run.run_meta, **extra, "step": loop_state["step"], "loop_state": loop_state,
                                    "batches": run.train_batches.state_dict()})


def diverged(run: Run, loop_state: dict, what: str) -> ValueError:
    good = (f"the last good checkpoint is {run.out_dir / 'ckpt.pt'} (step {loop_state['last_saved']})"
            if loop_state["last_saved"] is not None else "no checkpoint was written yet")
    return ValueError(f"{what} at step {loop_state['step']}: training diverged and nothing was saved; {good}. "
                      f"Resume from it (or restart) with a lower --lr or a --grad-clip")


def evaluate_and_checkpoint(run: Run, loop_state: dict, records: list[dict]) -> bool:
    """Dev metrics, best.pt when they improve, ckpt.pt always; True when early stopping says stop."""
    if run.settings.task == "token":
        dev = tag_metrics(predict_words(run.raw_model, run.dev_batches, run.ctx), run.dev_y, run.dev_batches.n_words,
                          run.names, run.run_meta["fill_tag"])
    else:
        dev = dev_metrics(predict_proba(run.raw_model, run.dev_batches, run.ctx), run.dev_y, run.names)
    if not math.isfinite(dev["loss"]):  # never overwrite a good checkpoint with diverged weights
        raise diverged(run, loop_state, f"dev loss is {dev['loss']}")
    score = selection_score(dev, run.settings.select, run.settings.metric, loop_state["step"])
    improved = score > loop_state["best"]
    if improved:
        loop_state.update(best=score, bad_evals=0)
    else:
        loop_state["bad_evals"] += 1
    step = loop_state["step"]
    entity = {"entity_f1": dev["entity_f1"]} if "entity_f1" in dev else {}  # BIO tags only
    records.append({"step": step, "epoch": run.train_batches.epoch, "dev_loss": dev["loss"],
                    "dev_accuracy": dev["accuracy"], "dev_macro_f1": dev["macro_f1"],
                    **{f"dev_{k}": v for k, v in entity.items()}})
    gain = (("kept (--select last)" if run.settings.select == "last" else "best so far") if improved
            else f"no gain for {loop_state['bad_evals']} eval(s)")
    entity_text = f" | entity F1 {dev['entity_f1']:.4f}" if entity else ""
    print(f"step {step:>5} | dev loss {dev['loss']:.4f} | accuracy {dev['accuracy']:.4f} | macro F1 "
          f"{dev['macro_f1']:.4f}{entity_text} | {gain}")
    if improved:
        save(run, run.out_dir / "best.pt", loop_state, False,
             {"dev": {k: dev[k] for k in ("accuracy", "macro_f1", "loss", *entity)}})
    write_metrics(run.out_dir, records)  # before ckpt.pt: a crash between the two then loses no records on --resume
    save(run, run.out_dir / "ckpt.pt", loop_state, True, {})
    loop_state["last_saved"] = step
    return run.settings.patience > 0 and loop_state["bad_evals"] >= run.settings.patience


def selection_score(dev: dict, select: str, metric: str, step: int) -> float:
    """What best.pt maximises. SST-2's dev set has 872 sentences (one standard error of an accuracy near 0.8 is
    ~1.4 points), so the best of many dev evaluations flatters the run with the luckiest one: --select loss
    uses the dev loss, which averages the probabilities of all 872 answers rather than counting the right ones, and
    --select last (the step: every evaluation wins) chooses nothing on dev at all, so after a fixed schedule the dev
    score is what fresh sentences would give. --select metric (the default) is the best dev --metric."""
    return {"metric": dev[metric], "loss": -dev["loss"], "last": float(step)}[select]


def train_mode(run: Run) -> None:
    run.raw_model.train()
    if run.settings.freeze_backbone:
        run.raw_model.backbone.eval()  # a linear probe reads fixed features: no dropout inside the frozen backbone


# ------------------------------------------------------------------------------------------------------ fine-tuning
def finetune(settings: FinetuneSettings, preset: str) -> int:
    check_settings(settings)
    t_begin = time.time()
    run, checkpoint = setup(settings, preset)
    # the loop's state, in one place and saved in every checkpoint (nanochat's loop_state)
    loop_state, records = {"step": 0, "best": -math.inf, "bad_evals": 0, "last_saved": None}, []
    if settings.resume:
        loop_state, records = resume(run, checkpoint)
    raw_model, optimizer, scaler, batches = run.raw_model, run.optimizer, run.scaler, run.train_batches
    run.model = model = maybe_compile(raw_model, settings.compile, run.device)
    warmup_steps, max_steps = int(settings.warmup * run.max_steps), run.max_steps
    schedule = get_lr_linear if settings.schedule == "linear" else get_lr  # Eq. 6.7 / Eq. 6.6
    n_train_params = sum(p.numel() for p in raw_model.parameters() if p.requires_grad)
    reads = (f"each word's tag on its {run.run_meta['piece']} piece" if settings.task == "token"
             else f"pooling {raw_model.pooling}")
    print(f"{run.source} | {run.run_meta['backbone_kind']} backbone, {reads}, {len(run.names)} "
          f"classes {run.names} | {n_train_params / 1e6:.2f}M trainable parameters"
          f"{' (backbone frozen)' if settings.freeze_backbone else ''} | {run.device}, "
          f"{str(resolve_dtype(settings.dtype, run.device)).split('.')[1]} | {run.n_train:,} train / "
          f"{len(run.dev_y):,} dev rows | {max_steps} steps ({run.steps_per_epoch}/epoch)")

    # ---- the loop -------------------------------------------------------------------------------------------------
    train_mode(run)
    t_start, step_start = time.time(), loop_state["step"]
    stop = loop_state["step"] >= max_steps
    loss_sum, micro = 0.0, 0
    for epoch in range(batches.epoch, settings.epochs):
        if stop:
            break
        n_batches = len(batches)
        for idx, mask, y in batches:  # resumes mid-epoch where the checkpoint left off
            lr = schedule(loop_state["step"], settings.lr, settings.min_lr, warmup_steps, max_steps)  # Eq. 6.7 (or 6.6)
            with run.ctx:
                _, loss = model(idx, mask, y)  # Eq. 5.5: cross-entropy of the head's logits
            # the last group of an epoch may hold fewer micro-batches: average over what it holds
            group = min(settings.grad_accum, n_batches - (batches.position - 1 - micro))
            scaler.scale(loss / group).backward()
            loss_sum += float(loss.detach())
            micro += 1
            if micro < group:
                continue
            for g in optimizer.param_groups:
                g["lr"] = lr
            if settings.grad_clip > 0:  # Eq. 6.8, on the true (unscaled) gradients
                clip_grad_norm(raw_model.parameters(), settings.grad_clip, optimizer, scaler)
            scaler.step(optimizer)  # Eqs. 6.2-6.5
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            loss_value, loss_sum, micro = loss_sum / group, 0.0, 0
            loop_state["step"] += 1
            step = loop_state["step"]
            if not math.isfinite(loss_value):
                raise diverged(run, loop_state, f"loss is {loss_value}")
            records.append({"step": step, "epoch": epoch, "loss": loss_value, "lr": lr})
            if step % settings.log_interval == 0:
                elapsed = time.time() - t_start
                eta = (max_steps - step) * elapsed / max(step - step_start, 1)
                print(f"step {step:>5} | epoch {epoch} | loss {loss_value:.4f} | lr {lr:.2e} | "
                      f"{format_eta(elapsed)} elapsed, {format_eta(eta)} left")
            # once in a while, at the end of an epoch (unless --select last: nothing is chosen there) and at the end:
            # evaluate on dev and checkpoint
            end_of_epoch = batches.position >= n_batches and settings.select != "last"
            stop = step >= max_steps or (settings.stop_after > 0 and step == settings.stop_after)
            if (settings.eval_interval and step % settings.eval_interval == 0) or end_of_epoch or stop:
                stop = evaluate_and_checkpoint(run, loop_state, records) or stop
                train_mode(run)
            if stop:
                break
    write_metrics(run.out_dir, records)
    if settings.stop_after and loop_state["step"] == settings.stop_after and loop_state["step"] < max_steps:
        print(f"stopped at step {loop_state['step']} (--stop-after); continue with --resume")
        return 0
    report(run, loop_state, time.time() - t_start, t_begin)
    return 0


def report(run: Run, loop_state: dict, train_time: float, t_begin: float) -> None:
    """best.pt on dev (and test): report.json, a confusion-matrix PNG, dev and test predictions."""
    if run.settings.task == "token":
        return report_tags(run, loop_state, train_time, t_begin)
    settings, out_dir, names, data = run.settings, run.out_dir, run.names, run.data
    model, _, best_meta = load_classifier(out_dir / "best.pt", run.device, settings.gpt2_ranks or None)
    dev_probs = predict_proba(model, run.dev_batches, run.ctx)
    dev_pred = dev_probs.argmax(axis=1)
    summary = {"dev": classification_report(np.asarray(run.dev_y), dev_pred, names), "best_step": best_meta["step"],
               "metric": settings.metric, "init": run.source, "backbone_kind": run.run_meta["backbone_kind"],
               "pooling": run.raw_model.pooling, "train_rows": run.n_train, "select": settings.select,
               "train_subset": run.run_meta["train_subset"], "steps": loop_state["step"],
               "train_time_s": train_time, "total_time_s": time.time() - t_begin}
    print(f"\nbest.pt (--select {settings.select}): step {best_meta['step']} (dev {settings.metric} "
          f"{best_meta['dev'][settings.metric]:.4f}, loss {best_meta['dev']['loss']:.4f}); dev report:")
    print(format_report(summary["dev"], digits=4))
    write_predictions(out_dir / "dev_predictions.tsv", dev_probs, names, run.dev_y)
    plot_confusion_matrix(confusion_matrix(np.asarray(run.dev_y), dev_pred, len(names)), names,
                          out_dir / "confusion_matrix.png", title="dev confusion matrix")
    if "test" in data["files"]:
        path, text_col, label_col = data["files"]["test"], data["text_column"], data["label_column"]
        labelled = has_column(path, label_col)
        test_texts, test_y, _ = read_labelled(path, text_col, label_col if labelled else None,
                                              data["labels"] if labelled else None)
        test_batches = make_batches(test_texts, test_y, run.inputs, settings, run.max_len, False, "test", run.device,
                                    2 * settings.batch_size)
        test_probs = predict_proba(model, test_batches, run.ctx)
        write_predictions(out_dir / "predictions.tsv", test_probs, names, test_y)
        if labelled:
            summary["test"] = classification_report(np.asarray(test_y), test_probs.argmax(axis=1), names)
            print("test report:\n" + format_report(summary["test"], digits=4))
        print(f"wrote {out_dir / 'predictions.tsv'}: {len(test_texts):,} test predictions")
    atomic_write_text(out_dir / "report.json", json.dumps(summary, indent=1))
    print(f"done in {format_eta(time.time() - t_begin)} (training {format_eta(train_time)}): dev accuracy "
          f"{summary['dev']['accuracy']:.4f}, macro F1 {summary['dev']['macro avg']['f1-score']:.4f}; "
          f"{out_dir}/report.json, confusion_matrix.png, best.pt")


def report_tags(run: Run, loop_state: dict, train_time: float, t_begin: float) -> None:
    """--task token: best.pt on dev (and a test file) beside the most-frequent-tag baseline (Eq. 11.8): report.json,
    a tag-confusion PNG, and `word<TAB>prediction<TAB>tag` files for dev and test (a blank line between sentences)."""
    settings, out_dir, names, data, piece = run.settings, run.out_dir, run.names, run.data, run.run_meta["piece"]
    model, _, best_meta = load_classifier(out_dir / "best.pt", run.device, settings.gpt2_ranks or None)
    splits = {"dev": (data["dev_words"], run.dev_y, run.dev_batches)}
    if "test" in data["files"]:
        test_words, test_y, _ = read_tagged(data["files"]["test"], names)
        splits["test"] = (test_words, test_y, make_token_batches(test_words, test_y, run.inputs, settings, run.max_len,
                                                                 False, "test", run.device, piece,
                                                                 2 * settings.batch_size))
    summary = {"task": "token", "best_step": best_meta["step"], "metric": settings.metric, "init": run.source,
               "backbone_kind": run.run_meta["backbone_kind"], "piece": piece, "train_sentences": run.n_train,
               "steps": loop_state["step"], "train_time_s": train_time}
    print(f"\nbest.pt (--select {settings.select}): step {best_meta['step']} (dev {settings.metric} "
          f"{best_meta['dev'][settings.metric]:.4f}, loss {best_meta['dev']['loss']:.4f})")
    for split, (words, y, batches) in splits.items():
        pred = word_predictions(predict_words(model, batches, run.ctx), batches.n_words, run.run_meta["fill_tag"])
        summary[split] = score_tags(y, pred, names)
        summary[f"{split}_baseline"] = baseline = score_tags(y, data["baseline"].predict(words), names)
        line = (f"{split}: word accuracy {summary[split]['accuracy']:.4f} | most-frequent-tag baseline "
                f"{baseline['accuracy']:.4f}")
        if "entities" in baseline:
            ent, base_ent = summary[split]["entities"]["micro avg"], baseline["entities"]["micro avg"]
            line += (f" | entities (exact spans) P {ent['precision']:.4f} R {ent['recall']:.4f} F1 "
                     f"{ent['f1-score']:.4f}, baseline F1 {base_ent['f1-score']:.4f}")
        print(line + f"\n{split} per-tag report:\n" + format_report(summary[split]["tags"], digits=4))
        write_tagged(out_dir / f"{split}_predictions.tsv", words, pred, y, names)
        if split == "dev":
            flat_y, flat_pred = [t for s in y for t in s], [t for s in pred for t in s]
            plot_tag_confusion(confusion_matrix(flat_y, flat_pred, len(names)), names, out_dir / "confusion_matrix.png",
                               title="dev tag confusion (rows: true tag, % of the row)")
    summary["total_time_s"] = time.time() - t_begin
    atomic_write_text(out_dir / "report.json", json.dumps(summary, indent=1))
    print(f"done in {format_eta(time.time() - t_begin)} (training {format_eta(train_time)}): dev word accuracy "
          f"{summary['dev']['accuracy']:.4f}; {out_dir}/report.json, confusion_matrix.png, best.pt")


def format_tagged(words, pred, y, names: list[str]) -> str:
    """`word<TAB>prediction<TAB>tag` per word (no tag column when y is None), a blank line between sentences."""
    return "\n\n".join("\n".join(f"{w}\t{names[p]}" + (f"\t{names[y[n][i]]}" if y is not None else "")
                                  for i, (w, p) in enumerate(zip(sentence, pred[n])))
                        for n, sentence in enumerate(words))


def write_tagged(path: Path, words, pred, y, names: list[str]) -> None:
    atomic_write_text(path, format_tagged(words, pred, y, names) + "\n")


def write_predictions(path: Path, probs: np.ndarray, names: list[str], y=None) -> None:
    """TSV: index, predicted label, its probability (+ the true label when known)."""
    pred = probs.argmax(axis=1)
    head = "index\tprediction\tprobability" + ("\tlabel" if y is not None else "")
    rows = [f"{i}\t{names[p]}\t{probs[i, p]:.6f}" + (f"\t{names[y[i]]}" if y is not None else "")
            for i, p in enumerate(pred)]
    atomic_write_text(path, "\n".join([head, *rows]) + "\n")


# ------------------------------------------------------------------------------------------------------ prediction
def predict(settings: FinetuneSettings) -> int:
    if not settings.ckpt:
        raise ValueError("--predict / --predict-file need --ckpt DIR: a run written by finetune.py")
    if bool(settings.predict) == bool(settings.predict_file):
        raise ValueError("with --ckpt, pass exactly one of --predict TEXT or --predict-file FILE")
    device = resolve_device(settings.device)
    model, tokenizer, meta = load_classifier(settings.ckpt, device, settings.gpt2_ranks or None)
    if settings.predict:
        texts = [settings.predict]
    else:
        path = Path(settings.predict_file)
        if path.suffix.lower() in (".tsv", ".csv", ".jsonl", ".json"):
            texts, _, _ = read_labelled(path, settings.text_column or meta.get("text_column", "sentence"), None)
        else:
            if not path.is_file():
                raise FileNotFoundError(f"--predict-file {path} does not exist")
            texts = [line.strip() for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
            if not texts:
                raise ValueError(f"--predict-file {path} has no text lines")
    if meta["max_len"] > model.config.max_seq_len:
        raise ValueError(f"{settings.ckpt}: max_len {meta['max_len']} exceeds the model's context "
                         f"max_seq_len={model.config.max_seq_len}; the checkpoint is damaged")
    if meta.get("task") == "token":
        return print_tags(texts, model, tokenizer, meta, settings, device)
    batches = make_batches(texts, None, input_view(tokenizer, model.config.causal), settings, meta["max_len"], False,
                           "input", device)
    probs = predict_proba(model, batches, autocast_context(device, resolve_dtype(settings.dtype, device)))
    names = meta["label_names"]
    for text, p in zip(texts, probs):
        k = int(p.argmax())
        print(f"{names[k]}\t{p[k]:.4f}\t{text}")
    return 0


def print_tags(texts: list[str], model, tokenizer, meta: dict, settings: FinetuneSettings, device: str) -> int:
    """--task token checkpoints: `word<TAB>tag` for each whitespace-separated word, a blank line between sentences."""
    words = [text.split() for text in texts]
    batches = make_token_batches(words, None, input_view(tokenizer, model.config.causal), settings, meta["max_len"],
                                 False, "input", device, meta["piece"])
    log_probs = predict_words(model, batches, autocast_context(device, resolve_dtype(settings.dtype, device)))
    pred = word_predictions(log_probs, batches.n_words, meta["fill_tag"])
    print(format_tagged(words, pred, None, meta["label_names"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
