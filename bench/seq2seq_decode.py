"""Encoder-decoder decoding speed with and without the caches (tokens/s), same model, same run.

    python bench/seq2seq_decode.py [--batch 64] [--repeats 3] [--json bench/results/seq2seq_decode.json]

"With caches": the decoder's self-attention keeps its keys / values in a KVCache (Eq. 3.7) and every block's
cross-attention keys / values are projected from the encoder output once per source (Eq. 8.10). "Without": each step
reruns the decoder over the whole prefix and re-projects the memory. The model has the dates-seq2seq preset's shape
(train_seq2seq.py) with random weights (speed does not depend on what was learned); eos is made unreachable
(its embedding row is zero, so its logit is 0 and loses to the others) so that every row decodes the full length.
Rows: the dates task (11 output tokens, source of 35), greedy and beam 4, and a 64-token target. The outputs of the
two paths are checked identical before the ratio is printed; the median of --repeats runs is reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from minilm.files import atomic_write_text
from minilm.seq2seq import EncoderDecoder, Seq2SeqConfig


def measure(model, src, src_mask, new_tokens: int, beam: int, repeats: int) -> dict:
    out, times = {}, {True: [], False: []}
    for use_cache in (True, False):
        model.generate(src, min(new_tokens, 2), src_mask, beam_size=beam, use_cache=use_cache)  # warm-up
    for _ in range(repeats):
        for use_cache in (True, False):
            t0 = time.perf_counter()
            out[use_cache] = model.generate(src, new_tokens, src_mask, beam_size=beam, use_cache=use_cache)
            times[use_cache].append(time.perf_counter() - t0)
    assert torch.equal(out[True], out[False]), "cached and recomputed decoding disagree"
    n = out[True].numel()  # output tokens of the batch (beam: the returned best target of each source)
    cached, recomputed = (n / statistics.median(times[c]) for c in (True, False))
    return {"new_tokens": out[True].shape[1], "beam_size": beam, "cached_tokens_per_s": cached,
            "recomputed_tokens_per_s": recomputed, "speedup": cached / recomputed}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64, help="sources decoded together")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats (median reported)")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    rows = []
    for new_tokens, beam in ((11, 1), (11, 4), (64, 1)):
        cfg = Seq2SeqConfig(src_vocab_size=72, tgt_vocab_size=14, max_src_len=35, max_tgt_len=new_tokens + 1,
                            d_model=64, n_heads=4, n_enc_layers=2, n_dec_layers=2, fused_kernels=True,
                            bos_id=11, eos_id=12)
        model = EncoderDecoder(cfg).eval()
        with torch.no_grad():
            model.decoder.tok_emb.weight[cfg.eos_id].zero_()  # eos logit 0: never the argmax of random logits
        src = torch.randint(0, 71, (args.batch, 35))
        src_mask = torch.ones_like(src)
        rows.append(measure(model, src, src_mask, new_tokens, beam, args.repeats))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; d_model 64, 2 + 2 layers, "
          f"batch {args.batch}, source 35 tokens")
    print(f"{'target':>7} {'beam':>5} | {'with caches':>12} {'without':>10} | speed-up (identical outputs)")
    for r in rows:
        print(f"{r['new_tokens']:>7} {r['beam_size']:>5} | {r['cached_tokens_per_s']:>8.0f} t/s "
              f"{r['recomputed_tokens_per_s']:>6.0f} t/s | {r['speedup']:.2f}x")
    if args.json:
        atomic_write_text(args.json, json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                                                 "batch": args.batch, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
