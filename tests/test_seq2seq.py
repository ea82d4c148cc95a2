"""minilm/seq2seq.py and minilm/translate.py: the encoder-decoder against PyTorch's own layers, its behaviour, and
train_seq2seq.py (trains, resumes exactly) on a tiny preset."""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from minilm.config import IGNORE_INDEX
from minilm.seq2seq import EncoderDecoder, Seq2SeqConfig, beam_search_step, seq2seq_loss
from minilm.translate import accuracy, pair_batch

ROOT = Path(__file__).resolve().parents[1]


def _config(**kw) -> Seq2SeqConfig:
    base = dict(src_vocab_size=23, tgt_vocab_size=9, max_src_len=12, max_tgt_len=8, d_model=16, n_heads=4,
                n_enc_layers=2, n_dec_layers=2, gelu="exact", bos_id=0, eos_id=1)
    return Seq2SeqConfig(**{**base, **kw})


def _randomize(model: nn.Module, scale: float = 0.3) -> nn.Module:
    """Random values in every parameter (LayerNorm gains near 1), so a swapped or skipped weight shows."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * scale + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
    return model


def _source(B=3, S=7, V=23, lengths=(7, 4, 2)):
    src = torch.randint(0, V, (B, S))
    src_mask = (torch.arange(S)[None] < torch.tensor(lengths)[:, None]).long()  # (B, S): 1 = token, 0 = pad
    return src, src_mask


# ------------------------------------------------------------------------------------------ oracle: PyTorch's layers
def _grads(params) -> list[torch.Tensor]:
    return [p.grad.clone() for p in params]


def test_encoder_layers_equal_torch_encoder_layer_values_and_gradients():
    model = _randomize(EncoderDecoder(_config())).train()  # dropout 0: train mode is the plain path in both
    D, H = 16, 4
    src_mask = _source()[1]
    for block in model.encoder.blocks:
        ref = nn.TransformerEncoderLayer(D, H, 64, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
        with torch.no_grad():
            ref.self_attn.in_proj_weight.copy_(block.attn.qkv_proj.weight)  # rows W_Q | W_K | W_V in both
            ref.self_attn.in_proj_bias.copy_(block.attn.qkv_proj.bias)
            for mine, theirs in [(block.attn.out_proj, ref.self_attn.out_proj), (block.norm1, ref.norm1),
                                 (block.norm2, ref.norm2), (block.mlp.fc_in, ref.linear1),
                                 (block.mlp.fc_out, ref.linear2)]:
                theirs.weight.copy_(mine.weight)
                theirs.bias.copy_(mine.bias)
        x = torch.randn(3, 7, D, requires_grad=True)
        x_ref = x.detach().clone().requires_grad_(True)
        y = block(x, src_mask)
        y_ref = ref(x_ref, src_key_padding_mask=src_mask == 0)
        torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-4)
        w = torch.randn_like(y)  # a random linear loss weighs every output coordinate
        (y * w).sum().backward()
        (y_ref * w).sum().backward()
        torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(block.attn.qkv_proj.weight.grad, ref.self_attn.in_proj_weight.grad,
                                   atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(block.mlp.fc_in.weight.grad, ref.linear1.weight.grad, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(block.norm1.weight.grad, ref.norm1.weight.grad, atol=1e-5, rtol=1e-4)


def _torch_decoder_layer(block, D=16, H=4) -> nn.TransformerDecoderLayer:
    ref = nn.TransformerDecoderLayer(D, H, 64, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(block.self_attn.qkv_proj.weight)
        ref.self_attn.in_proj_bias.copy_(block.self_attn.qkv_proj.bias)
        # cross-attention: PyTorch stacks W_Q | W_K | W_V in one in_proj; ours are q_proj and kv_proj (W_K | W_V)
        ref.multihead_attn.in_proj_weight.copy_(torch.cat([block.cross_attn.q_proj.weight,
                                                           block.cross_attn.kv_proj.weight]))
        ref.multihead_attn.in_proj_bias.copy_(torch.cat([block.cross_attn.q_proj.bias, block.cross_attn.kv_proj.bias]))
        for mine, theirs in [(block.self_attn.out_proj, ref.self_attn.out_proj),
                             (block.cross_attn.out_proj, ref.multihead_attn.out_proj), (block.norm1, ref.norm1),
                             (block.norm2, ref.norm2), (block.norm3, ref.norm3), (block.mlp.fc_in, ref.linear1),
                             (block.mlp.fc_out, ref.linear2)]:
            theirs.weight.copy_(mine.weight)
            theirs.bias.copy_(mine.bias)
    return ref.train()


def test_decoder_layers_equal_torch_decoder_layer_values_and_gradients():
    model = _randomize(EncoderDecoder(_config())).train()
    src_mask = _source()[1]
    for block in model.decoder.blocks:
        ref = _torch_decoder_layer(block)
        x = torch.randn(3, 5, 16, requires_grad=True)  # (B, T, D) the target stream
        memory = torch.randn(3, 7, 16, requires_grad=True)  # (B, S, D) the encoder output, padded
        x_ref, memory_ref = (t.detach().clone().requires_grad_(True) for t in (x, memory))
        y = block(x, memory, src_mask)
        y_ref = ref(x_ref, memory_ref, tgt_mask=nn.Transformer.generate_square_subsequent_mask(5), tgt_is_causal=True,
                    memory_key_padding_mask=src_mask == 0)
        torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-4)
        w = torch.randn_like(y)
        (y * w).sum().backward()
        (y_ref * w).sum().backward()
        for got, want in [(x.grad, x_ref.grad), (memory.grad, memory_ref.grad),
                          (block.cross_attn.kv_proj.weight.grad, ref.multihead_attn.in_proj_weight.grad[16:]),
                          (block.cross_attn.q_proj.weight.grad, ref.multihead_attn.in_proj_weight.grad[:16]),
                          (block.self_attn.qkv_proj.weight.grad, ref.self_attn.in_proj_weight.grad),
                          (block.norm3.weight.grad, ref.norm3.weight.grad)]:
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
        assert float(memory.grad[src_mask == 0].abs().max()) == 0.0, "padded source positions must get no gradient"


def test_sdpa_switch_equals_the_hand_written_attention():
    torch.manual_seed(1)
    manual = _randomize(EncoderDecoder(_config())).eval()
    fused = EncoderDecoder(_config(attn_impl="sdpa")).eval()
    fused.load_state_dict(manual.state_dict())
    src, src_mask = _source()
    tgt = torch.randint(0, 9, (3, 5))
    torch.testing.assert_close(fused(src, tgt, src_mask)[0], manual(src, tgt, src_mask)[0], atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------------------------------------------- behaviour
def test_the_output_projection_is_tied_to_the_target_embedding_and_sharing_ties_the_source_too():
    model = EncoderDecoder(_config())
    assert model.lm_head.weight is model.decoder.tok_emb.weight
    assert model.encoder.tok_emb.weight is not model.decoder.tok_emb.weight
    shared = EncoderDecoder(_config(src_vocab_size=9, share_embeddings=True))
    assert shared.encoder.tok_emb.weight is shared.decoder.tok_emb.weight is shared.lm_head.weight
    with pytest.raises(ValueError, match="share_embeddings"):
        _config(share_embeddings=True)


def test_loss_at_init_is_close_to_ln_v_and_label_smoothing_matches_its_formula():
    model = EncoderDecoder(_config()).eval()
    src, src_mask = _source()
    tgt_in = torch.randint(0, 9, (3, 5))
    targets = torch.randint(0, 9, (3, 5))
    targets[2, 3:] = IGNORE_INDEX
    logits, loss = model(src, tgt_in, src_mask, targets)
    assert abs(float(loss.detach()) - math.log(9)) < 0.1
    eps = 0.1
    keep = targets != IGNORE_INDEX
    logp = F.log_softmax(logits[keep], dim=-1)  # (N, V)
    q = torch.full_like(logp, eps / 9)
    q[torch.arange(len(q)), targets[keep]] += 1 - eps  # Eq. 8.7
    torch.testing.assert_close(seq2seq_loss(logits, targets, eps), -(q * logp).sum(-1).mean())


def test_padding_the_source_does_not_change_the_output():
    model = _randomize(EncoderDecoder(_config()), 0.5).eval()
    src, src_mask = _source()
    tgt = torch.randint(0, 9, (3, 6))
    logits = model(src, tgt, src_mask)[0]
    extra = torch.randint(0, 23, (3, 4))  # any ids at padded positions: they must be invisible
    src2 = torch.cat([src, extra], dim=1)
    src_mask2 = torch.cat([src_mask, torch.zeros(3, 4, dtype=torch.long)], dim=1)
    src2[src_mask2 == 0] = torch.randint(0, 23, (int((src_mask2 == 0).sum()),))
    torch.testing.assert_close(model(src2, tgt, src_mask2)[0], logits, atol=1e-5, rtol=1e-4)
    assert torch.equal(model.generate(src2, 6, src_mask2, beam_size=3), model.generate(src, 6, src_mask, beam_size=3))


def test_the_decoder_is_causal():
    model = _randomize(EncoderDecoder(_config())).eval()
    src, src_mask = _source()
    tgt = torch.randint(0, 9, (3, 6))
    changed = tgt.clone()
    changed[:, 4:] = (changed[:, 4:] + 1) % 9
    torch.testing.assert_close(model(src, changed, src_mask)[0][:, :4], model(src, tgt, src_mask)[0][:, :4])


def test_cached_decoding_equals_recomputing():
    model = _randomize(EncoderDecoder(_config()), 0.5).eval()
    src, src_mask = _source()
    for beam in (1, 3):
        cached = model.generate(src, 7, src_mask, beam_size=beam, use_cache=True)
        recomputed = model.generate(src, 7, src_mask, beam_size=beam, use_cache=False)
        assert torch.equal(cached, recomputed), beam
    # and the logits themselves, step by step: the cached decoder sees one token at a time
    tgt = torch.randint(0, 9, (3, 6))
    full = model(src, tgt, src_mask)[0]  # (B, T, V)
    caches = model._new_caches(True)
    kvs = model.memory_kvs(model.encode(src, src_mask))
    steps = [model.lm_head(model.decoder(tgt[:, t:t + 1], kvs, src_mask, caches)) for t in range(6)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-4)


def test_beam_size_one_equals_greedy():
    for seed in range(3):
        torch.manual_seed(seed)
        model = _randomize(EncoderDecoder(_config()), 0.6).eval()
        src, src_mask = _source()
        beam, _ = model.beam_search(src, 7, src_mask, beam_size=1)
        assert torch.equal(beam, model.generate(src, 7, src_mask))


@torch.no_grad()
def _sequence_log_probs(model, src, src_mask, seqs: list[list[int]], eos: int) -> list[float]:
    """log p(seq | src) of each sequence by teacher forcing (one batched forward), counting the tokens up to and
    including the first eos."""
    N, L = len(seqs), len(seqs[0])
    tgt = torch.tensor(seqs)  # (N, L)
    tgt_in = torch.cat([torch.full((N, 1), model.config.bos_id), tgt[:, :-1]], dim=1)  # (N, L)
    logp = F.log_softmax(model(src.expand(N, -1), tgt_in, src_mask.expand(N, -1))[0], dim=-1)  # (N, L, V)
    token_logp = logp.gather(2, tgt[:, :, None])[:, :, 0]  # (N, L)
    counted = torch.cumprod(torch.cat([torch.ones(N, 1), (tgt[:, :-1] != eos).float()], dim=1), dim=1)  # up to eos
    return (token_logp * counted).sum(dim=1).tolist()


def test_beam_search_returns_the_highest_scoring_sequence_of_a_tiny_model():
    """V = 4 target ids (bos, eos, a, b), 3 output tokens: every target can be scored, so the best is known."""
    found_gap = False
    L, eos = 3, 1
    seqs = set()
    for seq in itertools.product(range(4), repeat=L):
        seq = list(seq)
        if eos in seq:  # canonical form: after eos, eos again
            seq = seq[:seq.index(eos) + 1] + [eos] * (L - seq.index(eos) - 1)
        seqs.add(tuple(seq))
    seqs = sorted(seqs)
    for seed in range(6):
        torch.manual_seed(seed)
        model = _randomize(EncoderDecoder(_config(tgt_vocab_size=4, max_tgt_len=4)), 1.0).eval()
        src, src_mask = _source(B=1, lengths=(5,))
        scores = dict(zip(seqs, _sequence_log_probs(model, src, src_mask, [list(s) for s in seqs], eos)))
        best = max(scores, key=scores.get)
        beam, beam_score = model.beam_search(src, L, src_mask, beam_size=16, length_penalty=0.0)  # 16 = V^(L-1)
        assert tuple(beam[0].tolist()) == best, seed
        assert abs(float(beam_score[0]) - scores[best]) < 1e-4
        greedy = tuple(model.generate(src, L, src_mask)[0].tolist())
        greedy = greedy + (eos,) * (L - len(greedy))
        assert scores[greedy] <= scores[best] + 1e-6
        found_gap |= scores[greedy] < scores[best] - 1e-3
    assert found_gap, "some seed should make greedy miss the best target; else the test shows nothing about search"


def test_beam_search_step_against_brute_force():
    torch.manual_seed(0)
    B, K, V, eos = 2, 3, 5, 1
    log_probs = F.log_softmax(torch.randn(B, K, V), dim=-1)
    beam_scores = torch.randn(B, K)
    finished = torch.tensor([[False, True, False], [False, False, False]])
    scores, parents, tokens = beam_search_step(log_probs, beam_scores, finished, eos)
    for b in range(B):
        cands = []
        for k in range(K):
            for v in range(V):
                if finished[b, k]:
                    if v == eos:
                        cands.append((float(beam_scores[b, k]), k, v))
                else:
                    cands.append((float(beam_scores[b, k] + log_probs[b, k, v]), k, v))
        cands.sort(reverse=True)
        assert [(round(s, 5), k, v) for s, k, v in cands[:K]] == \
            [(round(float(s), 5), int(k), int(v)) for s, k, v in zip(scores[b], parents[b], tokens[b])]


def test_accuracy_counts_exact_matches_and_characters():
    eos = 1
    targets = torch.tensor([[5, 6, 7, eos], [5, 6, 7, eos], [5, 6, 7, eos]])
    pred = torch.tensor([[5, 6, 7, eos], [5, 8, 7, eos], [5, 6, eos, eos]])
    exact, char = accuracy(pred, targets, eos)
    assert exact == pytest.approx(1 / 3) and char == pytest.approx(7 / 9)


def test_bad_decoding_arguments_raise_value_errors():
    model = EncoderDecoder(_config())
    src, src_mask = _source()
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(src, 8, src_mask)  # bos + 8 > max_tgt_len 8
    with pytest.raises(ValueError, match="beam_size"):
        model.generate(src, 3, src_mask, beam_size=0)
    with pytest.raises(AssertionError, match="longer than the encoder's context"):  # translate() says it to users
        model.generate(torch.zeros(1, 13, dtype=torch.long), 3)


# ------------------------------------------------------------------------------------------ the data and the script
def _load_script(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dates_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dates")
    prepare = _load_script(ROOT / "data" / "dates" / "prepare.py", "prepare_dates")
    assert prepare.main(["--out-dir", str(out), "--n-train", "200", "--n-val", "20", "--n-test", "20",
                         "--n-unseen", "20"]) == 0
    return out


def test_prepare_is_deterministic_splits_dates_and_holds_out_formats(dates_dir, tmp_path):
    prepare = _load_script(ROOT / "data" / "dates" / "prepare.py", "prepare_dates")
    assert prepare.main(["--out-dir", str(tmp_path), "--n-train", "200", "--n-val", "20", "--n-test", "20",
                         "--n-unseen", "20"]) == 0
    for name in ("train.tsv", "unseen.tsv", "train.src.npy", "meta.json"):
        assert (tmp_path / name).read_bytes() == (dates_dir / name).read_bytes(), name
    rows = {s: [line.split("\t") for line in (dates_dir / f"{s}.tsv").read_text().splitlines()]
            for s in ("train", "val", "test", "unseen")}
    dates = {s: {r[1] for r in rs} for s, rs in rows.items()}
    assert not dates["train"] & dates["test"] and not dates["train"] & dates["unseen"]
    assert {r[2] for r in rows["unseen"]} <= set(prepare.UNSEEN) and {r[2] for r in rows["train"]} <= set(prepare.SEEN)
    assert not set(prepare.UNSEEN) & set(prepare.SEEN)
    d = prepare.dt.date(1789, 7, 14)
    assert prepare.SEEN["fr_le_d_month_y"][0](d) == "le 14 juillet 1789"
    assert prepare.SEEN["en_weekday_month_ord_y"][0](prepare.dt.date(1999, 3, 3)) == "Wednesday, March 3rd, 1999"
    meta = json.loads((dates_dir / "meta.json").read_text())
    src = np.load(dates_dir / "train.src.npy")
    s, tgt_in, m, targets = pair_batch(src, np.load(dates_dir / "train.tgt.npy"), np.arange(4), 71, 13)
    assert tgt_in.shape == targets.shape == (4, meta["max_tgt_len"] - 1) and s.shape == m.shape


def _train(argv) -> int:
    import train_seq2seq

    return train_seq2seq.main(argv)


FAST = ["--preset", "tiny-seq2seq", "--device", "cpu", "--eval-interval", "4", "--eval-iters", "1",
        "--eval-pairs", "4", "--log-interval", "4", "--warmup-iters", "1", "--final-eval", "false"]


def test_tiny_preset_trains_and_resumes_exactly(dates_dir, tmp_path, capsys):
    sys.path.insert(0, str(ROOT))
    full, split = tmp_path / "full", tmp_path / "split"
    assert _train(FAST + ["--data", str(dates_dir), "--out-dir", str(full), "--max-iters", "8"]) == 0
    records = [json.loads(line) for line in (full / "metrics.jsonl").read_text().splitlines()]
    vals = [r["val_loss"] for r in records if "val_loss" in r]
    assert vals[-1] < vals[0] - 0.1, vals
    assert (full / "loss.png").is_file() and (full / "best.pt").is_file()
    assert _train(FAST + ["--data", str(dates_dir), "--out-dir", str(split), "--max-iters", "8",
                          "--stop-after", "4"]) == 0
    assert _train(FAST + ["--data", str(dates_dir), "--out-dir", str(split), "--max-iters", "8", "--resume"]) == 0
    a = torch.load(full / "ckpt.pt", weights_only=True)["tensors"]["model"]
    b = torch.load(split / "ckpt.pt", weights_only=True)["tensors"]["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    split_records = [json.loads(line) for line in (split / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in split_records] == [r["step"] for r in records]


def test_script_smoke_train_evaluate_translate(dates_dir, tmp_path):
    out = tmp_path / "run"
    run = subprocess.run([sys.executable, str(ROOT / "train_seq2seq.py"), "--preset", "tiny-seq2seq", "--device",
                          "cpu", "--data", str(dates_dir), "--out-dir", str(out), "--max-iters", "4",
                          "--eval-interval", "4", "--eval-pairs", "4", "--warmup-iters", "1"], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    results = json.loads((out / "eval.json").read_text())
    assert set(results["splits"]) == {"train", "val", "test", "unseen"}
    assert all(0 <= results["splits"][s][k]["char"] <= 1 for s in results["splits"] for k in ("greedy", "beam"))
    run = subprocess.run([sys.executable, "-m", "minilm.translate", "--ckpt", str(out), "--source",
                          "le 14 juillet 1789", "--source", "3/3/99", "--beam-size", "2"],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.splitlines()) == 2 and run.stderr == ""


# ----------------------------------------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def tiny_run(dates_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("seq2seq_run")
    sys.path.insert(0, str(ROOT))
    assert _train(FAST + ["--data", str(dates_dir), "--out-dir", str(out), "--max-iters", "2"]) == 0
    return out


def _snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _decoder_only_checkpoint(path: Path) -> Path:
    from minilm.checkpoint import save_checkpoint
    from minilm.config import ModelConfig
    from minilm.model import CausalLM
    from minilm.tokenizer import CharTokenizer

    config = ModelConfig(vocab_size=5, max_seq_len=8, d_model=8, n_heads=2, n_layers=1)
    save_checkpoint(path, {"model": CausalLM(config).state_dict()},
                    {"kind": "clm", "model_config": config.to_dict(), "tokenizer": CharTokenizer("abcde").to_dict()})
    return path


@pytest.mark.parametrize("case", ["too_long", "out_of_vocabulary", "decoder_only", "missing", "empty"])
def test_translate_bad_input_is_one_line_and_writes_nothing(case, tiny_run, tmp_path, capsys):
    from minilm.translate import main as translate_main

    ckpt, source, phrase = str(tiny_run), "3 March 1999", ""
    if case == "too_long":
        source, phrase = "3 March 1999 " * 5, "longer than the encoder's context (max_src_len="
    elif case == "out_of_vocabulary":
        source, phrase = "3 März 1999 ☃", "outside the model's source vocabulary"
    elif case == "decoder_only":
        ckpt, phrase = str(_decoder_only_checkpoint(tmp_path / "gpt.pt")), "'clm' checkpoint, a causal LM"
    elif case == "missing":
        ckpt, phrase = str(tmp_path / "nothing-here"), "no checkpoint at"
    else:
        source, phrase = "", "the source is empty"
    before = _snapshot(tiny_run), _snapshot(tmp_path)
    capsys.readouterr()
    assert translate_main(["--ckpt", ckpt, "--source", source]) == 1
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and phrase in err, err
    assert (_snapshot(tiny_run), _snapshot(tmp_path)) == before


@pytest.mark.parametrize("case", ["no_data", "resume_without_run", "existing_run", "dataset_field"])
def test_train_seq2seq_bad_input_is_one_line_and_writes_nothing(case, dates_dir, tiny_run, tmp_path, capsys):
    args = FAST + ["--data", str(dates_dir), "--out-dir", str(tmp_path / "new"), "--max-iters", "2"]
    phrase, code = "", 1
    if case == "no_data":
        args, phrase = args + ["--data", str(tmp_path / "absent")], "meta.json not found"
    elif case == "resume_without_run":
        args, phrase = args + ["--resume"], "no checkpoint at"
    elif case == "existing_run":
        args, phrase = args + ["--out-dir", str(tiny_run)], "already holds a run"
    else:
        args, phrase, code = args + ["--src-vocab-size", "9"], "comes from the dataset", 2
    before = _snapshot(tiny_run), _snapshot(tmp_path)
    capsys.readouterr()
    if code == 2:
        with pytest.raises(SystemExit) as e:
            _train(args)
        assert e.value.code == 2
    else:
        assert _train(args) == 1
    out, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1 and phrase in err, err
    assert (_snapshot(tiny_run), _snapshot(tmp_path)) == before


def test_prepare_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    prepare = _load_script(ROOT / "data" / "dates" / "prepare.py", "prepare_dates")
    assert prepare.main(["--out-dir", str(tmp_path / "d"), "--n-train", "0"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--n-train must be >= 1" in err
    assert not (tmp_path / "d").exists()
    assert prepare.main(["--out-dir", str(tmp_path / "d"), "--n-train", "200000"]) == 1
    assert "distinct dates exist" in capsys.readouterr().err and not (tmp_path / "d").exists()
