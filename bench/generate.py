"""Generation speed with and without the KV cache (tokens/s), same model, same run.

    python bench/generate.py [--new-tokens 512] [--repeats 3]

The model is a 4-layer, d_model 128 causal LM (random weights: speed does not depend on what was learned) with a
context long enough to hold prompt + new tokens, so the cache is never refreshed. Greedy decoding, batch 1; the two
outputs are checked to be identical before the speed-up is printed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from minilm import CausalLM, ModelConfig


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--new-tokens", type=int, default=512, help="tokens to generate")
    p.add_argument("--prompt-len", type=int, default=16, help="prompt length")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats (median reported)")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=65, max_seq_len=args.prompt_len + args.new_tokens, d_model=128, n_heads=4, n_layers=4)
    model = CausalLM(cfg).eval()
    prompt = torch.randint(0, cfg.vocab_size, (1, args.prompt_len))
    results, outputs = {}, {}
    for use_cache in (True, False):
        model.generate(prompt, 8, temperature=0, use_cache=use_cache)  # warm-up
    times = {True: [], False: []}
    for _ in range(args.repeats):
        for use_cache in (True, False):
            t0 = time.perf_counter()
            outputs[use_cache] = model.generate(prompt, args.new_tokens, temperature=0, use_cache=use_cache)
            times[use_cache].append(time.perf_counter() - t0)
    assert torch.equal(outputs[True], outputs[False]), "cache and recompute disagree"
    for use_cache in (True, False):
        results[use_cache] = args.new_tokens / statistics.median(times[use_cache])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; 4 layers, d_model 128, "
          f"{args.new_tokens} new tokens after a {args.prompt_len}-token prompt, greedy, batch 1")
    print(f"with KV cache:    {results[True]:8.1f} tokens/s")
    print(f"without KV cache: {results[False]:8.1f} tokens/s")
    print(f"speed-up: {results[True] / results[False]:.1f}x (identical outputs)")


if __name__ == "__main__":
    main()
