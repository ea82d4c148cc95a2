"""Pretrain a language model: causal (GPT, next token) or masked (BERT, 15% masked tokens). The loop is written out.

    python train.py                                   # char-level GPT on Tiny Shakespeare, a few minutes on a CPU
    python train.py --preset tiny --max-iters 20      # seconds: what the tests run
    python train.py --preset imdb-mlm                 # masked-LM pretraining on IMDB reviews (for finetune.py)
    python train.py --preset shakespeare-char-lstm    # the same data and budget for an LSTM (--arch lstm / gru)
    python train.py --resume --out-dir out/shakespeare-char   # continue exactly where a run stopped
    torchrun --nproc_per_node=2 train.py --preset tiny        # data parallel (DDP; NCCL on GPUs, gloo on CPU)

Read it top to bottom beside lectures/06_training.ipynb: settings and presets, setup() (devices, data, model,
optimizer), resume(), evaluate_and_checkpoint(), then train() with the one `for step` loop written out (Eq. 6.6
learning rate -> evaluation and checkpoint -> forward/backward over grad_accum micro-batches -> Eq. 6.8 clipping ->
AdamW step, Eqs. 6.2-6.5), its state in one dict, `loop_state`, saved in every checkpoint; at the end, samples.
Shared pieces (schedule, optimizer groups, mixed precision, checkpoint files, flags) come from minilm/training.py,
minilm/checkpoint.py and minilm/cli.py; this file prints, the library only returns.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import io
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from minilm.checkpoint import (check_compatible, load_checkpoint, prepare_out_dir, read_metrics, save_checkpoint,
                               write_metrics)
from minilm.cli import OneLineParser, check_flags, parse_with_presets, run_main, setting
from minilm.config import IGNORE_INDEX, ModelConfig
from minilm.data import (get_causal_batch, get_mlm_batch, get_mlm_document_batch, load_documents, load_meta,
                         load_split, mask_tokens)
from minilm.model import CausalLM, MaskedLM
from minilm.plots import plot_loss_curves
from minilm.rnn import RNNLM
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
    optimizer: str = setting("torch", "AdamW implementation: torch (torch.optim.AdamW, fused on CUDA) or minilm "
                             "(minilm/optim.py, written out; same groups and updates)", choices=["torch", "minilm"])
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
    "shakespeare-char-lstm": (  # the recurrent baseline of lectures/10_rnn_vs_attention.ipynb: the default run's
        # settings and budget; 2 LSTM layers of 220, untied (RNNLM's docstring says why) = 0.81M parameters, as the
        # default GPT's 0.81M (bench/loss_ladder.py)
        dict(max_iters=2200, batch_size=64, lr=3e-3, min_lr=3e-5, warmup_iters=50, eval_interval=300,
             eval_iters=20, beta2=0.99, weight_decay=0.1, out_dir="out/shakespeare-char-lstm"),
        dict(arch="lstm", max_seq_len=64, d_model=220, n_layers=2, tie_weights=False, dropout=0.0, fused_kernels=True)),
    "shakespeare-char-gru": (  # the same for the GRU: 2 layers of 254, untied = 0.81M parameters
        dict(max_iters=2200, batch_size=64, lr=3e-3, min_lr=3e-5, warmup_iters=50, eval_interval=300,
             eval_iters=20, beta2=0.99, weight_decay=0.1, out_dir="out/shakespeare-char-gru"),
        dict(arch="gru", max_seq_len=64, d_model=254, n_layers=2, tie_weights=False, dropout=0.0, fused_kernels=True)),
    "shakespeare-char-llama": (  # the default's size and budget with Llama's four changes: RMSNorm, SwiGLU (d_ff 384
        # by the Llama rule), RoPE (no position table), 2 key/value heads for 4 query heads (bench/ablation.py)
        dict(max_iters=2200, batch_size=64, lr=3e-3, min_lr=3e-5, warmup_iters=50, eval_interval=300,
             eval_iters=20, beta2=0.99, weight_decay=0.1, out_dir="out/shakespeare-char-llama"),
        dict(max_seq_len=64, d_model=128, n_heads=4, n_layers=4, dropout=0.0, fused_kernels=True, norm="rmsnorm",
             mlp="swiglu", pos_emb="rope", n_kv_heads=2)),
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


def parse_settings(argv=None) -> tuple[TrainSettings, dict, str]:
    p = OneLineParser(prog="train.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    args, settings, model_overrides = parse_with_presets(
        p, argv, PRESETS, DEFAULT_PRESET, TrainSettings, ModelConfig,
        settings_title="training (defaults shown: the shakespeare-char preset)",
        model_title="model (vocab_size comes from the dataset; defaults shown are ModelConfig's: the preset overrides "
                    "them)")
    if "causal" not in model_overrides:
        model_overrides["causal"] = settings.objective == "clm"
    return settings, model_overrides, args.preset


def check_settings(settings: TrainSettings) -> None:
    check_flags(settings, positive=["max_iters", "batch_size", "grad_accum", "eval_interval", "eval_iters",
                             "log_interval", "sample_tokens"],
                non_negative=["weight_decay", "grad_clip", "max_minutes", "samples", "stop_after"],
                rules=[(settings.lr > 0, f"--lr must be > 0, got {settings.lr}"),
                       (0 <= settings.min_lr <= settings.lr,
                        f"--min-lr must be in [0, lr={settings.lr}], got {settings.min_lr}"),
                       (0 <= settings.warmup_iters <= settings.max_iters,
                        f"--warmup-iters must be in [0, max_iters={settings.max_iters}], got {settings.warmup_iters}"),
                       (0 <= settings.beta1 < 1 and 0 <= settings.beta2 < 1,
                        f"--beta1/--beta2 must be in [0, 1), got {settings.beta1}, {settings.beta2}"),
                       (0 < settings.mask_prob < 1, f"--mask-prob must be in (0, 1), got {settings.mask_prob}"),
                       (not (settings.resume and settings.overwrite),
                        "--resume and --overwrite contradict each other: pick one")])


def find_data(data: str) -> Path:
    """The dataset folder; the default Tiny Shakespeare is prepared on first use (download, or say how)."""
    path = Path(data)
    if not path.is_absolute() and not path.exists() and (ROOT / path).exists():
        path = ROOT / path
    if (path / "meta.json").is_file():
        return path
    default = ROOT / "data" / "shakespeare_char"
    if path.resolve() == default.resolve():
        spec = importlib.util.spec_from_file_location("shakespeare_char_prepare", default / "prepare.py")
        prepare_char = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(prepare_char)
        print("Tiny Shakespeare is not prepared yet: preparing it (download ~1 MB)...")
        errors = io.StringIO()
        with contextlib.redirect_stderr(errors):  # its error goes into ours: one line, not two
            status = prepare_char.main([])
        if status != 0:
            reason = errors.getvalue().strip().splitlines()[-1].removeprefix("error: ") if errors.getvalue() else "?"
            raise FileNotFoundError(f"could not prepare Tiny Shakespeare ({reason}). Offline, run: python "
                                    f"data/shakespeare_char/prepare.py --source PATH/TO/input.txt")
        return path
    raise FileNotFoundError(f"{path}/meta.json not found: prepare the dataset first, e.g. "
                            f"python data/<name>/prepare.py --out-dir {data}")


# ------------------------------------------------------------------------------------------------------ setup
@dataclass
class Run:
    """Everything setup() builds and the loop uses; the loop's changing state lives in `loop_state` instead."""
    settings: TrainSettings
    ddp: bool
    rank: int
    world: int
    device: str
    dtype: torch.dtype
    ctx: object  # the autocast context (Eq. 6.9's mixed precision)
    data_dir: Path
    tokenizer: object
    train_data: object  # np.memmap of token ids
    val_data: object
    config: ModelConfig
    get_batch: Callable  # get_batch(split, generator) -> the model's arguments
    out_dir: Path
    raw_model: torch.nn.Module  # saved and evaluated; the compiled / DDP wrappers in `model` only train
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    train_gen: torch.Generator  # the training batches' random stream, saved in ckpt.pt
    run_meta: dict  # what every checkpoint records about the run

    @property
    def master(self) -> bool:
        return self.rank == 0

    def say(self, *args) -> None:  # only one process prints
        if self.master:
            print(*args)


