"""Behaviour of the backbone and the two LM heads: causality, loss at init, overfitting, MLM, generation, errors."""

import dataclasses
import math

import pytest
import torch

from minilm import IGNORE_INDEX, CausalLM, MaskedLM, ModelConfig


def _mlm_config(cfg):
    return dataclasses.replace(cfg, causal=False)


def test_causality(tiny_config):
    model = CausalLM(tiny_config).eval()
    idx = torch.randint(0, tiny_config.vocab_size, (2, 20))
    t = 9
    changed = idx.clone()
    changed[:, t + 1:] = torch.randint(0, tiny_config.vocab_size, (2, 20 - t - 1))
    a, _ = model(idx)
    b, _ = model(changed)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1])
    assert not torch.allclose(a[:, t + 1:], b[:, t + 1:]), "later tokens should change later logits"


def test_loss_at_init_is_ln_vocab():
    cfg = ModelConfig(vocab_size=512, max_seq_len=32, d_model=64, n_heads=4, n_layers=2)
    model = CausalLM(cfg)
    idx = torch.randint(0, cfg.vocab_size, (8, 32))
    targets = torch.randint(0, cfg.vocab_size, (8, 32))
    _, loss = model(idx, targets)
    assert abs(loss.item() - math.log(cfg.vocab_size)) < 0.15


