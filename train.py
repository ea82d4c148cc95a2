"""Pretrain a language model: causal (GPT, next token) or masked (BERT, 15% masked tokens). The loop is written out.

    python train.py                                   # char-level GPT on Tiny Shakespeare, a few minutes on a CPU
    python train.py --preset tiny --max-iters 20      # seconds: what the tests run
    python train.py --preset imdb-mlm                 # masked-LM pretraining on IMDB reviews (for finetune.py)
    python train.py --resume --out-dir out/shakespeare-char   # continue exactly where a run stopped
    torchrun --nproc_per_node=2 train.py --preset tiny        # data parallel (DDP; NCCL on GPUs, gloo on CPU)

Read it top to bottom beside lectures/06_training.ipynb: settings, data, model, optimizer, then one `for step` loop
(Eq. 6.6 learning rate -> evaluation and checkpoint -> forward/backward over grad_accum micro-batches ->
Eq. 6.7 clipping -> AdamW step, Eqs. 6.2-6.5) and, at the end, samples from the model.
Shared pieces (schedule, optimizer groups, mixed precision, checkpoint files) come from minilm/training.py and
minilm/checkpoint.py; this file prints, the library only returns.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from minilm.checkpoint import atomic_write_text, check_compatible, load_checkpoint, save_checkpoint
from minilm.config import ModelConfig, OneLineParser, add_dataclass_args, dataclass_from_args, setting
from minilm.data import get_causal_batch, get_mlm_batch, get_mlm_document_batch, load_documents, load_meta, load_split
from minilm.model import CausalLM, MaskedLM
from minilm.plots import plot_loss_curves
from minilm.tokenizer import tokenizer_from_dict
from minilm.training import (autocast_context, clip_grad_norm, configure_optimizer, evaluate, format_eta, get_lr,
                             make_grad_scaler, maybe_compile, mfu, peak_flops, resolve_device, resolve_dtype,
                             rng_state, set_rng_state, set_seed)

ROOT = Path(__file__).resolve().parent


# ------------------------------------------------------------------------------------------------------ settings
@dataclass
class TrainSettings:
    objective: str = setting("clm", "clm: causal LM (next token, GPT); mlm: masked LM (BERT)", choices=["clm", "mlm"])
    data: str = setting("data/shakespeare_char", "prepared dataset folder (train.bin, val.bin, meta.json)")
    out_dir: str = setting("out/shakespeare-char", "where checkpoints, metrics.jsonl and loss.png go")
    device: str = setting("auto", "auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps")
    dtype: str = setting("auto", "autocast dtype: auto (bf16 where fast, fp16 on old GPUs), float32, bfloat16, float16",
                         choices=["auto", "float32", "bfloat16", "float16"])
    compile: str = setting("auto", "torch.compile: auto (on for CUDA), on, off", choices=["auto", "on", "off"])
    max_iters: int = setting(2200, "optimizer steps in total")
    stop_after: int = setting(0, "stop at this step, after writing a checkpoint (0 = run to max_iters); the LR "
                                 "schedule still follows max_iters, so --resume continues it: training in sittings")
    max_minutes: float = setting(0.0, "also stop after this many minutes of training (0 = no limit); the LR schedule "
                                 "follows max_iters")
    batch_size: int = setting(64, "sequences per micro-batch (per process)")
    grad_accum: int = setting(1, "micro-batches per optimizer step, summed over all processes")
    lr: float = setting(3e-3, "peak learning rate")
    min_lr: float = setting(3e-5, "learning rate at the end of the cosine decay")
    warmup_iters: int = setting(50, "linear warmup steps")
    weight_decay: float = setting(0.1, "AdamW decoupled weight decay on >= 2-D weights")
    beta1: float = setting(0.9, "AdamW beta1")
    beta2: float = setting(0.99, "AdamW beta2 (0.99 for small batches, 0.95 for large)")
    grad_clip: float = setting(1.0, "clip the global gradient norm to this (0 = off)")
    eval_interval: int = setting(300, "evaluate, plot and checkpoint every N steps")
    eval_iters: int = setting(20, "batches per loss estimate at each evaluation")
    log_interval: int = setting(25, "print a progress line every N steps")
    mask_prob: float = setting(0.15, "mlm: fraction of tokens selected for prediction (BERT: 0.15)")
    mlm_documents: bool = setting(False, "mlm: one document per row (padded) instead of packed windows")
    seed: int = setting(1337, "random seed (data order, initialisation, dropout)")
    resume: bool = setting(False, "continue the run in --out-dir from its latest checkpoint")
    overwrite: bool = setting(False, "start afresh even if --out-dir already holds a run (its files are replaced)")
    samples: int = setting(2, "samples to print at the end (clm) / masked examples to show (mlm)")
    sample_tokens: int = setting(300, "tokens per sample at the end")
    debug: bool = setting(False, "show full tracebacks instead of one-line errors")


# Named presets: (settings, model). The default is shakespeare-char. Model fields not given keep ModelConfig's.
PRESETS: dict[str, tuple[dict, dict]] = {
    "tiny": (  # seconds on a CPU: what the tests run
        dict(max_iters=40, batch_size=8, eval_interval=10, eval_iters=4, log_interval=5, warmup_iters=5,
             lr=3e-3, min_lr=3e-4, samples=1, sample_tokens=40, out_dir="out/tiny"),
        dict(max_seq_len=32, d_model=32, n_heads=2, n_layers=2)),
    "shakespeare-char": (  # the default: picked by measurement for the lowest val loss in ~5 minutes on 2 CPU cores
        # (README, "Measured": context 64 x batch 64 beat 128 x 32 at the same tokens/step; lr 3e-3 beat 2e-3; exact
        # GELU is 12% faster than tanh on this CPU; decaying to lr/100 beat lr/10; dropout 0.1 lost)
        dict(max_iters=2200, batch_size=64, lr=3e-3, min_lr=3e-5, warmup_iters=50, eval_interval=300,
             eval_iters=20, beta2=0.99, weight_decay=0.1),
        dict(max_seq_len=64, d_model=128, n_heads=4, n_layers=4, dropout=0.0, gelu="exact", fused_kernels=True)),
    "shakespeare-char-gpu": (  # nanoGPT's "baby GPT" for one GPU
        dict(max_iters=5000, batch_size=64, lr=1e-3, min_lr=1e-4, warmup_iters=100, eval_interval=250,
             eval_iters=200, beta2=0.99, out_dir="out/shakespeare-char-gpu"),
        dict(max_seq_len=256, d_model=384, n_heads=6, n_layers=6, dropout=0.2, fused_kernels=True)),
    "imdb-mlm": (  # BERT-style pretraining on unlabelled reviews, then `python finetune.py --init out/imdb-mlm`
        # mask_prob 0.5: more training signal per step than BERT's 15% (Wettig et al. 2023,
        # https://arxiv.org/abs/2202.08005, found 15% is not optimal; the 80/10/10 split is unchanged). Measured
        # here, SST-2 dev over three fine-tuning seeds: 0.8135 at 50%, 0.8016 at 30%, 0.8028 at 15% (one seed).
        # init_std 0.05 instead of 0.02 and no dropout: a small masked LM otherwise keeps uniform attention for
        # thousands of steps (README, "Fine-tuning"; lectures/05_model.ipynb, section 6). Context 64 covers 99.5% of
        # SST-2's sentences and is cheaper per token than 128.
        dict(objective="mlm", data="data/imdb", out_dir="out/imdb-mlm", max_iters=6000, batch_size=64, lr=2e-3,
             min_lr=2e-4, warmup_iters=100, eval_interval=1000, eval_iters=10, beta2=0.99, weight_decay=0.01,
             mask_prob=0.5),
        dict(max_seq_len=64, d_model=128, n_heads=4, n_layers=4, dropout=0.0, init_std=0.05, gelu="exact",
             fused_kernels=True)),
    "gpt2-124m": (  # GPT-2 small's shape (Radford et al. 2019, table 2) for real GPUs; ~0.5M tokens per step
        dict(data="data/shakespeare", out_dir="out/gpt2-124m", max_iters=600000, batch_size=12, grad_accum=40,
             lr=6e-4, min_lr=6e-5, warmup_iters=2000, eval_interval=1000, eval_iters=200, beta2=0.95),
        dict(max_seq_len=1024, d_model=768, n_heads=12, n_layers=12, dropout=0.0, fused_kernels=True)),
}
DEFAULT_PRESET = "shakespeare-char"


def parse_settings(argv=None) -> tuple[TrainSettings, ModelConfig | dict, str]:
    p = OneLineParser(prog="train.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS),
                   help=f"named settings + model size (default: {DEFAULT_PRESET}); flags override it")
    add_dataclass_args(p, TrainSettings, group_title="training (defaults shown: the shakespeare-char preset)")
    add_dataclass_args(p, ModelConfig, group_title="model (vocab_size comes from the dataset; defaults shown are "
                                                         "ModelConfig's: the preset overrides them)")
    args = p.parse_args(argv)
    base_settings, base_model = PRESETS[args.preset]
    settings = dataclass_from_args(TrainSettings, args, base_settings)
    model_overrides = dict(base_model)
    for f in dataclasses.fields(ModelConfig):
        if getattr(args, f.name, None) is not None:
            model_overrides[f.name] = getattr(args, f.name)
    if "causal" not in model_overrides:
        model_overrides["causal"] = settings.objective == "clm"
    return settings, model_overrides, args.preset


def check_settings(s: TrainSettings) -> None:
    positive = ["max_iters", "batch_size", "grad_accum", "eval_interval", "eval_iters", "log_interval",
                "sample_tokens"]
    for name in positive:
        if getattr(s, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(s, name)}")
    if not s.lr > 0:
        raise ValueError(f"--lr must be > 0, got {s.lr}")
    if not 0 <= s.min_lr <= s.lr:
        raise ValueError(f"--min-lr must be in [0, lr={s.lr}], got {s.min_lr}")
    if not 0 <= s.warmup_iters <= s.max_iters:
        raise ValueError(f"--warmup-iters must be in [0, max_iters={s.max_iters}], got {s.warmup_iters}")
    for name in ("weight_decay", "grad_clip", "max_minutes", "samples", "stop_after"):
        if getattr(s, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(s, name)}")
    if not (0 <= s.beta1 < 1 and 0 <= s.beta2 < 1):
        raise ValueError(f"--beta1/--beta2 must be in [0, 1), got {s.beta1}, {s.beta2}")
    if not 0 < s.mask_prob < 1:
        raise ValueError(f"--mask-prob must be in (0, 1), got {s.mask_prob}")
    if s.resume and s.overwrite:
        raise ValueError("--resume and --overwrite contradict each other: pick one")


def find_data(data: str) -> Path:
    """The dataset folder; the default Tiny Shakespeare is prepared on first use (download, or say how)."""
    path = Path(data)
    if not path.is_absolute() and not path.exists() and (ROOT / path).exists():
        path = ROOT / path
    if (path / "meta.json").is_file():
        return path
    default = ROOT / "data" / "shakespeare_char"
    if path.resolve() == default.resolve():
        sys.path.insert(0, str(default))
        from prepare import main as prepare_char  # data/shakespeare_char/prepare.py

        print("Tiny Shakespeare is not prepared yet: preparing it (download ~1 MB)...")
        errors = io.StringIO()
        with contextlib.redirect_stderr(errors):  # its error goes into ours: one line, not two
            status = prepare_char([])
        if status != 0:
            reason = errors.getvalue().strip().splitlines()[-1].removeprefix("error: ") if errors.getvalue() else "?"
            raise FileNotFoundError(f"could not prepare Tiny Shakespeare ({reason}). Offline, run: python "
                                    f"data/shakespeare_char/prepare.py --source PATH/TO/input.txt")
        return path
    raise FileNotFoundError(f"{path}/meta.json not found: prepare the dataset first, e.g. "
                            f"python data/<name>/prepare.py --out-dir {data}")


def check_out_dir(out_dir: Path, resume: bool, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out-dir {out_dir} is a file, not a directory: choose another --out-dir")
    ckpt = out_dir / "ckpt.pt"
    if resume and not ckpt.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {ckpt}; train without --resume first "
                                f"(or point --out-dir at the run to continue)")
    if not resume and not overwrite and ckpt.is_file():
        raise ValueError(f"{out_dir} already holds a run ({ckpt}): pass --resume to continue it, --overwrite to "
                         f"replace it, or choose another --out-dir")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # e.g. a parent is a file, or no permission
        raise ValueError(f"cannot create --out-dir {out_dir} ({e.strerror}): choose another --out-dir") from None
    for name in ("ckpt.pt", "best.pt", "metrics.jsonl", "loss.png"):  # temp files of a run killed mid-write
        for stale in out_dir.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)
    if not os.access(out_dir, os.W_OK):
        raise ValueError(f"--out-dir {out_dir} is not writable: choose another --out-dir")


# ------------------------------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    settings, model_overrides, preset = parse_settings(argv)
    try:
        return train(settings, model_overrides, preset)
    except (ValueError, FileNotFoundError, OSError) as e:
        if settings.debug:
            raise
        print(f"train.py: error: {e}", file=sys.stderr)
        return 1


def train(s: TrainSettings, model_overrides: dict, preset: str) -> int:
    check_settings(s)
    # ---- distributed data parallel (torchrun sets RANK / WORLD_SIZE); a single process otherwise -------------
    ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank, world = (int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])) if ddp else (0, 1)
    device = resolve_device(s.device)
    if ddp:
        import torch.distributed as dist

        if device.startswith("cuda"):
            device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
        if s.grad_accum % world:
            raise ValueError(f"--grad-accum {s.grad_accum} must be divisible by the number of processes {world}")
    master = rank == 0
    say = print if master else (lambda *a, **k: None)
    dtype = resolve_dtype(s.dtype, device)
    ctx = autocast_context(device, dtype)
    set_seed(s.seed)

    # ---- data --------------------------------------------------------------------------------------------------
    data_dir = find_data(s.data)
    meta = load_meta(data_dir)
    tokenizer = tokenizer_from_dict(meta["tokenizer"])
    if s.objective == "mlm" and tokenizer.mask_id is None:
        raise ValueError(f"--objective mlm needs a tokenizer with a <mask> token, but {data_dir}'s has none: prepare "
                         f"the data with special tokens (as data/imdb/prepare.py does) or use --objective clm")
    for split in ("train", "val"):
        if meta["counts"].get(split) == 0:
            raise ValueError(f"{data_dir}/{split}.bin is empty (0 tokens): re-run prepare.py with more text")
    train_data, val_data = load_split(data_dir, "train"), load_split(data_dir, "val")
    if model_overrides.get("vocab_size", meta["vocab_size"]) != meta["vocab_size"]:
        raise ValueError(f"--vocab-size {model_overrides['vocab_size']} differs from the dataset's "
                         f"{meta['vocab_size']}: leave it out (it comes from {data_dir}/meta.json)")
    config = ModelConfig(**{**model_overrides, "vocab_size": meta["vocab_size"]})
    if (s.objective == "clm") != config.causal:
        raise ValueError(f"--objective {s.objective} needs --causal {s.objective == 'clm'}")
    T = config.max_seq_len
    docs = {split: load_documents(data_dir, split) for split in ("train", "val")} if s.mlm_documents else None

    def get_batch(split: str, generator: torch.Generator) -> tuple:
        data = train_data if split == "train" else val_data
        if s.objective == "clm":
            return get_causal_batch(data, s.batch_size, T, generator, device)  # (x, y)
        if s.mlm_documents:  # (inputs, targets, attention_mask): model(inputs, targets, attention_mask)
            return get_mlm_document_batch(data, docs[split], s.batch_size, T, generator, tokenizer, device,
                                          s.mask_prob)
        return get_mlm_batch(data, s.batch_size, T, generator, tokenizer, device, s.mask_prob)  # (inputs, targets)

    for split, data in (("train", train_data), ("val", val_data)):  # fail now, before any file is written
        if len(data) < T + 1:
            raise ValueError(f"the {split} split of {data_dir} has {len(data):,} tokens, too few for one window of "
                             f"--max-seq-len {T} (+1): lower --max-seq-len or prepare more data")
        get_batch(split, torch.Generator().manual_seed(0))

    # ---- model, optimizer, checkpoint state -----------------------------------------------------------------------
    out_dir = Path(s.out_dir)
    if master:
        check_out_dir(out_dir, s.resume, s.overwrite)
    model = (CausalLM if s.objective == "clm" else MaskedLM)(config).to(device)
    optimizer = configure_optimizer(model, s.lr, s.weight_decay, (s.beta1, s.beta2), device_type=device.split(":")[0])
    scaler = make_grad_scaler(device, dtype)
    train_gen = torch.Generator().manual_seed(s.seed)  # every process draws the same stream (see the DDP note)
    run_meta = {"kind": s.objective, "model_config": config.to_dict(), "tokenizer": meta["tokenizer"],
                "data": str(data_dir), "preset": preset, "settings": dataclasses.asdict(s)}
    start_step, best_val, records, last_saved = 0, math.inf, [], None  # last_saved: step of the ckpt.pt on disk
    if s.resume:
        tensors, old = load_checkpoint(out_dir / "ckpt.pt")
        check_compatible(old, {"kind": s.objective, "model_config": config.to_dict()})
        model.load_state_dict(tensors["model"])
        optimizer.load_state_dict(tensors["optimizer"])
        scaler.load_state_dict(tensors["scaler"])
        set_rng_state(tensors["rng"], {"train": train_gen})
        start_step, best_val, last_saved = old["step"], old["best_val_loss"], old["step"]
        records = [r for r in _read_metrics(out_dir) if r["step"] < start_step]  # drop lines past the checkpoint
        say(f"resuming {out_dir} at step {start_step} (best val loss so far {best_val:.4f})")
    raw_model = model  # saved and evaluated; the compiled / DDP wrappers only train
    model = maybe_compile(model, s.compile, device)
    if ddp:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(model, device_ids=[int(device.split(":")[1])] if device.startswith("cuda") else None)

    def save(path: Path, step: int, val_loss: float, full: bool) -> None:
        tensors = {"model": raw_model.state_dict()}
        if full:  # what an exact resume needs; best.pt only needs the weights
            tensors.update(optimizer=optimizer.state_dict(), scaler=scaler.state_dict(),
                           rng=rng_state({"train": train_gen}))
        save_checkpoint(path, tensors, {**run_meta, "step": step, "val_loss": val_loss, "best_val_loss": best_val})

    def write_metrics() -> None:
        atomic_write_text(out_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in records))

    def diverged(what: str, step: int) -> ValueError:
        where = (f"The last good checkpoint is {out_dir / 'ckpt.pt'} (step {last_saved}); resume from it"
                 if last_saved is not None else "No checkpoint was saved; start again")
        return ValueError(f"{what} at step {step}: training diverged. {where} with a lower --lr or --grad-clip")

    local_accum = s.grad_accum // world
    tokens_per_step = s.batch_size * T * s.grad_accum
    flops_token = raw_model.flops_per_token(T) if s.objective == "clm" else raw_model.flops_per_token(T, s.mask_prob)
    peak = peak_flops(device, dtype)
    say(f"{s.objective} | {raw_model.num_params() / 1e6:.2f}M parameters | {device}, {str(dtype).split('.')[1]}"
        f"{', compiled' if model is not raw_model and not ddp else ''}{f', DDP x{world}' if ddp else ''} | "
        f"{tokens_per_step:,} tokens/step | {data_dir} ({len(train_data):,} train tokens)")

    # ---- the loop ----------------------------------------------------------------------------------------------------
    t_start = time.time()
    interval_start, interval_steps = time.perf_counter(), 0  # tokens/s counts training steps only, not evals
    step = start_step
    for step in range(start_step, s.max_iters + 1):
        lr = get_lr(step, s.lr, s.min_lr, s.warmup_iters, s.max_iters)  # Eq. 6.6
        for group in optimizer.param_groups:
            group["lr"] = lr
        out_of_time = s.max_minutes > 0 and time.time() - t_start > 60 * s.max_minutes
        last = step == s.max_iters or out_of_time or (s.stop_after > 0 and step == s.stop_after)

        if step % s.eval_interval == 0 or last:  # evaluate on fixed batches, so evaluations are comparable
            t_eval = time.perf_counter()
            losses = {split: evaluate(raw_model, lambda sp=split, g=torch.Generator().manual_seed(1): get_batch(sp, g),
                                      s.eval_iters, ctx) for split in ("train", "val")}
            record = {"step": step, "train_loss": losses["train"], "val_loss": losses["val"], "lr": lr,
                      "time_s": time.time() - t_start}
            say(f"step {step:>5} | eval: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
            if not all(math.isfinite(v) for v in losses.values()):  # never overwrite a good checkpoint with NaNs
                raise diverged(f"the evaluation loss is {losses['val']} (val), {losses['train']} (train)", step)
            if not all(bool(torch.isfinite(p).all()) for p in raw_model.parameters()):
                raise diverged("the weights hold NaN or inf", step)
            if master:
                records.append(record)
                if losses["val"] < best_val:
                    best_val = losses["val"]
                    save(out_dir / "best.pt", step, losses["val"], full=False)
                write_metrics()  # before ckpt.pt: a run killed in between still has every record up to the ckpt
                save(out_dir / "ckpt.pt", step, losses["val"], full=True)  # the latest, for --resume
                plot_loss_curves(records, out_dir / "loss.png")
            last_saved = step
            interval_start += time.perf_counter() - t_eval
        if last:
            break

        # forward / backward over the micro-batches; gradients add up (Eq. 6.1 averaged over grad_accum)
        loss_sum = 0.0
        for micro in range(s.grad_accum):
            batch = get_batch("train", train_gen)
            if micro % world != rank:  # DDP: every process draws every micro-batch, keeps its own share,
                continue  # so N processes see exactly the data one process would
            sync = (micro // world) == local_accum - 1  # DDP: all-reduce gradients on the last micro-step only
            with (model.no_sync() if ddp and not sync else nullcontext()), ctx:
                _, loss = model(*batch)
            loss_sum += loss.detach()
            scaler.scale(loss / local_accum).backward()
        if s.grad_clip > 0:  # Eq. 6.7, on the true (unscaled) gradients
            clip_grad_norm(raw_model.parameters(), s.grad_clip, optimizer, scaler)
        scaler.step(optimizer)  # Eqs. 6.2-6.5 (skipped by the scaler if fp16 gradients overflowed)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        interval_steps += 1

        if (step + 1) % s.log_interval == 0 or step + 1 == s.max_iters:
            if ddp:  # report the loss of the whole global batch, not just this process's share
                loss_sum = torch.as_tensor(loss_sum, device=device)
                dist.all_reduce(loss_sum)
                loss_sum = loss_sum / world
            loss_value = float(loss_sum) / local_accum
            if not math.isfinite(loss_value):
                raise diverged(f"the training loss is {loss_value}", step)
            rate = interval_steps * tokens_per_step / (time.perf_counter() - interval_start)  # float() above synced
            interval_start, interval_steps = time.perf_counter(), 0
            m = mfu(flops_token, rate, peak)
            elapsed = time.time() - t_start
            eta = (s.max_iters - step - 1) * elapsed / max(step + 1 - start_step, 1)
            say(f"step {step:>5} | loss {loss_value:.4f} | lr {lr:.2e} | {rate:,.0f} tok/s"
                f"{f' | MFU {100 * m:.1f}%' if m is not None else ''} | {format_eta(elapsed)} elapsed, "
                f"{format_eta(eta)} left")
            if master:
                records.append({"step": step, "loss": loss_value, "lr": lr, "tokens_per_s": rate})

    # ---- the end: a whole-split validation loss and what the model learned ------------------------------------------
    if master:
        write_metrics()
        say(f"done: {step} steps in {format_eta(time.time() - t_start)}; best val loss {best_val:.4f}; "
            f"checkpoints in {out_dir} (ckpt.pt latest, best.pt best)")
        if s.objective == "clm":
            say(f"val loss over the whole val split ({len(val_data):,} tokens): "
                f"{full_split_loss(raw_model, val_data, T, s.batch_size, device, ctx):.4f}")
        if s.samples:
            show_samples(raw_model, tokenizer, s, device, ctx, val_data)
    if ddp:
        dist.destroy_process_group()
    return 0


def _read_metrics(out_dir: Path) -> list[dict]:
    path = out_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


@torch.no_grad()
def full_split_loss(model, data, T: int, batch_size: int, device: str, ctx) -> float:
    """Next-token loss over every token of a split, in non-overlapping windows of T (no sampling noise)."""
    model.eval()
    n = (len(data) - 1) // T  # windows
    total, count = 0.0, 0
    for i in range(0, n, batch_size):
        rows = range(i, min(i + batch_size, n))
        xy = torch.stack([torch.from_numpy(data[r * T: r * T + T + 1].astype("int64")) for r in rows])  # (B, T+1)
        with ctx:
            _, loss = model(xy[:, :-1].to(device), xy[:, 1:].to(device))
        total += float(loss) * len(rows)
        count += len(rows)
    return total / count


def show_samples(model, tokenizer, s: TrainSettings, device: str, ctx, val_data) -> None:
    """clm: sample text from the model; mlm: mask a few tokens of validation text and show the model's guesses."""
    gen = torch.Generator(device=device).manual_seed(s.seed)
    model.eval()
    if s.objective == "clm":
        try:
            start = tokenizer.encode("\n")  # start each sample on a new line, as the text does
        except ValueError:
            start = [int(val_data[0])]
        for i in range(s.samples):
            idx = torch.tensor([start], dtype=torch.long, device=device)
            with ctx:
                out = model.generate(idx, s.sample_tokens, temperature=0.8, top_k=200, generator=gen)
            print(f"--- sample {i + 1} " + "-" * 60 + "\n" + tokenizer.decode(out[0].tolist()))
        return
    from minilm.data import mask_tokens

    T = min(model.config.max_seq_len, 48)
    for i in range(s.samples):
        start = i * len(val_data) // max(s.samples, 1)
        x = torch.from_numpy(val_data[start:start + T].astype("int64"))[None]  # (1, T)
        inputs, targets = mask_tokens(x, tokenizer.mask_id, tokenizer.vocab_size, tokenizer.special_ids,
                                      torch.Generator().manual_seed(i), mask_prob=0.15)
        with torch.no_grad(), ctx:
            logits, _ = model(inputs.to(device))
        guess = logits.argmax(-1)[0].cpu()
        where = (targets[0] != -100).nonzero().flatten().tolist()
        print(f"--- masked example {i + 1} " + "-" * 52)
        print("input:  " + tokenizer.decode([t for t in inputs[0].tolist()]))
        for p in where:
            print(f"  position {p}: true {tokenizer.decode([int(targets[0, p])])!r}, "
                  f"predicted {tokenizer.decode([int(guess[p])])!r}")


if __name__ == "__main__":
    sys.exit(main())