def setup_distributed(settings: TrainSettings) -> tuple[bool, int, int, str]:
    """(ddp, rank, world size, device): torchrun sets RANK / WORLD_SIZE; a single process otherwise."""
    ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank, world = (int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])) if ddp else (0, 1)
    device = resolve_device(settings.device)
    if ddp:
        if device.startswith("cuda"):
            device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
        if settings.grad_accum % world:
            raise ValueError(f"--grad-accum {settings.grad_accum} must be divisible by the number of processes {world}")
    return ddp, rank, world, device


def load_data(settings: TrainSettings, model_overrides: dict, device: str):
    """(data_dir, tokenizer, train_data, val_data, config, get_batch), after checking the data fits the model."""
    data_dir = find_data(settings.data)
    meta = load_meta(data_dir)
    tokenizer = tokenizer_from_dict(meta["tokenizer"])
    if settings.objective == "mlm" and tokenizer.mask_id is None:
        raise ValueError(f"--objective mlm needs a tokenizer with a <mask> token, but {data_dir}'s has none: prepare "
                         f"the data with special tokens (as data/imdb/prepare.py does) or use --objective clm")
    for split in ("train", "val"):
        if meta["counts"].get(split) == 0:
            raise ValueError(f"{data_dir}/{split}.bin is empty (0 tokens): re-run prepare.py with more text")
    splits = {split: load_split(data_dir, split) for split in ("train", "val")}
    if model_overrides.get("vocab_size", meta["vocab_size"]) != meta["vocab_size"]:
        raise ValueError(f"--vocab-size {model_overrides['vocab_size']} differs from the dataset's "
                         f"{meta['vocab_size']}: leave it out (it comes from {data_dir}/meta.json)")
    config = ModelConfig(**{**model_overrides, "vocab_size": meta["vocab_size"]})
    if config.arch != "transformer" and settings.objective != "clm":
        raise ValueError(f"--arch {config.arch} is a causal LM (it reads left to right), so it trains with --objective "
                         f"clm only; a masked LM needs --arch transformer")
    if (settings.objective == "clm") != config.causal:
        raise ValueError(f"--objective {settings.objective} needs --causal {settings.objective == 'clm'}")
    T = config.max_seq_len
    docs = {split: load_documents(data_dir, split) for split in splits} if settings.mlm_documents else None

    def get_batch(split: str, generator: torch.Generator) -> tuple:
        data = splits[split]
        if settings.objective == "clm":
            return get_causal_batch(data, settings.batch_size, T, generator, device)  # (x, y)
        if settings.mlm_documents:  # (inputs, targets, attention_mask): model(inputs, targets, attention_mask)
            return get_mlm_document_batch(data, docs[split], settings.batch_size, T, generator, tokenizer, device,
                                          settings.mask_prob)
        # (inputs, targets)
        return get_mlm_batch(data, settings.batch_size, T, generator, tokenizer, device, settings.mask_prob)

    for split, data in splits.items():  # fail now, before any file is written
        if len(data) < T + 1:
            raise ValueError(f"the {split} split of {data_dir} has {len(data):,} tokens, too few for one window of "
                             f"--max-seq-len {T} (+1): lower --max-seq-len or prepare more data")
        get_batch(split, torch.Generator().manual_seed(0))
    return data_dir, tokenizer, splits["train"], splits["val"], config, get_batch


