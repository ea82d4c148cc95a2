"""The shared pieces of a training loop: optimizer groups, LR schedules, devices and mixed precision, evaluation,
seeding, and throughput / MFU accounting. The loops themselves stay visible in the scripts (train.py, finetune.py,
train_seq2seq.py).

- AdamW with decoupled weight decay: Loshchilov & Hutter 2019, https://arxiv.org/abs/1711.05101 (Algorithm 2).
- Linear warmup + cosine decay: Loshchilov & Hutter 2017 (SGDR), https://arxiv.org/abs/1608.03983, section 3,
  as used by GPT-3 (Brown et al. 2020, https://arxiv.org/abs/2005.14165, appendix B) and nanoGPT.
- Mixed precision and loss scaling: Micikevicius et al. 2018, https://arxiv.org/abs/1710.03740, section 3.2.
- Model FLOPs utilisation: Chowdhery et al. 2022 (PaLM), https://arxiv.org/abs/2204.02311, appendix B.
Explained in lectures/06_training.ipynb. Left out on purpose: gradient accumulation helpers (one line in the
loop) and learning-rate finders. Distributed data parallel needs no helper here: train.py sets it up in a few lines
(torchrun + DistributedDataParallel) where the loop can show it.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import random
import time
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn as nn

from . import optim

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}


# ---------------------------------------------------------------------------------------------- optimizer
def split_decay_params(model: nn.Module) -> tuple[list[tuple[str, nn.Parameter]], list[tuple[str, nn.Parameter]]]:
    """(decay, no_decay) lists of (name, parameter). Decay: every parameter with dim >= 2, i.e. Linear weights *and*
    embeddings, as nanoGPT does; no decay: biases and LayerNorm gains (1-D), which set scales and offsets rather than
    store features, so shrinking them toward 0 only hurts. named_parameters() yields a tied parameter once (under
    its first name), so the shared token embedding / lm_head weight lands in exactly one group."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]  # tied weights appear once
    return [(n, p) for n, p in params if p.dim() >= 2], [(n, p) for n, p in params if p.dim() < 2]


def configure_optimizer(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.95),
                        eps: float = 1e-8, device_type: str = "cpu", impl: str = "torch") -> torch.optim.Optimizer:
    """AdamW (Eq. 6.2-6.5) with weight decay only on >= 2-D parameters; fused kernel on CUDA.

    impl "torch": torch.optim.AdamW (fused on CUDA); "minilm": the hand-written minilm.optim.AdamW, the same groups
    and arithmetic (tested equal), one Python loop over the parameters.

    Eq. 6.2: m_t = b1 m_{t-1} + (1 - b1) g_t          Eq. 6.3: v_t = b2 v_{t-1} + (1 - b2) g_t^2
    Eq. 6.4: m^_t = m_t / (1 - b1^t), v^_t = v_t / (1 - b2^t)   (bias correction)
    Eq. 6.5: theta_t = theta_{t-1} - lr_t (m^_t / (sqrt(v^_t) + eps) + wd theta_{t-1})  (decoupled decay;
             PyTorch multiplies wd by lr_t as here, the paper by a separate schedule multiplier)
    betas (0.9, 0.95): GPT-3 appendix B (b2 = 0.95 instead of Adam's 0.999 for stability at large batch).
    """
    decay, no_decay = split_decay_params(model)
    groups = [{"params": [p for _, p in decay], "weight_decay": weight_decay},
              {"params": [p for _, p in no_decay], "weight_decay": 0.0}]
    if impl == "minilm":
        return optim.AdamW(groups, lr=lr, betas=betas, eps=eps)
    if impl != "torch":
        raise ValueError(f"optimizer must be 'torch' or 'minilm', got {impl!r}")
    fused = device_type == "cuda" and "fused" in inspect.signature(torch.optim.AdamW).parameters
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, **({"fused": True} if fused else {}))


def param_groups_summary(optimizer: torch.optim.Optimizer) -> list[dict]:
    """Per param group: weight_decay, number of tensors, number of scalars (for the script to log)."""
    return [{"weight_decay": g["weight_decay"], "tensors": len(g["params"]),
             "params": sum(p.numel() for p in g["params"])} for g in optimizer.param_groups]


