"""Translate with a trained encoder-decoder on the command line, and the text <-> batch plumbing around it.

    python -m minilm.translate --ckpt out/dates-seq2seq --source "le 14 juillet 1789"        # -> 1789-07-14
    python -m minilm.translate --ckpt out/dates-seq2seq --source "3/3/99" --beam-size 4

The checkpoint (written by train_seq2seq.py) carries the model config and both character vocabularies.
Also here, for train_seq2seq.py, the lecture and the tests: source/target pair arrays of a prepared dataset
(data/dates/prepare.py) as batches, and exact-match / character accuracy of decoded outputs.
The model is minilm/seq2seq.py (lectures/08_encoder_decoder.ipynb, Eqs. 8.1-8.10).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

from .checkpoint import find_checkpoint, load_checkpoint
from .cli import OneLineParser, run_main
from .config import IGNORE_INDEX
from .data import pad_rows
from .seq2seq import EncoderDecoder, Seq2SeqConfig
from .tokenizer import tokenizer_from_dict


# ------------------------------------------------------------------------------------------------- data on disk
def load_pairs(data_dir, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(src, tgt) int16 arrays (N, S_max), (N, T_max) of a prepared split, memory-mapped (data/dates/prepare.py)."""
    paths = [Path(data_dir) / f"{split}.{side}.npy" for side in ("src", "tgt")]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: prepare the data first (python data/dates/prepare.py "
                                    f"--out-dir {data_dir})")
    src, tgt = (np.load(p, mmap_mode="r") for p in paths)
    if src.ndim != 2 or tgt.ndim != 2 or len(src) != len(tgt) or len(src) == 0:
        raise ValueError(f"{paths[0]} and {paths[1]} do not hold matching (N, length) arrays: re-run prepare.py")
    return src, tgt


def pair_batch(src: np.ndarray, tgt: np.ndarray, rows, src_pad: int, tgt_pad: int, device="cpu") -> tuple:
    """(src, tgt_in, src_mask, targets) for model(*batch), trimmed to the longest source of the batch.

    tgt rows are <bos> y_1 .. y_n <eos> <pad>...: the decoder reads tgt[:, :-1] (teacher forcing: the true previous
    token, Eq. 8.6) and predicts tgt[:, 1:]; padding is IGNORE_INDEX there, and 0 in src_mask.
    """
    s = torch.from_numpy(np.asarray(src[rows], dtype=np.int64))  # (B, S_max)
    t = torch.from_numpy(np.asarray(tgt[rows], dtype=np.int64))  # (B, T_max)
    src_mask = s != src_pad  # (B, S_max)
    S = int(src_mask.sum(dim=1).max())
    s, src_mask = s[:, :S], src_mask[:, :S].long()  # (B, S)
    targets = t[:, 1:].masked_fill(t[:, 1:] == tgt_pad, IGNORE_INDEX)  # (B, T_max - 1)
    return s.to(device), t[:, :-1].to(device), src_mask.to(device), targets.to(device)


def accuracy(pred: torch.Tensor, targets: torch.Tensor, eos_id: int) -> tuple[float, float]:
    """(exact match, character accuracy) of decoded ids pred (B, n) against targets (B, T) (pair_batch's).

    Both compare the characters before eos: exact match needs every one right and the lengths equal; character
    accuracy is the fraction of target characters predicted at their position (a shorter output misses the rest).
    """
    B, T = targets.shape
    ref = targets.masked_fill(targets == IGNORE_INDEX, eos_id)  # (B, T)
    out = torch.full((B, T), -1, dtype=torch.long)
    n = min(T, pred.shape[1])
    out[:, :n] = pred[:, :n].cpu()
    ref = ref.cpu()
    is_char = torch.cumprod((ref != eos_id).long(), dim=1).bool()  # (B, T): positions before the first eos
    pred_char = torch.cumprod((out != eos_id).long(), dim=1).bool()
    hit = (out == ref) & is_char
    exact = ((hit | ~is_char).all(dim=1) & (pred_char == is_char).all(dim=1)).float().mean()
    return float(exact), float(hit.sum() / is_char.sum())


@torch.no_grad()
def evaluate_split(model: EncoderDecoder, src, tgt, src_pad: int, tgt_pad: int, beam_size: int = 1,
                   batch_size: int = 500, limit: int | None = None, device="cpu", ctx=None) -> dict:
    """Decode a whole split (or its first `limit` pairs): {"exact": .., "char": .., "n": ..}."""
    N = len(src) if limit is None else min(limit, len(src))
    exact = char = 0.0
    for i in range(0, N, batch_size):
        rows = np.arange(i, min(i + batch_size, N))
        s, _, m, targets = pair_batch(src, tgt, rows, src_pad, tgt_pad, device)
        with ctx if ctx is not None else contextlib.nullcontext():
            pred = model.generate(s, targets.shape[1], m, beam_size=beam_size)  # (B, n)
        e, c = accuracy(pred, targets, model.config.eos_id)
        exact, char = exact + e * len(rows), char + c * len(rows)  # every target has the same length here
    return {"exact": exact / N, "char": char / N, "n": N}