def build_model(objective: str, config: ModelConfig) -> torch.nn.Module:
    """The model a run trains: a recurrent LM for --arch lstm / gru (minilm/rnn.py), else GPT or BERT by objective.
    They share one interface, model(*batch) -> (logits, loss), so the loop below does not know which it has."""
    if config.arch != "transformer":
        return RNNLM(config)
    return (CausalLM if objective == "clm" else MaskedLM)(config)


def setup(settings: TrainSettings, model_overrides: dict, preset: str) -> Run:
    """Devices, data, model, optimizer and the run directory: everything before the loop."""
    ddp, rank, world, device = setup_distributed(settings)
    dtype = resolve_dtype(settings.dtype, device)
    ctx = autocast_context(device, dtype)
    set_seed(settings.seed)
    data_dir, tokenizer, train_data, val_data, config, get_batch = load_data(settings, model_overrides, device)
    out_dir = Path(settings.out_dir)
    if rank == 0:
        prepare_out_dir(out_dir, settings.resume, settings.overwrite, "train")
    model = build_model(settings.objective, config).to(device)
    optimizer = configure_optimizer(model, settings.lr, settings.weight_decay, (settings.beta1, settings.beta2),
                                    device_type=device.split(":")[0], impl=settings.optimizer)
    run_meta = {"kind": settings.objective, "model_config": config.to_dict(), "tokenizer": tokenizer.to_dict(),
                "data": str(data_dir), "preset": preset, "settings": dataclasses.asdict(settings)}
    return Run(settings, ddp, rank, world, device, dtype, ctx, data_dir, tokenizer, train_data, val_data, config,
               get_batch, out_dir, raw_model=model, model=model, optimizer=optimizer,
               scaler=make_grad_scaler(device, dtype),
               train_gen=torch.Generator().manual_seed(settings.seed),  # every process draws the same stream (DDP note)
               run_meta=run_meta)