def clip_grad_norm(parameters: Iterable[torch.Tensor], max_norm: float, optimizer=None, scaler=None) -> float:
    """Eq. 6.8: g <- g * min(1, c / ||g||_2), ||g||_2 = sqrt(sum_p ||g_p||^2) over *all* parameters (global norm,
    Pascanu et al. 2013, https://arxiv.org/abs/1211.5063). Unscales first when a GradScaler is in use, so the
    threshold applies to true gradients. max_norm <= 0 only measures. Returns the norm before clipping."""
    if scaler is not None and scaler.is_enabled():
        scaler.unscale_(optimizer)
    params = [p for p in parameters if p.grad is not None]
    limit = max_norm if max_norm > 0 else float("inf")
    return float(torch.nn.utils.clip_grad_norm_(params, limit))


# ---------------------------------------------------------------------------------------------- schedules
def _check_schedule(lr: float, min_lr: float, warmup_iters: int, max_iters: int) -> None:
    if warmup_iters < 0 or max_iters < warmup_iters:
        raise ValueError(f"need 0 <= warmup_iters <= max_iters, got warmup_iters={warmup_iters}, "
                         f"max_iters={max_iters}; shorten the warmup or train longer")
    if not 0 <= min_lr <= lr:
        raise ValueError(f"need 0 <= min_lr <= lr, got min_lr={min_lr}, lr={lr}")


def get_lr(step: int, lr: float, min_lr: float, warmup_iters: int, max_iters: int) -> float:
    """Eq. 6.6: linear warmup then cosine decay.
        lr_t = lr (t + 1) / W                                        for t < W
        lr_t = min_lr + 1/2 (lr - min_lr) (1 + cos(pi (t - W) / (S - W)))  for W <= t <= S
        lr_t = min_lr                                                for t > S
    W = warmup_iters, S = max_iters. Warmup counts from t + 1 so step 0 already gets a non-zero rate and step
    W - 1 reaches the peak lr (nanoGPT divides by W + 1 and never quite reaches it)."""
    _check_schedule(lr, min_lr, warmup_iters, max_iters)
    if step < warmup_iters:
        return lr * (step + 1) / warmup_iters
    if step >= max_iters:
        return min_lr
    ratio = (step - warmup_iters) / (max_iters - warmup_iters)  # 0 -> 1
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * ratio))


def get_lr_linear(step: int, lr: float, min_lr: float, warmup_iters: int, max_iters: int) -> float:
    """Eq. 6.7: linear warmup (as Eq. 6.6) then linear decay to min_lr at max_iters, constant after:
    lr_t = min_lr + (lr - min_lr) (S - t) / (S - W) for W <= t <= S. The usual fine-tuning schedule (BERT,
    Devlin et al. 2019, https://arxiv.org/abs/1810.04805, appendix A.2; min_lr = 0 there)."""
    _check_schedule(lr, min_lr, warmup_iters, max_iters)
    if step < warmup_iters:
        return lr * (step + 1) / warmup_iters
    if step >= max_iters:
        return min_lr
    return min_lr + (lr - min_lr) * (max_iters - step) / (max_iters - warmup_iters)


