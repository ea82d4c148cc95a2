"""Sample text from a trained causal LM on the command line (or from Python: `generate_text`).

    python -m minilm.generate --ckpt out/shakespeare-char --prompt "ROMEO:" --max-new-tokens 500 \\
        --temperature 0.8 --top-k 200 --top-p 0.95 --seed 0

The checkpoint carries the model config and the tokenizer, so nothing else is needed. Decoding rules (temperature,
top-k, top-p) are in sampling.py and CausalLM.generate (Eqs. 5.7-5.9, lectures/05_model.ipynb); the KV cache that
makes this fast is in attention.py (Eq. 3.7, lectures/03_attention.ipynb). A recurrent LM (train.py --arch lstm /
gru) samples the same way, carrying its state instead of a cache (RNNLM.generate, lectures/10_rnn_vs_attention.ipynb).
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from minilm.checkpoint import load_model
from minilm.cli import OneLineParser, run_main
from minilm.training import autocast_context, resolve_device, resolve_dtype


def generate_text(model, tokenizer, prompt: str, max_new_tokens: int, temperature: float = 1.0,
                  top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                  num_samples: int = 1, device: str = "cpu", ctx=None) -> list[str]:
    """Encode `prompt`, sample `num_samples` continuations, return the decoded texts (prompt included).

    Raises ValueError when the prompt holds text the tokenizer cannot encode or is longer than the context.
    """
    ids = tokenizer.encode(prompt) if prompt else [tokenizer.eos_id if tokenizer.eos_id is not None else 0]
    if len(ids) > model.config.max_seq_len:
        raise ValueError(f"the prompt is {len(ids)} tokens but the model's context is {model.config.max_seq_len}: "
                         f"shorten the prompt")
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    idx = torch.tensor([ids] * num_samples, dtype=torch.long, device=device)  # (num_samples, T)
    with ctx if ctx is not None else torch.no_grad():
        out = model.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                             eos_id=None, generator=generator)  # (num_samples, T + max_new_tokens)
    return [tokenizer.decode(row.tolist()) for row in out]


def main(argv=None) -> int:
    p = OneLineParser(prog="python -m minilm.generate", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="a checkpoint file, or a train.py --out-dir (uses best.pt)")
    p.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    p.add_argument("--prompt-file", help="read the prompt from this file instead")
    p.add_argument("--max-new-tokens", type=int, default=500, help="tokens to generate (default: 500)")
    p.add_argument("--temperature", type=float, default=0.8, help="< 1 sharper, > 1 flatter, 0 greedy (default: 0.8)")
    p.add_argument("--top-k", type=int, default=200, help="keep the k most likely tokens (0 = off; default: 200)")
    p.add_argument("--top-p", type=float, default=None, help="keep the nucleus of probability p (default: off)")
    p.add_argument("--num-samples", type=int, default=1, help="independent samples (default: 1)")
    p.add_argument("--seed", type=int, default=None, help="random seed, for reproducible samples")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    p.add_argument("--dtype", default="float32", help="auto, float32, bfloat16 or float16 (default: float32)")
    p.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    args = p.parse_args(argv)
    return run_main("generate", lambda: generate(args), args.debug)


def generate(args: argparse.Namespace) -> int:
    if args.max_new_tokens < 0 or args.num_samples < 1 or args.top_k < 0:
        raise ValueError("--max-new-tokens and --top-k must be >= 0 and --num-samples >= 1")
    device = resolve_device(args.device)
    ctx = autocast_context(device, resolve_dtype(args.dtype, device))
    model, tokenizer, meta = load_model(args.ckpt, device)
    if meta["kind"] != "clm":
        raise ValueError(f"{args.ckpt} holds a {meta['kind']} model; generation needs a causal LM "
                         f"(train.py --objective clm)")
    prompt = args.prompt
    if args.prompt_file:
        if not os.path.isfile(args.prompt_file):
            raise FileNotFoundError(f"--prompt-file {args.prompt_file} does not exist")
        with open(args.prompt_file, encoding="utf-8") as f:
            prompt = f.read()
    texts = generate_text(model, tokenizer, prompt, args.max_new_tokens, args.temperature, args.top_k or None,
                          args.top_p, args.seed, args.num_samples, device, ctx)
    for i, text in enumerate(texts):
        if len(texts) > 1:
            print(f"--- sample {i + 1} " + "-" * 60)
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