# ------------------------------------------------------------------------------------------------- checkpoints
def load_seq2seq(path, device: str = "cpu"):
    """(model, src_tokenizer, tgt_tokenizer, meta) from a train_seq2seq.py checkpoint (a file or a run directory:
    best.pt first). A decoder-only or classifier checkpoint raises ValueError saying which script it belongs to."""
    file = find_checkpoint(path)
    tensors, meta = load_checkpoint(file, map_location=device)
    if meta.get("kind") != "seq2seq":
        hint = {"clm": "a causal LM (decoder-only): use python -m minilm.generate",
                "mlm": "a masked LM (encoder-only): fine-tune it with finetune.py",
                "classifier": "a fine-tuned classifier: use finetune.py"}.get(meta.get("kind"), "not a seq2seq model")
        raise ValueError(f"{file} is a {meta.get('kind')!r} checkpoint, {hint}; translation needs an encoder-decoder "
                         f"checkpoint written by train_seq2seq.py")
    if "model" not in tensors or "model_config" not in meta:
        raise ValueError(f"{file} has no model weights or config: it is not a complete train_seq2seq.py checkpoint")
    model = EncoderDecoder(Seq2SeqConfig.from_dict(meta["model_config"]))
    try:
        model.load_state_dict(tensors["model"])
    except RuntimeError as e:
        raise ValueError(f"{file}: weights do not fit the encoder-decoder its metadata describes "
                         f"({str(e).splitlines()[0][:200]})") from None
    src_tok, tgt_tok = tokenizer_from_dict(meta["src_tokenizer"]), tokenizer_from_dict(meta["tgt_tokenizer"])
    return model.to(device).eval(), src_tok, tgt_tok, meta


def translate(model: EncoderDecoder, src_tok, tgt_tok, sources: list[str], beam_size: int = 1,
              max_new_tokens: int | None = None, device="cpu") -> list[str]:
    """Translate each source string; raises ValueError for an empty source, a character outside the source
    vocabulary, or a source longer than the encoder's context."""
    S_max = model.config.max_src_len
    ids = []
    for text in sources:
        if not text:
            raise ValueError("the source is empty: give some text to translate")
        try:
            row = src_tok.encode(text)
        except ValueError:
            bad = sorted({c for c in text if c not in getattr(src_tok, "stoi", {})})
            raise ValueError(f"source {text!r} holds character(s) {''.join(bad)!r} outside the model's source "
                             f"vocabulary of {src_tok.base_vocab_size} characters") from None
        if len(row) > S_max:
            raise ValueError(f"source {text!r} is {len(row)} characters, longer than the encoder's context "
                             f"(max_src_len={S_max}): shorten it")
        ids.append(row)
    src, src_mask = pad_rows(ids, src_tok.pad_id)  # (B, S) each, S = the longest source
    n = max_new_tokens or model.config.max_tgt_len - 1
    out = model.generate(src.to(device), n, src_mask.to(device), beam_size=beam_size)  # (B, n)
    texts = []
    for row in out.tolist():
        row = row[:row.index(tgt_tok.eos_id)] if tgt_tok.eos_id in row else row
        texts.append(tgt_tok.decode(row))
    return texts


@torch.no_grad()
def cross_attention_map(model: EncoderDecoder, src_tok, tgt_tok, source: str, layer: int = -1) -> dict:
    """Which source characters each output character reads: translate `source` greedily, re-run the decoder on its
    own output with the cross-attention weights recorded (Eq. 8.3), average the heads of decoder block `layer`.

    Returns {"source": [chars], "output": [chars + "<eos>"], "weights": (T_out, S) nested lists, rows sum to 1}.
    """
    output = translate(model, src_tok, tgt_tok, [source])[0]
    src = torch.tensor([src_tok.encode(source)])  # (1, S)
    out_ids = tgt_tok.encode(output) + [tgt_tok.eos_id]
    tgt_in = torch.tensor([[tgt_tok.bos_id] + out_ids[:-1]])  # (1, T): each row predicts the next output char
    attn = model.decoder.blocks[layer].cross_attn
    attn.record_weights = True
    try:
        model(src, tgt_in)
        weights = attn.attn_weights[0].mean(dim=0)  # (H, T, S) -> (T, S)
    finally:
        attn.record_weights, attn.attn_weights = False, None
    return {"source": list(source), "output": list(output) + ["<eos>"], "weights": weights.tolist()}


def main(argv=None) -> int:
    p = OneLineParser(prog="python -m minilm.translate", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="a checkpoint file, or a train_seq2seq.py --out-dir (uses best.pt)")
    p.add_argument("--source", action="append", required=True, help="text to translate (repeat for several)")
    p.add_argument("--beam-size", type=int, default=1, help="1 = greedy (default); more = beam search")
    p.add_argument("--json", action="store_true", help="print one JSON object per source instead of the text")
    p.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    args = p.parse_args(argv)

    def work() -> int:
        if args.beam_size < 1:
            raise ValueError(f"--beam-size must be >= 1, got {args.beam_size}")
        model, src_tok, tgt_tok, _ = load_seq2seq(args.ckpt)
        outputs = translate(model, src_tok, tgt_tok, args.source, args.beam_size)
        for source, output in zip(args.source, outputs):
            print(json.dumps({"source": source, "output": output}, ensure_ascii=False) if args.json else output)
        return 0

    return run_main("translate", work, args.debug)


if __name__ == "__main__":
    sys.exit(main())