def wrap_model(run: Run) -> torch.nn.Module:
    """The model the loop trains: compiled (--compile) and wrapped for DDP; run.raw_model stays the plain one."""
    model = maybe_compile(run.raw_model, run.settings.compile, run.device)
    if run.ddp:
        model = DDP(model, device_ids=[int(run.device.split(":")[1])] if run.device.startswith("cuda") else None)
    return model


# ------------------------------------------------------------------------------------------------------ checkpoints
def resume(run: Run) -> tuple[dict, list[dict]]:
    """(loop_state, metrics records) of the run in --out-dir; model, optimizer and RNGs continue exactly."""
    tensors, meta = load_checkpoint(run.out_dir / "ckpt.pt")
    check_compatible(meta, {"kind": run.settings.objective, "model_config": run.config.to_dict()})
    run.raw_model.load_state_dict(tensors["model"])
    run.optimizer.load_state_dict(tensors["optimizer"])
    run.scaler.load_state_dict(tensors["scaler"])
    set_rng_state(tensors["rng"], {"train": run.train_gen})
    # checkpoints written before loop_state existed kept its fields at the top level of meta
    loop_state = meta.get("loop_state") or {"step": meta["step"], "best_val_loss": meta["best_val_loss"]}
    loop_state = {**loop_state, "last_saved": loop_state["step"]}
    run.say(f"resuming {run.out_dir} at step {loop_state['step']} (best val loss so far "
            f"{loop_state['best_val_loss']:.4f})")
    return loop_state, read_metrics(run.out_dir, before_step=loop_state["step"])  # later lines are redone


def save(run: Run, path: Path, loop_state: dict, val_loss: float, full: bool) -> None:
    tensors = {"model": run.raw_model.state_dict()}
    if full:  # what an exact resume needs; best.pt only needs the weights
        tensors.update(optimizer=run.optimizer.state_dict(), scaler=run.scaler.state_dict(),
                       rng=rng_state({"train": run.train_gen}))
    save_checkpoint(path, tensors, {**run.run_meta, "step": loop_state["step"], "val_loss": val_loss,
                                    "loop_state": loop_state})


def diverged(run: Run, loop_state: dict, what: str) -> ValueError:
    where = (f"The last good checkpoint is {run.out_dir / 'ckpt.pt'} (step {loop_state['last_saved']}); resume "
             f"from it" if loop_state["last_saved"] is not None else "No checkpoint was saved; start again")
    return ValueError(f"{what} at step {loop_state['step']}: training diverged. {where} with a lower --lr or "
                      f"--grad-clip")


