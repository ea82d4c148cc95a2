"""Long-range dependence: recall a token shown k positions earlier, for an LSTM and a Transformer of equal size and
budget; and the gradient that reaches position t - k from the loss at t (vanishing gradients made visible).

    python bench/long_range.py                     # both models, k = 8 ... 256; writes lectures/results/long_range.json

The task (a one-item recall with distractors): a sequence of k + 10 random filler tokens (16 kinds) holds one value
token (10 kinds, never a filler) at position t - k and a query token at the last position t, where the model must
name the value; nothing else is scored (chance: 1/10). Training cycles through k in {8, 16, 32, 64, 128, 256}, one k
per batch, so one run covers every distance with the same budget; accuracy is then measured per k on 500 fresh
sequences. The Transformer can read the value in one attention step at any k; the LSTM must carry it through k
updates of its state. Both models: 2 layers, ~0.12M parameters (Transformer d_model 64, 4 heads, PyTorch's fused
attention; LSTM hidden 84, untied, PyTorch's fused LSTM), the same AdamW settings, steps, batch and sequences (float32).

The gradient: the loss at the last position t of k = 256 sequences, differentiated with respect to the input
embedding at t - k; its norm, averaged over a batch, for every k, at initialisation and after training.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minilm.files import atomic_write_text  # noqa: E402
from minilm.config import IGNORE_INDEX, ModelConfig  # noqa: E402
from minilm.model import CausalLM  # noqa: E402
from minilm.rnn import RNNLM  # noqa: E402
from minilm.training import clip_grad_norm, configure_optimizer, get_lr  # noqa: E402

N_FILLER, N_VALUE = 16, 10
VALUE0, QUERY = N_FILLER, N_FILLER + N_VALUE  # ids: fillers 0..15, values 16..25, the query 26
KS = [8, 16, 32, 64, 128, 256]
PREFIX = 9  # fillers before the value, so it is never the first token
V, T_MAX = N_FILLER + N_VALUE + 1, max(KS) + PREFIX + 1


def recall_batch(B: int, k: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y), both (B, T) with T = k + 10: x fillers with a value at T-1-k and the query at T-1; y IGNORE_INDEX
    except the value at T-1."""
    T = k + PREFIX + 1
    x = torch.randint(0, N_FILLER, (B, T), generator=generator)  # (B, T)
    value = VALUE0 + torch.randint(0, N_VALUE, (B,), generator=generator)  # (B,)
    x[:, T - 1 - k] = value
    x[:, -1] = QUERY
    y = torch.full((B, T), IGNORE_INDEX)
    y[:, -1] = value
    return x, y


def build(arch: str) -> torch.nn.Module:
    if arch == "transformer":
        return CausalLM(ModelConfig(vocab_size=V, max_seq_len=T_MAX, d_model=64, n_heads=4, n_layers=2, gelu="exact",
                                    attn_impl="sdpa", fused_kernels=True))
    return RNNLM(ModelConfig(arch="lstm", vocab_size=V, max_seq_len=T_MAX, d_model=84, n_layers=2, tie_weights=False,
                             fused_kernels=True))  # untied, as the presets: RNNLM's docstring says why


def embedding_of(model) -> torch.nn.Module:
    return model.backbone.tok_emb if isinstance(model, CausalLM) else model.tok_emb


def gradient_by_distance(model, generator: torch.Generator, B: int = 32) -> list[float]:
    """||d loss_t / d e_{t-k}|| averaged over B sequences of the longest k, for k = 0 .. T-1 (t = T-1, e = the input
    embedding)."""
    kept = []

    def keep(module, inputs, out):  # the embedding's output is a leaf of nothing we own: ask autograd to keep its grad
        out.retain_grad()
        kept.append(out)

    hook = embedding_of(model).register_forward_hook(keep)
    x, y = recall_batch(B, max(KS), generator)
    T = x.shape[1]
    model.eval()  # no dropout either way; the same forward as training otherwise
    _, loss = model(x, y)
    loss.backward()
    hook.remove()
    model.zero_grad(set_to_none=True)
    model.train()
    norms = kept[0].grad.norm(dim=-1).mean(dim=0)  # (T,): position s
    return [float(norms[T - 1 - k]) for k in range(T)]


