"""minilm/rnn.py: the hand-written LSTM and GRU against torch.nn.LSTM / nn.GRU with the same weights (outputs, final
states, gradients), the fused switch against the loop, and RNNLM's behaviour (causal, ln V at init, the carried
state in generation equals re-reading the prefix); then `train.py --arch lstm / gru` (exact resume, checkpoints that
load back, `python -m minilm.generate`) and the presets sized to the default GPT. Bad flags: tests/test_bad_inputs.py."""

from __future__ import annotations

import io
import json
import math
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import train
from minilm.checkpoint import load_checkpoint, load_model
from minilm.config import ModelConfig
from minilm.data import write_tokens
from minilm.generate import generate_text
from minilm.generate import main as generate_main
from minilm.model import CausalLM
from minilm.rnn import GRU, LSTM, RNNLM, gru_cell, lstm_cell
from minilm.tokenizer import CharTokenizer

TWINS = {"lstm": (LSTM, nn.LSTM), "gru": (GRU, nn.GRU)}


def _perturbed(module: nn.Module, seed: int) -> nn.Module:
    """Every parameter drawn afresh from N(0, 0.5^2), so no weight keeps a default a mapping slip could hide behind."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
    return module


def _initial_state(arch: str, L: int, B: int, H: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(L, B, H, generator=g, dtype=torch.float64, requires_grad=True)
    if arch == "gru":
        return h, [h]
    c = torch.randn(L, B, H, generator=g, dtype=torch.float64, requires_grad=True)
    return (h, c), [h, c]


def _flat(state) -> list[torch.Tensor]:
    return list(state) if isinstance(state, tuple) else [state]


@pytest.mark.parametrize("arch", ["lstm", "gru"])
@pytest.mark.parametrize("num_layers,B,T,bias,batch_first,with_state", [
    (1, 1, 1, True, True, False),
    (2, 3, 7, True, True, True),
    (3, 2, 5, False, True, True),
    (2, 4, 6, True, False, False),
])
def test_layers_equal_torch_nn_with_the_same_weights(arch, num_layers, B, T, bias, batch_first, with_state):
    ours_cls, theirs_cls = TWINS[arch]
    I, H = 5, 4
    ours = _perturbed(ours_cls(I, H, num_layers=num_layers, bias=bias, batch_first=batch_first).double(), seed=0)
    theirs = theirs_cls(I, H, num_layers=num_layers, bias=bias, batch_first=batch_first).double()
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
        [(k, v.shape) for k, v in theirs.state_dict().items()], "state_dict keys and shapes differ from torch.nn's"
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn((B, T, I) if batch_first else (T, B, I), dtype=torch.float64, requires_grad=True)
    state, leaves = _initial_state(arch, num_layers, B, H, seed=1) if with_state else (None, [])

    out_ours, final_ours = ours(x, state)
    out_theirs, final_theirs = theirs(x, state)
    torch.testing.assert_close(out_ours, out_theirs)
    for a, b in zip(_flat(final_ours), _flat(final_theirs), strict=True):
        torch.testing.assert_close(a, b)

    # gradients through the outputs and the final states, into the inputs, the initial state and every weight
    g = torch.Generator().manual_seed(2)
    weights = [torch.randn(t.shape, generator=g, dtype=torch.float64) for t in [out_ours, *_flat(final_ours)]]
    for model, out, final in ((ours, out_ours, final_ours), (theirs, out_theirs, final_theirs)):
        loss = sum((w * t).sum() for w, t in zip(weights, [out, *_flat(final)]))
        grads = torch.autograd.grad(loss, [x, *leaves, *model.parameters()])
        if model is ours:
            expected = grads
    for name, a, b in zip(["x"] + [f"state{i}" for i in range(len(leaves))] + [n for n, _ in ours.named_parameters()],
                          expected, grads, strict=True):
        torch.testing.assert_close(a, b, msg=lambda m, name=name: f"gradient of {name}: {m}")


@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_torch_nn_weights_load_into_ours(arch):
    ours_cls, theirs_cls = TWINS[arch]
    theirs = _perturbed(theirs_cls(3, 6, num_layers=2, batch_first=True), seed=3)
    ours = ours_cls(3, 6, num_layers=2)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 4, 3)
    torch.testing.assert_close(ours(x)[0], theirs(x)[0])


def test_cells_equal_torch_nn_cells():
    x, h, c = torch.randn(3, 5), torch.randn(3, 4), torch.randn(3, 4)
    ref = _perturbed(nn.LSTMCell(5, 4), seed=4)
    h1, c1 = lstm_cell(x, h, c, ref.weight_ih, ref.weight_hh, ref.bias_ih, ref.bias_hh)
    h2, c2 = ref(x, (h, c))
    torch.testing.assert_close(h1, h2)
    torch.testing.assert_close(c1, c2)
    ref = _perturbed(nn.GRUCell(5, 4), seed=5)
    torch.testing.assert_close(gru_cell(x, h, ref.weight_ih, ref.weight_hh, ref.bias_ih, ref.bias_hh), ref(x, h))


def _config(arch: str, **kw) -> ModelConfig:
    return ModelConfig(**{"arch": arch, "vocab_size": 11, "d_model": 8, "n_layers": 2, "max_seq_len": 16, **kw})


@pytest.mark.parametrize("arch", ["lstm", "gru"])
@pytest.mark.parametrize("tie", [True, False])
def test_fused_switch_gives_the_same_numbers(arch, tie):
    torch.manual_seed(0)
    loop = RNNLM(_config(arch, tie_weights=tie))
    fused = RNNLM(_config(arch, tie_weights=tie, fused_kernels=True))
    assert isinstance(fused.rnn, nn.LSTM if arch == "lstm" else nn.GRU) and not isinstance(loop.rnn, nn.RNNBase)
    _perturbed(loop, seed=6)
    fused.load_state_dict(loop.state_dict())  # the same keys: a checkpoint moves between the two
    idx, targets = torch.randint(0, 11, (3, 9)), torch.randint(0, 11, (3, 9))
    (logits_a, loss_a), (logits_b, loss_b) = loop(idx, targets), fused(idx, targets)
    torch.testing.assert_close(logits_a, logits_b, atol=1e-5, rtol=1e-5)
    loss_a.backward()
    loss_b.backward()
    for (name, a), b in zip(loop.named_parameters(), fused.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("arch", ["lstm", "gru"])
@pytest.mark.parametrize("tie", [True, False])
def test_loss_at_init_is_close_to_ln_vocab_size(arch, tie):
    torch.manual_seed(0)
    config = _config(arch, vocab_size=65, d_model=32, tie_weights=tie)
    _, loss = RNNLM(config)(torch.randint(0, 65, (4, 32)), torch.randint(0, 65, (4, 32)))
    assert abs(loss.item() - math.log(65)) < 0.02, f"loss at init {loss.item():.4f}, ln 65 = {math.log(65):.4f}"


@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_is_causal_and_state_continues_the_sequence(arch):
    torch.manual_seed(0)
    model = _perturbed(RNNLM(_config(arch)), seed=7)
    idx = torch.randint(0, 11, (2, 10))
    logits, _ = model(idx)
    changed = idx.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % 11
    torch.testing.assert_close(model(changed)[0][:, :6], logits[:, :6])  # tokens after t change nothing up to t
    assert not torch.allclose(model(changed)[0][:, 6:], logits[:, 6:])
    first, state = model.forward_with_state(idx[:, :4])
    rest, _ = model.forward_with_state(idx[:, 4:], state)  # the state is everything the model kept of idx[:, :4]
    torch.testing.assert_close(torch.cat([first, rest], dim=1), logits)


@pytest.mark.parametrize("arch", ["lstm", "gru"])
@pytest.mark.parametrize("sampling", [dict(temperature=0.0), dict(temperature=0.9, top_k=5, top_p=0.9)])
def test_generation_with_carried_state_equals_rereading_the_prefix(arch, sampling):
    torch.manual_seed(0)
    model = _perturbed(RNNLM(_config(arch)), seed=8)
    prompt = torch.randint(0, 11, (2, 3))
    runs = [model.generate(prompt, 25, generator=torch.Generator().manual_seed(1), use_cache=cache, **sampling)
            for cache in (True, False)]
    assert runs[0].shape == (2, 28) and torch.equal(runs[0][:, :3], prompt)
    assert torch.equal(runs[0], runs[1])  # 25 > max_seq_len=16 new tokens: the recurrence has no context limit


def test_generation_stops_at_eos_and_keeps_the_mode():
    torch.manual_seed(0)
    model = _perturbed(RNNLM(_config("gru")), seed=9).train()
    out = model.generate(torch.zeros(3, 1, dtype=torch.long), 40, temperature=1.5, eos_id=2,
                         generator=torch.Generator().manual_seed(0))
    assert model.training
    for row in out[:, 1:].tolist():
        if 2 in row:
            assert set(row[row.index(2):]) == {2}, "a row that produced eos keeps producing it"


@pytest.mark.parametrize("arch,gates", [("lstm", 4), ("gru", 3)])
def test_parameter_count_and_flops(arch, gates):
    V, D, L = 11, 8, 2
    tied, untied = RNNLM(_config(arch)), RNNLM(_config(arch, tie_weights=False))
    assert tied.lm_head.weight is tied.tok_emb.weight
    per_layer = gates * (2 * D * D + 2 * D)  # W_ih (G D, D), W_hh (G D, D), two biases (G D,)
    assert tied.num_params() == V * D + L * per_layer
    assert untied.num_params() == 2 * V * D + L * per_layer
    assert tied.flops_per_token(64) == tied.flops_per_token(512) == 6 * tied.num_params()


def test_lstm_forget_gate_bias_starts_at_one():
    model = RNNLM(_config("lstm", d_model=6))
    D = 6
    for layer in range(2):
        b = getattr(model.rnn, f"bias_ih_l{layer}") + getattr(model.rnn, f"bias_hh_l{layer}")
        assert torch.equal(b[D:2 * D], torch.ones(D)), "rows D..2D are the forget gate (order i, f, g, o)"


def test_a_tiny_lstm_overfits_one_batch():
    torch.manual_seed(0)
    model = RNNLM(_config("lstm", d_model=32, fused_kernels=True))
    idx = torch.randint(0, 11, (2, 10))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-2)
    for _ in range(80):
        _, loss = model(idx[:, :-1], idx[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    final = loss.item()
    assert final < 0.2, f"loss after 80 steps on one batch: {final:.3f} (ln 11 = 2.40 at init)"


def test_config_rejects_an_unknown_arch():
    with pytest.raises(ValueError, match="ModelConfig.arch"):
        ModelConfig(arch="rnn")


# ------------------------------------------------------------------------------------------ train.py --arch, generate
TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n\n") * 25
FAST = ["--preset", "tiny", "--device", "cpu", "--dtype", "float32", "--compile", "off", "--eval-iters", "2",
        "--warmup-iters", "2", "--log-interval", "1", "--samples", "0"]


@pytest.fixture
def char_data(tmp_path) -> Path:
    tok = CharTokenizer.train(TEXT)
    n = int(len(TEXT) * 0.9)
    write_tokens(tmp_path / "data", {"train": np.array(tok.encode(TEXT[:n])), "val": np.array(tok.encode(TEXT[n:]))},
                 tok)
    return tmp_path / "data"


def _train(argv) -> tuple[int, str]:
    with redirect_stdout(io.StringIO()) as buf:
        rc = train.main(argv)
    return rc, buf.getvalue()


def _records(out_dir: Path) -> list[dict]:
    lines = (out_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in ("time_s", "tokens_per_s")} for line in lines]


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared machine; and CPU float sums repeat exactly
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_tiny_preset_with_a_recurrent_arch_trains_and_resumes_exactly(tmp_path, char_data, one_thread, arch):
    """--arch lstm / gru in train.py's own loop: N steps straight vs --stop-after K then --resume to N give the same
    losses and weights, the loss falls, and the checkpoint loads back as an RNNLM that generates past max_seq_len."""
    args = FAST + ["--arch", arch, "--data", str(char_data), "--max-iters", "12", "--eval-interval", "6",
                   "--seed", "3", "--lr", "1e-2", "--dropout", "0.1"]  # dropout: the RNG state resumes too
    straight, split = tmp_path / "straight", tmp_path / "split"
    rc, out = _train(args + ["--out-dir", str(straight)])
    assert rc == 0 and f"clm, {arch} | " in out, out
    assert _train(args + ["--out-dir", str(split), "--stop-after", "5"])[0] == 0
    rc, out = _train(args + ["--out-dir", str(split), "--resume"])
    assert rc == 0 and "at step 5" in out
    a, b = _records(straight), _records(split)
    assert a == b, "a resumed recurrent run must repeat the straight run exactly"
    evals = [r["val_loss"] for r in a if "val_loss" in r]
    assert evals[-1] < evals[0] - 0.3, evals
    (ta, ma), (tb, _) = load_checkpoint(straight / "ckpt.pt"), load_checkpoint(split / "ckpt.pt")
    assert ma["model_config"]["arch"] == arch
    for name, value in ta["model"].items():
        assert torch.equal(value, tb["model"][name]), name
    model, tokenizer, _ = load_model(straight / "ckpt.pt")
    assert isinstance(model, RNNLM) and model.config.arch == arch
    text = generate_text(model, tokenizer, "All:", 60, temperature=0.8, top_k=10, seed=0)[0]
    assert text.startswith("All:") and len(text) == 4 + 60  # 64 > max_seq_len 32: no context limit


def test_generate_command_samples_from_a_recurrent_checkpoint(tmp_path, char_data, one_thread, capsys):
    assert _train(FAST + ["--arch", "gru", "--data", str(char_data), "--out-dir", str(tmp_path / "run"),
                          "--max-iters", "4", "--eval-interval", "2"])[0] == 0
    argv = ["--ckpt", str(tmp_path / "run"), "--prompt", "All:", "--max-new-tokens", "50", "--seed", "1"]
    assert generate_main(argv) == 0
    first = capsys.readouterr().out
    assert generate_main(argv) == 0
    assert capsys.readouterr().out == first and first.startswith("All:") and len(first.rstrip("\n")) == 54


def test_presets_match_the_default_gpt_in_size_and_budget():
    settings, gpt = train.PRESETS["shakespeare-char"]
    n_gpt = CausalLM(ModelConfig(**gpt)).num_params()
    for arch in ("lstm", "gru"):
        rnn_settings, rnn_model = train.PRESETS[f"shakespeare-char-{arch}"]
        assert rnn_model["arch"] == arch and rnn_model["max_seq_len"] == gpt["max_seq_len"]
        n = RNNLM(ModelConfig(**rnn_model)).num_params()
        assert abs(n / n_gpt - 1) < 0.03, f"{arch}: {n:,} parameters vs the GPT's {n_gpt:,}"
        assert {**rnn_settings, "out_dir": None} == {**settings, "out_dir": None}, "the default run's budget"