@pytest.mark.parametrize("head", ["clm", "mlm"])
def test_overfits_one_batch(tiny_config, head):
    cfg = tiny_config if head == "clm" else _mlm_config(tiny_config)
    model = CausalLM(cfg) if head == "clm" else MaskedLM(cfg)
    idx = torch.randint(0, cfg.vocab_size, (4, 16))
    targets = torch.roll(idx, -1, dims=1) if head == "clm" else idx
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(300):
        _, loss = model(idx, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


def test_weight_tying_and_init(tiny_config):
    model = CausalLM(tiny_config)
    assert model.lm_head.weight is model.backbone.tok_emb.weight
    n = tiny_config.n_layers
    std = model.backbone.blocks[0].attn.out_proj.weight.std().item()
    assert abs(std - 0.02 / math.sqrt(2 * n)) < 0.004  # Eq. 5.6 residual scaling
    assert abs(model.backbone.blocks[0].mlp.fc_in.weight.std().item() - 0.02) < 0.004
    wide = MaskedLM(dataclasses.replace(tiny_config, causal=False, init_std=0.1))  # ModelConfig.init_std scales it all
    assert abs(wide.backbone.blocks[0].mlp.fc_in.weight.std().item() - 0.1) < 0.02
    assert abs(wide.backbone.blocks[0].attn.out_proj.weight.std().item() - 0.1 / math.sqrt(2 * n)) < 0.02
    assert abs(wide.backbone.tok_emb.weight.std().item() - 0.1) < 0.02
    untied = CausalLM(dataclasses.replace(tiny_config, tie_weights=False))
    assert untied.num_params() == model.num_params() + tiny_config.vocab_size * tiny_config.d_model


def test_param_count_formula(tiny_config):
    c = tiny_config
    D, L, V, T = c.d_model, c.n_layers, c.vocab_size, c.max_seq_len
    per_block = (D * 3 * D + 3 * D) + (D * D + D) + (D * 4 * D + 4 * D) + (4 * D * D + D) + 4 * D
    expected = V * D + T * D + L * per_block + 2 * D
    model = CausalLM(c)
    assert model.num_params() == expected
    assert model.flops_per_token() == 6 * (expected - T * D) + 12 * L * D * T
    mlm = MaskedLM(_mlm_config(c))  # its head (dense, norm, decoder bias; decoder tied) runs on masked positions only
    head = (D * D + D) + 2 * D + V + V * D
    assert mlm.flops_per_token(mask_prob=1.0) == 6 * (expected + head - V * D - T * D) + 12 * L * D * T
    assert mlm.flops_per_token(mask_prob=1.0) - mlm.flops_per_token(mask_prob=0.15) == round(6 * 0.85 * head)


def test_mlm_loss_ignores_unmasked_positions(tiny_config):
    model = MaskedLM(_mlm_config(tiny_config)).eval()
    idx = torch.randint(0, tiny_config.vocab_size, (2, 12))
    targets = torch.full_like(idx, IGNORE_INDEX)
    targets[:, [2, 7]] = idx[:, [2, 7]]
    logits, loss = model(idx, targets)
    other = targets.clone()
    other[:, 0] = 3  # a position that counts now changes the loss
    full = model(idx)[0]  # (B, T, V): every position, no targets
    selected = full[:, [2, 7]].reshape(-1, tiny_config.vocab_size)  # (4, V), row-major like targets != -100
    manual = torch.nn.functional.cross_entropy(selected, idx[:, [2, 7]].reshape(-1))
    torch.testing.assert_close(loss, manual)
    torch.testing.assert_close(logits, selected)  # with targets, the head runs on the selected positions only
    assert model(idx, other)[1].item() != pytest.approx(loss.item())


def test_mlm_is_bidirectional(tiny_config):
    model = MaskedLM(_mlm_config(tiny_config)).eval()
    idx = torch.randint(0, tiny_config.vocab_size, (1, 12))
    changed = idx.clone()
    changed[0, 10] = (idx[0, 10] + 1) % tiny_config.vocab_size
    a, _ = model(idx)
    b, _ = model(changed)
    assert not torch.allclose(a[0, 2], b[0, 2]), "an earlier position must see a later token"


def test_mlm_padding_mask(tiny_config):
    model = MaskedLM(_mlm_config(tiny_config)).eval()
    idx = torch.randint(0, tiny_config.vocab_size, (1, 8))
    padded = torch.cat([idx, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    am = torch.tensor([[1] * 8 + [0] * 4])
    torch.testing.assert_close(model(padded, attention_mask=am)[0][:, :8], model(idx)[0], atol=1e-5, rtol=1e-5)


def test_sdpa_mode_equals_manual_for_the_whole_model(tiny_config):
    manual = CausalLM(tiny_config).eval()
    fused = CausalLM(dataclasses.replace(tiny_config, attn_impl="sdpa")).eval()
    fused.load_state_dict(manual.state_dict())
    idx = torch.randint(0, tiny_config.vocab_size, (3, 20))
    torch.testing.assert_close(manual(idx)[0], fused(idx)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
def test_heads_set_their_own_direction(tiny_config, causal):
    """Whatever ModelConfig.causal says, CausalLM is left-to-right and MaskedLM bidirectional (issue 13, item 3)."""
    config = dataclasses.replace(tiny_config, causal=causal)
    clm, mlm = CausalLM(config).eval(), MaskedLM(config).eval()
    assert clm.config.causal and all(b.attn.causal for b in clm.backbone.blocks)
    assert not mlm.config.causal and not any(b.attn.causal for b in mlm.backbone.blocks)
    idx = torch.randint(0, config.vocab_size, (1, 10))
    changed = idx.clone()
    changed[0, 7] = (idx[0, 7] + 1) % config.vocab_size
    # a later token never moves an earlier logit in the causal model, and does in the bidirectional one
    torch.testing.assert_close(clm(idx)[0][:, :7], clm(changed)[0][:, :7])
    assert not torch.allclose(mlm(idx)[0][:, :7], mlm(changed)[0][:, :7])
    assert config.causal == causal, "the head must not change the caller's config"


def test_sequence_past_the_context_is_a_one_line_assert(tiny_config):
    model = CausalLM(tiny_config)
    with pytest.raises(AssertionError, match="max_seq_len=24"):
        model(torch.randint(0, tiny_config.vocab_size, (1, tiny_config.max_seq_len + 1)))
    with pytest.raises(AssertionError, match="longer than max_seq_len"):
        model.generate(torch.zeros(1, tiny_config.max_seq_len + 1, dtype=torch.long), 1)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="d_model .* divisible by n_heads"):
        ModelConfig(d_model=100, n_heads=3)
    with pytest.raises(ValueError, match="dropout"):
        ModelConfig(dropout=1.5)
    with pytest.raises(ValueError, match="vocab_size"):
        ModelConfig(vocab_size=0)
    with pytest.raises(ValueError, match="init_std"):
        ModelConfig(init_std=0.0)
    old = {k: v for k, v in ModelConfig().to_dict().items() if k != "init_std"}  # a checkpoint from before init_std
    assert ModelConfig.from_dict(old).init_std == 0.02
    with pytest.raises(ValueError, match="unknown ModelConfig field"):
        ModelConfig.from_dict({"d_modle": 3})
    assert ModelConfig.from_dict(ModelConfig(d_model=64).to_dict()) == ModelConfig(d_model=64)


# ---------------------------------------------------------------------------------------------------- generation


def test_greedy_with_cache_equals_full_recompute(tiny_config):
    model = CausalLM(tiny_config).eval()
    prompt = torch.randint(0, tiny_config.vocab_size, (2, 5))
    # 40 new tokens run past max_seq_len = 24, so the sliding-window path is checked too
    cached = model.generate(prompt, 40, temperature=0)
    full = model.generate(prompt, 40, temperature=0, use_cache=False)
    assert cached.shape == (2, 45)
    assert torch.equal(cached, full)
    # and the recompute path is the plain argmax of the full forward pass, token by token
    idx = prompt
    for _ in range(10):
        logits, _ = model(idx[:, -tiny_config.max_seq_len:])
        idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(idx, full[:, :15])


def test_top_k_one_equals_greedy(tiny_config):
    model = CausalLM(tiny_config).eval()
    prompt = torch.randint(0, tiny_config.vocab_size, (2, 3))
    g = torch.Generator().manual_seed(0)
    assert torch.equal(model.generate(prompt, 15, temperature=1.0, top_k=1, generator=g),
                       model.generate(prompt, 15, temperature=0))


def test_sampling_is_reproducible_with_a_generator(tiny_config):
    model = CausalLM(tiny_config).eval()
    prompt = torch.zeros(1, 1, dtype=torch.long)
    a = model.generate(prompt, 20, generator=torch.Generator().manual_seed(5))
    b = model.generate(prompt, 20, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_eos_stops_early(tiny_config):
    model = CausalLM(tiny_config).eval()
    prompt = torch.randint(0, tiny_config.vocab_size, (1, 4))
    greedy = model.generate(prompt, 10, temperature=0)
    eos = int(greedy[0, 6])  # the third generated token
    out = model.generate(prompt, 10, temperature=0, eos_id=eos)
    first = (greedy[0, 4:] == eos).nonzero()[0, 0].item() + 4
    assert out.shape[1] == first + 1 and out[0, -1].item() == eos


def test_generate_restores_training_mode(tiny_config):
    model = CausalLM(tiny_config).train()
    model.generate(torch.zeros(1, 1, dtype=torch.long), 2)
    assert model.training


def test_fused_kernels_and_sdpa_equal_manual_for_the_whole_model(tiny_config):
    manual = CausalLM(tiny_config).eval()
    fused = CausalLM(dataclasses.replace(tiny_config, fused_kernels=True, attn_impl="sdpa")).eval()
    fused.load_state_dict(manual.state_dict())
    idx = torch.randint(0, tiny_config.vocab_size, (3, 20))
    torch.testing.assert_close(manual(idx)[0], fused(idx)[0], atol=1e-5, rtol=1e-5)
