"""Load a Hugging Face GPT-2 checkpoint directory into minilm's CausalLM (local files only, no network).

GPT-2 (Radford et al. 2019) is the architecture minilm's causal model reproduces: pre-norm blocks, learned positions,
tanh-GELU, tied embeddings. So its weights load one-to-one once two differences are handled:
  - names: GPT-2's `wte`, `wpe`, `h.{i}.ln_1`, `attn.c_attn`, `attn.c_proj`, `ln_2`, `mlp.c_fc`, `mlp.c_proj`, `ln_f`
    are our `tok_emb`, `pos_emb`, `blocks.{i}.norm1`, `attn.qkv_proj`, `attn.out_proj`, `norm2`, `mlp.fc_in`,
    `mlp.fc_out`, `norm_f` (this file is the only place GPT-2's names appear);
  - layout: GPT-2 stores its projections as `Conv1D` with weight (in, out), the transpose of `nn.Linear`'s (out, in).
The directory holds `config.json` and `model.safetensors` (or `pytorch_model.bin`, read with weights_only=True), as
written by `transformers`' `save_pretrained`. Read beside lectures/05_model.ipynb.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .config import ModelConfig

# GPT-2 name suffix inside block i -> our name inside blocks.{i}; True where the Conv1D weight must be transposed.
_BLOCK_MAP = {
    "ln_1.weight": ("norm1.weight", False),
    "ln_1.bias": ("norm1.bias", False),
    "attn.c_attn.weight": ("attn.qkv_proj.weight", True),
    "attn.c_attn.bias": ("attn.qkv_proj.bias", False),
    "attn.c_proj.weight": ("attn.out_proj.weight", True),
    "attn.c_proj.bias": ("attn.out_proj.bias", False),
    "ln_2.weight": ("norm2.weight", False),
    "ln_2.bias": ("norm2.bias", False),
    "mlp.c_fc.weight": ("mlp.fc_in.weight", True),
    "mlp.c_fc.bias": ("mlp.fc_in.bias", False),
    "mlp.c_proj.weight": ("mlp.fc_out.weight", True),
    "mlp.c_proj.bias": ("mlp.fc_out.bias", False),
}


def gpt2_config(hf: dict) -> ModelConfig:
    """Translate a GPT-2 `config.json` into a ModelConfig."""
    if hf.get("model_type", "gpt2") != "gpt2":
        raise ValueError(f"expected a GPT-2 checkpoint (model_type 'gpt2'), got model_type {hf.get('model_type')!r}")
    act = hf.get("activation_function", "gelu_new")
    return ModelConfig(
        vocab_size=hf["vocab_size"], max_seq_len=hf["n_positions"], d_model=hf["n_embd"], n_heads=hf["n_head"],
        n_layers=hf["n_layer"], d_ff=hf.get("n_inner") or 4 * hf["n_embd"], dropout=0.0, bias=True,
        norm_eps=hf.get("layer_norm_epsilon", 1e-5), gelu="tanh" if act in ("gelu_new", "gelu_pytorch_tanh") else "exact",
        tie_weights=hf.get("tie_word_embeddings", True), causal=True)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if (path / "model.safetensors").exists():
        from safetensors.torch import load_file

        return load_file(str(path / "model.safetensors"))
    if (path / "pytorch_model.bin").exists():
        return torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{path} has no model.safetensors or pytorch_model.bin: "
                            "save one with transformers' model.save_pretrained(path)")


def load_hf_gpt2(cls, path) -> "torch.nn.Module":
    """Build `cls(config)` (a CausalLM) and copy the GPT-2 weights found in directory `path` into it."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}/config.json not found: pass a directory written by "
                                "transformers' GPT2LMHeadModel.save_pretrained")
    config = gpt2_config(json.loads((path / "config.json").read_text()))
    model = cls(config)
    sd = {k.removeprefix("transformer."): v for k, v in _read_state_dict(path).items()}
    ours = {
        "backbone.tok_emb.weight": sd["wte.weight"],
        "backbone.pos_emb.weight": sd["wpe.weight"],
        "backbone.norm_f.weight": sd["ln_f.weight"],
        "backbone.norm_f.bias": sd["ln_f.bias"],
    }
    for i in range(config.n_layers):
        for theirs, (name, transpose) in _BLOCK_MAP.items():
            w = sd[f"h.{i}.{theirs}"]
            ours[f"backbone.blocks.{i}.{name}"] = w.t() if transpose else w  # Conv1D (in, out) -> Linear (out, in)
    if not config.tie_weights:
        ours["lm_head.weight"] = sd["lm_head.weight"]
    missing, unexpected = model.load_state_dict(ours, strict=False)
    missing = [m for m in missing if not (config.tie_weights and m == "lm_head.weight")]
    assert not missing and not unexpected, f"GPT-2 mapping incomplete: missing {missing}, unexpected {unexpected}"
    return model