def evaluate_and_checkpoint(run: Run, loop_state: dict, records: list[dict], lr: float, t_start: float) -> None:
    """Losses on fixed batches (comparable across evaluations), best.pt when val improves, metrics, ckpt.pt, plot."""
    losses = {split: evaluate(run.raw_model, lambda sp=split, g=torch.Generator().manual_seed(1): run.get_batch(sp, g),
                              run.settings.eval_iters, run.ctx) for split in ("train", "val")}
    step = loop_state["step"]
    run.say(f"step {step:>5} | eval: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
    if not all(math.isfinite(v) for v in losses.values()):  # never overwrite a good checkpoint with NaNs
        raise diverged(run, loop_state, f"the evaluation loss is {losses['val']} (val), {losses['train']} (train)")
    if not all(bool(torch.isfinite(p).all()) for p in run.raw_model.parameters()):
        raise diverged(run, loop_state, "the weights hold NaN or inf")
    if run.master:
        records.append({"step": step, "train_loss": losses["train"], "val_loss": losses["val"], "lr": lr,
                        "time_s": time.time() - t_start})
        if losses["val"] < loop_state["best_val_loss"]:
            loop_state["best_val_loss"] = losses["val"]
            save(run, run.out_dir / "best.pt", {**loop_state, "last_saved": step}, losses["val"], full=False)
        write_metrics(run.out_dir, records)  # before ckpt.pt: a run killed in between keeps every record up to it
        save(run, run.out_dir / "ckpt.pt", {**loop_state, "last_saved": step}, losses["val"], full=True)
        plot_loss_curves(records, run.out_dir / "loss.png")
    loop_state["last_saved"] = step


def global_loss(run: Run, loss_sum) -> float:
    """The mean micro-batch loss of the whole global batch (DDP: averaged over processes, not this one's share)."""
    if run.ddp:
        loss_sum = torch.as_tensor(loss_sum, device=run.device)
        dist.all_reduce(loss_sum)
        loss_sum = loss_sum / run.world
    return float(loss_sum) / (run.settings.grad_accum // run.world)


# ------------------------------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    settings, model_overrides, preset = parse_settings(argv)
    return run_main("train.py", lambda: train(settings, model_overrides, preset), settings.debug)


def train(settings: TrainSettings, model_overrides: dict, preset: str) -> int:
    check_settings(settings)
    run = setup(settings, model_overrides, preset)
    # the loop's state, in one place and saved in every checkpoint (nanochat's loop_state)
    loop_state, records = {"step": 0, "best_val_loss": math.inf, "last_saved": None}, []
    if settings.resume:
        loop_state, records = resume(run)
    run.model = model = wrap_model(run)
    raw_model, optimizer, scaler, T = run.raw_model, run.optimizer, run.scaler, run.config.max_seq_len
    local_accum = settings.grad_accum // run.world
    tokens_per_step = settings.batch_size * T * settings.grad_accum
    flops_token = (raw_model.flops_per_token(T) if settings.objective == "clm"
                   else raw_model.flops_per_token(T, settings.mask_prob))
    peak = peak_flops(run.device, run.dtype)
    arch = "" if run.config.arch == "transformer" else f", {run.config.arch}"
    run.say(f"{settings.objective}{arch} | {raw_model.num_params() / 1e6:.2f}M parameters | {run.device}, "
            f"{str(run.dtype).split('.')[1]}{', compiled' if model is not raw_model and not run.ddp else ''}"
            f"{f', DDP x{run.world}' if run.ddp else ''} | {tokens_per_step:,} tokens/step | {run.data_dir} "
            f"({len(run.train_data):,} train tokens)")

    # ---- the loop ----------------------------------------------------------------------------------------------------
    t_start, start_step = time.time(), loop_state["step"]
    interval_start, interval_steps = time.perf_counter(), 0  # tokens/s counts training steps only, not evals
    for step in range(start_step, settings.max_iters + 1):
        loop_state["step"] = step
        lr = get_lr(step, settings.lr, settings.min_lr, settings.warmup_iters, settings.max_iters)  # Eq. 6.6
        for group in optimizer.param_groups:
            group["lr"] = lr
        out_of_time = settings.max_minutes > 0 and time.time() - t_start > 60 * settings.max_minutes
        last = step == settings.max_iters or out_of_time or (settings.stop_after > 0 and step == settings.stop_after)

        # once in a while (and at the end): evaluate, keep the best weights, checkpoint, plot
        if step % settings.eval_interval == 0 or last:
            t_eval = time.perf_counter()
            evaluate_and_checkpoint(run, loop_state, records, lr, t_start)
            interval_start += time.perf_counter() - t_eval
        if last:
            break

        # forward / backward over the micro-batches; gradients add up (Eq. 6.1 averaged over grad_accum)
        loss_sum = 0.0
        for micro in range(settings.grad_accum):
            batch = run.get_batch("train", run.train_gen)
            if micro % run.world != run.rank:  # DDP: every process draws every micro-batch, keeps its own share,
                continue  # so N processes see exactly the data one process would
            sync = (micro // run.world) == local_accum - 1  # DDP: all-reduce gradients on the last micro-step only
            with (model.no_sync() if run.ddp and not sync else nullcontext()), run.ctx:
                _, loss = model(*batch)
            loss_sum += loss.detach()
            scaler.scale(loss / local_accum).backward()
        if settings.grad_clip > 0:  # Eq. 6.8, on the true (unscaled) gradients
            clip_grad_norm(raw_model.parameters(), settings.grad_clip, optimizer, scaler)
        scaler.step(optimizer)  # Eqs. 6.2-6.5 (skipped by the scaler if fp16 gradients overflowed)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        interval_steps += 1

        # once in a while: the training loss, throughput, MFU and time left
        if (step + 1) % settings.log_interval == 0 or step + 1 == settings.max_iters:
            loss_value = global_loss(run, loss_sum)
            if not math.isfinite(loss_value):
                raise diverged(run, loop_state, f"the training loss is {loss_value}")
            rate = interval_steps * tokens_per_step / (time.perf_counter() - interval_start)  # float() above synced
            interval_start, interval_steps = time.perf_counter(), 0
            utilisation = mfu(flops_token, rate, peak)
            shown = f" | MFU {100 * utilisation:.1f}%" if utilisation is not None else ""
            elapsed = time.time() - t_start
            eta = (settings.max_iters - step - 1) * elapsed / max(step + 1 - start_step, 1)
            run.say(f"step {step:>5} | loss {loss_value:.4f} | lr {lr:.2e} | {rate:,.0f} tok/s"
                    f"{shown} | {format_eta(elapsed)} elapsed, "
                    f"{format_eta(eta)} left")
            if run.master:
                records.append({"step": step, "loss": loss_value, "lr": lr, "tokens_per_s": rate})
    finish(run, loop_state, records, time.time() - t_start)
    return 0


def finish(run: Run, loop_state: dict, records: list[dict], elapsed: float) -> None:
    """The end: the metrics file, a whole-split validation loss and what the model learned."""
    settings = run.settings
    if run.master:
        write_metrics(run.out_dir, records)
        run.say(f"done: {loop_state['step']} steps in {format_eta(elapsed)}; best val loss "
                f"{loop_state['best_val_loss']:.4f}; checkpoints in {run.out_dir} (ckpt.pt latest, best.pt best)")
        if settings.objective == "clm":
            loss = full_split_loss(run.raw_model, run.val_data, run.config.max_seq_len, settings.batch_size, run.device,
                                   run.ctx)
            run.say(f"val loss over the whole val split ({len(run.val_data):,} tokens): {loss:.4f}")
        if settings.samples:
            show_samples(run.raw_model, run.tokenizer, settings, run.device, run.ctx, run.val_data)
    if run.ddp:
        dist.destroy_process_group()


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


def show_samples(model, tokenizer, settings: TrainSettings, device: str, ctx, val_data) -> None:
    """clm: sample text from the model; mlm: mask a few tokens of validation text and show the model's guesses."""
    gen = torch.Generator(device=device).manual_seed(settings.seed)
    model.eval()
    if settings.objective == "clm":
        try:
            start = tokenizer.encode("\n")  # start each sample on a new line, as the text does
        except ValueError:
            start = [int(val_data[0])]
        for i in range(settings.samples):
            idx = torch.tensor([start], dtype=torch.long, device=device)
            with ctx:
                out = model.generate(idx, settings.sample_tokens, temperature=0.8, top_k=200, generator=gen)
            print(f"--- sample {i + 1} " + "-" * 60 + "\n" + tokenizer.decode(out[0].tolist()))
        return
    T = min(model.config.max_seq_len, 48)
    for i in range(settings.samples):
        start = i * len(val_data) // max(settings.samples, 1)
        x = torch.from_numpy(val_data[start:start + T].astype("int64"))[None]  # (1, T)
        inputs, targets = mask_tokens(x, tokenizer.mask_id, tokenizer.vocab_size, tokenizer.special_ids,
                                      torch.Generator().manual_seed(i), mask_prob=settings.mask_prob)
        with torch.no_grad(), ctx:
            logits, _ = model(inputs.to(device))
        guess = logits.argmax(-1)[0].cpu()
        where = (targets[0] != IGNORE_INDEX).nonzero().flatten().tolist()
        print(f"--- masked example {i + 1} " + "-" * 52)
        print("input:  " + tokenizer.decode([t for t in inputs[0].tolist()]))
        for p in where:
            print(f"  position {p}: true {tokenizer.decode([int(targets[0, p])])!r}, "
                  f"predicted {tokenizer.decode([int(guess[p])])!r}")


if __name__ == "__main__":
    sys.exit(main())
