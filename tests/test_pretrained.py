"""Hugging Face parity: a GPT-2 saved by `transformers` loads into CausalLM and gives the same logits."""

import pytest
import torch

from minilm import CausalLM

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("safe", [True, False])
def test_gpt2_logits_match_hugging_face(tmp_path, safe):
    cfg = transformers.GPT2Config(vocab_size=97, n_positions=32, n_embd=48, n_layer=2, n_head=4,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # make the biases and norms non-trivial so a mapping mistake cannot hide
        for name, p in hf.named_parameters():
            if name.endswith("bias") or "ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    hf.save_pretrained(tmp_path, safe_serialization=safe)
    ours = CausalLM.from_pretrained(tmp_path).eval()
    idx = torch.randint(0, 97, (2, 32))
    with torch.no_grad():
        ref = hf(idx).logits
        got, _ = ours(idx)
    assert (got - ref).abs().max().item() < 1e-4


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        CausalLM.from_pretrained(tmp_path / "nope")