# ---------------------------------------------------------------------------------------------- devices, precision
def resolve_device(name: str) -> str:
    """"auto" -> "cuda" if available, else "mps", else "cpu". Explicit names ("cpu", "cuda", "cuda:1", "mps") are
    checked; returns the device string (its .type is what torch.autocast wants)."""
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": hasattr(torch.backends, "mps") and torch.backends.mps.is_available()}
    if name == "auto":
        return "cuda" if available["cuda"] else "mps" if available["mps"] else "cpu"
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type not in available:
        raise ValueError(f"unsupported device {name!r}: use auto, cpu, cuda, cuda:N or mps")
    if not available[dev.type]:
        raise ValueError(f"device {name!r} requested but {dev.type.upper()} is not available here: use cpu or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    return str(dev)


@functools.lru_cache(maxsize=None)
def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matmul instructions (x86 avx512_bf16 or AMX), where bf16 autocast pays."""
    if "AMX" in torch.backends.cpu.get_cpu_capability().upper():
        return True
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(name: str, device: str) -> torch.dtype:
    """Autocast dtype. "auto": bfloat16 on CUDA with bf16 (Ampere+), float16 on older CUDA, bfloat16 on CPUs with
    native bf16, else float32 (and always float32 on MPS). Explicit names are validated against the device."""
    key = _DTYPE_ALIASES.get(name, name)
    kind = torch.device(device).type
    if key == "auto":
        if kind == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if kind == "cpu" and cpu_supports_bf16():
            return torch.bfloat16
        return torch.float32
    if key not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}: use auto, float32, bfloat16 or float16")
    dtype = DTYPES[key]
    if kind == "cpu" and dtype == torch.float16:
        raise ValueError("dtype float16 is not supported on CPU (autocast there is bf16-only): use bfloat16 or float32")
    if kind == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise ValueError("dtype bfloat16 is not supported by this GPU (needs Ampere or newer): use float16 or float32")
    return dtype


def autocast_context(device: str, dtype: torch.dtype):
    """nullcontext for float32; otherwise torch.autocast, which runs matmuls in `dtype` and keeps reductions
    (softmax, norms, the loss) in float32 (Micikevicius et al. 2018, section 3)."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def make_grad_scaler(device: str, dtype: torch.dtype) -> torch.amp.GradScaler:
    """Eq. 6.9 loss scaling: backprop s * L, unscale g = grad(s L) / s, skip the step and halve s on inf/nan, double
    s after 2000 clean steps. Needed only for float16 (5-bit exponent); bfloat16 has float32's range. Disabled
    scalers are no-ops, so the loop can call scaler.scale / step / update unconditionally."""
    kind = torch.device(device).type
    return torch.amp.GradScaler(kind, enabled=(kind == "cuda" and dtype == torch.float16))


def maybe_compile(model: nn.Module, mode: str = "auto", device: str = "cpu") -> nn.Module:
    """torch.compile when mode == "on", or "auto" on CUDA (on 2 CPU cores it gave no clear gain; CONTRIBUTING.md).
    Keep the uncompiled model to save and evaluate: the compiled wrapper prefixes state_dict keys with _orig_mod."""
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"compile mode must be auto, on or off, got {mode!r}")
    if mode == "on" or (mode == "auto" and torch.device(device).type == "cuda"):
        return torch.compile(model)
    return model


# ---------------------------------------------------------------------------------------------- evaluation, seeds
@torch.no_grad()
def evaluate(model: nn.Module, get_batch: Callable[[], tuple], eval_iters: int, ctx=None) -> float:
    """Mean of the model's loss (Eq. 6.1: L = -1/N sum_i log p(y_i | x_<=i), over non-ignored targets) across
    eval_iters batches. get_batch() returns a tuple passed as model(*batch); the loss is output[1]. Runs in eval
    mode (dropout off) and restores the mode the model was in."""
    if eval_iters < 1:
        raise ValueError(f"eval_iters must be >= 1, got {eval_iters}")
    was_training = model.training
    model.eval()
    try:
        total = 0.0
        for _ in range(eval_iters):
            with ctx if ctx is not None else contextlib.nullcontext():
                loss = model(*get_batch())[1]
            total += float(loss)
        return total / eval_iters
    finally:
        model.train(was_training)