@torch.no_grad()
def accuracy_by_k(model, generator: torch.Generator, n: int = 500, ks: list[int] = KS) -> dict[int, float]:
    model.eval()
    result = {}
    for k in ks:
        correct = 0
        for start in range(0, n, 100):
            x, y = recall_batch(min(100, n - start), k, generator)
            logits, _ = model(x)  # (B, T, V)
            correct += int((logits[:, -1].argmax(-1) == y[:, -1]).sum())
        result[k] = correct / n
    model.train()
    return result


def train(arch: str, steps: int, batch_size: int, lr: float, seed: int, ks: list[int] = KS) -> dict:
    """Train on the recall task cycling through the distances `ks`; accuracy for every k of KS afterwards."""
    torch.manual_seed(seed)
    model = build(arch)
    grad_init = gradient_by_distance(model, torch.Generator().manual_seed(seed + 1))
    optimizer = configure_optimizer(model, lr, 0.1, (0.9, 0.99))
    data = torch.Generator().manual_seed(seed)  # the same stream of sequences for both models
    curve, t0 = [], time.perf_counter()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = get_lr(step, lr, lr / 10, min(50, steps), steps)
        x, y = recall_batch(batch_size, ks[step % len(ks)], data)  # one k per batch, in turn
        _, loss = model(x, y)
        loss.backward()
        clip_grad_norm(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if (step + 1) % max(steps // 10, 1) == 0:
            curve.append({"step": step + 1, "loss": float(loss.detach()), "k": ks[step % len(ks)]})
            print(f"{arch} step {step + 1}: loss {float(loss):.3f}", flush=True)
    seconds = time.perf_counter() - t0
    return {"params": sum(p.numel() for p in model.parameters()), "train_seconds": round(seconds, 1),
            "accuracy": accuracy_by_k(model, torch.Generator().manual_seed(seed + 2), ks=sorted(set(KS) | set(ks))),
            "curve": curve,
            "grad_norm_init": grad_init, "grad_norm_trained": gradient_by_distance(model, torch.Generator().manual_seed(seed + 1))}


def machine() -> dict:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    cpu = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "?")
    return {"cpu": cpu, "load_average": [round(x, 2) for x in os.getloadavg()], "threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "note": "a shared machine (2 cores, several users): times are noisy, accuracies are not"}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", choices=["transformer", "lstm"], help="train only this model; keep the other's results")
    p.add_argument("--one-k", type=int, nargs="*", default=[],
                   help="also train an LSTM on each of these distances alone (same steps), added to --out's JSON")
    p.add_argument("--out", default=str(ROOT / "lectures" / "results" / "long_range.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.one_k:  # the LSTM at a single distance: can it learn the recall at all when k does not vary?
        results = json.loads(Path(args.out).read_text())
        results["lstm_one_k"] = results.get("lstm_one_k", {})
        for k in args.one_k:
            row = train("lstm", args.steps, args.batch_size, args.lr, args.seed, ks=[k])
            results["lstm_one_k"][str(k)] = {"accuracy": row["accuracy"][k], "train_seconds": row["train_seconds"],
                                             "machine": machine()}
            print(f"lstm trained at k = {k} only: accuracy {row['accuracy'][k]:.2f}", flush=True)
            done = " ".join(sorted(results["lstm_one_k"], key=int))  # every k so far, one run each, same settings
            results["lstm_one_k_command"] = (f"python bench/long_range.py --one-k {done} --steps {args.steps} "
                                             f"--batch-size {args.batch_size} --lr {args.lr}")
            atomic_write_text(args.out, json.dumps(results, indent=1) + "\n")
        return
    results = {"task": __doc__.split("\n\n")[2], "ks": KS, "chance": 1 / N_VALUE,
               "command": f"python bench/long_range.py --steps {args.steps} --batch-size {args.batch_size} "
                          f"--lr {args.lr} --seed {args.seed}", "models": {}}
    if args.only:  # retrain one model, keep the other's row
        results = {**json.loads(Path(args.out).read_text()), "command": results["command"]}
    for arch in [args.only] if args.only else ("transformer", "lstm"):
        results["models"][arch] = {**train(arch, args.steps, args.batch_size, args.lr, args.seed), "machine": machine()}
        row = results["models"][arch]
        print(f"{arch:>12} ({row['params']:,} parameters, {row['train_seconds']:.0f} s): accuracy by k "
              + ", ".join(f"{k}: {a:.2f}" for k, a in row["accuracy"].items()), flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