def set_seed(seed: int) -> None:
    """Seed Python's random, NumPy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(generators: dict[str, torch.Generator] | None = None) -> dict[str, torch.Tensor]:
    """Every global RNG state (and the given torch.Generators) as tensors, loadable with weights_only=True."""
    version, py_state, gauss = random.getstate()
    _, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "python": torch.tensor(py_state, dtype=torch.int64),
             "python_extra": torch.tensor([version, math.nan if gauss is None else gauss], dtype=torch.float64),
             "numpy": torch.from_numpy(np_keys.astype(np.int64)),
             "numpy_extra": torch.tensor([np_pos, np_has_gauss, np_gauss], dtype=torch.float64)}
    if torch.cuda.is_available():
        state["cuda"] = torch.stack(torch.cuda.get_rng_state_all())  # (n_devices, state_bytes)
    for name, gen in (generators or {}).items():
        state[f"generator.{name}"] = gen.get_state()
    return state


def set_rng_state(state: dict[str, torch.Tensor], generators: dict[str, torch.Generator] | None = None) -> None:
    """Inverse of rng_state; a CUDA state saved on another machine is restored only if the device count matches."""
    torch.set_rng_state(state["torch"].cpu())
    version, gauss = state["python_extra"].tolist()
    random.setstate((int(version), tuple(state["python"].tolist()), None if math.isnan(gauss) else gauss))
    pos, has_gauss, np_gauss = state["numpy_extra"].tolist()
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), int(pos), int(has_gauss), np_gauss))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(list(state["cuda"].cpu()))
    for name, gen in (generators or {}).items():
        if f"generator.{name}" not in state:
            raise ValueError(f"checkpoint has no state for generator {name!r}; it was saved by a different script")
        gen.set_state(state[f"generator.{name}"].cpu())


# ---------------------------------------------------------------------------------------------- throughput, MFU
# Dense (no 2:4 sparsity) peak FLOP/s from NVIDIA datasheets: (bf16, fp16, fp32) tensor-core / CUDA-core figures.
# None = no native support. First matching row wins, so more specific names come first.
_GPU_PEAKS = [  # (substrings that must all appear in the lower-cased device name, bf16, fp16, fp32)
    (("h100", "pcie"), 756e12, 756e12, 51e12),
    (("h100", "nvl"), 835e12, 835e12, 60e12),
    (("h100",), 989e12, 989e12, 67e12),  # SXM
    (("h200",), 989e12, 989e12, 67e12),
    (("gh200",), 989e12, 989e12, 67e12),
    (("a100",), 312e12, 312e12, 19.5e12),
    (("l40s",), 362e12, 362e12, 91.6e12),
    (("l40",), 181e12, 181e12, 90.5e12),
    (("l4",), 121e12, 121e12, 30.3e12),
    (("a10g",), 70e12, 70e12, 31.2e12),  # AWS A10G: not on an NVIDIA datasheet; commonly cited, unverified
    (("a10",), 125e12, 125e12, 31.2e12),
    (("4090",), 165e12, 165e12, 82.6e12),  # fp32 accumulate (GeForce runs fp16-accumulate at 2x)
    (("3090",), 71e12, 71e12, 35.6e12),
    (("v100",), None, 125e12, 15.7e12),
    (("t4",), None, 65e12, 8.1e12),
]
_cpu_peak_cache: dict[torch.dtype, float] = {}


def _cpu_matmul_flops(dtype: torch.dtype, n: int = 512, budget_s: float = 0.2) -> float:
    """Measured, not theoretical: n x n matmuls for ~budget_s seconds, 2 n^3 FLOPs each."""
    probe = torch.Generator().manual_seed(0)  # its own stream: the global one drives dropout, and a resumed run
    a, b = (torch.randn(n, n, dtype=dtype, generator=probe) for _ in range(2))  # restores it right before this runs
    a @ b  # warm-up: thread pool, oneDNN kernel selection
    count, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < budget_s or count < 3:
        a @ b
        count += 1
    return 2 * n**3 * count / elapsed


def peak_flops(device: str, dtype: torch.dtype) -> float | None:
    """Peak FLOP/s for MFU. CUDA: datasheet value for the GPU's name (None for an unknown GPU or an unsupported
    dtype). CPU: a short matmul probe, cached per dtype, so CPU "MFU" is relative to achievable matmul speed."""
    kind = torch.device(device).type
    if kind == "cuda":
        name = torch.cuda.get_device_name(torch.device(device)).lower()
        column = {torch.bfloat16: 1, torch.float16: 2, torch.float32: 3}[dtype]
        for row in _GPU_PEAKS:
            if all(part in name for part in row[0]):
                return row[column]
        return None
    if kind == "cpu":
        if dtype not in _cpu_peak_cache:
            _cpu_peak_cache[dtype] = _cpu_matmul_flops(dtype)
        return _cpu_peak_cache[dtype]
    return None


def mfu(flops_per_token: float, tokens_per_s: float, peak: float | None) -> float | None:
    """Eq. 6.10: MFU = (training FLOPs per token, ~6N + 12 L T D forward+backward, PaLM appendix B) * tokens/s / peak
    FLOP/s. None when the peak is unknown."""
    if peak is None or peak <= 0:
        return None
    return flops_per_token * tokens_per_s / peak


def format_eta(seconds: float | None) -> str:
    """Compact duration: 42s, 3m05s, 1h02m05s, 2d03h; "?" for unknown/infinite."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    days, rest = divmod(int(round(seconds)), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
