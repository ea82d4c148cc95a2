"""Load a Hugging Face Llama-architecture checkpoint directory into minilm's CausalLM (local files only, no network).

Llama (Touvron et al. 2023, https://arxiv.org/abs/2302.13971, section 2.2) is GPT-2's pre-norm decoder with the four
changes ModelConfig can switch on: RMSNorm, SwiGLU, rotary positions, grouped-query attention (Llama 2 and later).
Checkpoints of that architecture (`LlamaForCausalLM`, e.g. SmolLM, TinyLlama) load one-to-one once the names are
mapped (this file is the only place Llama's names appear):
  - `model.embed_tokens`, `model.norm`, `lm_head` are our `backbone.tok_emb`, `backbone.norm_f`, `lm_head`;
  - in layer i, `input_layernorm`, `post_attention_layernorm` are `norm1`, `norm2`; `self_attn.o_proj` is
    `attn.out_proj`; `mlp.gate_proj`, `mlp.up_proj`, `mlp.down_proj` are `mlp.fc_gate`, `mlp.fc_in`, `mlp.fc_out`;
  - `self_attn.q_proj`, `k_proj`, `v_proj` are stacked (in that order, along the output rows) into our one
    `attn.qkv_proj`, (D + 2 n_kv_heads Dh, D).
No permutation: Hugging Face's Llama weights already follow the "rotate_half" RoPE convention that
attention.apply_rope uses (its conversion script permuted Meta's interleaved q/k rows once).
What minilm cannot represent is refused with one line saying what: rope scaling (linear, dynamic NTK, YaRN, Llama 3),
biases, another activation than SiLU, a head_dim other than hidden_size / num_attention_heads, other architectures.
Read beside lectures/09_modern_blocks.ipynb.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .config import ModelConfig
from .pretrained import _load_mapped, _read_config, _read_state_dict

# Llama name suffix inside model.layers.{i} -> our name inside backbone.blocks.{i} (q/k/v are stacked separately).
_BLOCK_MAP = {
    "input_layernorm.weight": "norm1.weight",
    "self_attn.o_proj.weight": "attn.out_proj.weight",
    "post_attention_layernorm.weight": "norm2.weight",
    "mlp.gate_proj.weight": "mlp.fc_gate.weight",
    "mlp.up_proj.weight": "mlp.fc_in.weight",
    "mlp.down_proj.weight": "mlp.fc_out.weight",
}
_QKV = ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight")


def is_llama_dir(path) -> bool:
    """True when `path`/config.json names the Llama architecture (model_type "llama")."""
    config = Path(path) / "config.json"
    return config.is_file() and json.loads(config.read_text()).get("model_type") == "llama"


def _refuse(what: str) -> ValueError:
    return ValueError(f"this Llama checkpoint uses {what}, which minilm's ModelConfig cannot represent; "
                      "it loads Llama-architecture checkpoints with plain RoPE, no biases and SiLU")


def llama_config(hf: dict) -> ModelConfig:
    """Translate a Llama `config.json` into a ModelConfig, refusing what minilm does not implement."""
    if hf.get("model_type") != "llama":
        raise ValueError(f"expected a Llama checkpoint (model_type 'llama'), got model_type {hf.get('model_type')!r}")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}  # transformers 5 / 4 spelling
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default" or hf.get("rope_scaling"):
        raise _refuse(f"rope scaling {rope_type!r} ({rope})")
    for flag in ("attention_bias", "mlp_bias"):
        if hf.get(flag):
            raise _refuse(f"{flag}=true")
    if hf.get("hidden_act", "silu") != "silu":
        raise _refuse(f"hidden_act {hf['hidden_act']!r}")
    d_model, n_heads = hf["hidden_size"], hf["num_attention_heads"]
    if hf.get("head_dim") not in (None, d_model // n_heads):
        raise _refuse(f"head_dim {hf['head_dim']} != hidden_size / num_attention_heads = {d_model // n_heads}")
    return ModelConfig(
        vocab_size=hf["vocab_size"], max_seq_len=hf["max_position_embeddings"], d_model=d_model, n_heads=n_heads,
        n_layers=hf["num_hidden_layers"], d_ff=hf["intermediate_size"], dropout=0.0, bias=False,
        norm_eps=hf.get("rms_norm_eps", 1e-6), tie_weights=hf.get("tie_word_embeddings", False), causal=True,
        norm="rmsnorm", mlp="swiglu", pos_emb="rope", rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 1e4))),
        n_kv_heads=hf.get("num_key_value_heads") or n_heads)


def _read_llama_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """One model.safetensors, or the shards listed in model.safetensors.index.json (larger checkpoints)."""
    index = path / "model.safetensors.index.json"
    if not index.is_file():
        return _read_state_dict(path)
    from safetensors.torch import load_file

    sd: dict[str, torch.Tensor] = {}
    for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
        sd.update(load_file(str(path / shard)))
    return sd


def load_hf_llama(cls, path) -> "torch.nn.Module":
    """Build `cls(config)` (a CausalLM) and copy the Llama weights found in directory `path` into it."""
    path = Path(path)
    config = llama_config(_read_config(path, "LlamaForCausalLM.save_pretrained"))
    model = cls(config)
    sd = {k: v for k, v in _read_llama_state_dict(path).items() if not k.endswith("rotary_emb.inv_freq")}
    biases = sorted(k for k in sd if k.endswith(".bias"))
    if biases:
        raise _refuse(f"biases ({biases[0]}, ...)")
    ours = {"backbone.tok_emb.weight": sd.pop("model.embed_tokens.weight"),
            "backbone.norm_f.weight": sd.pop("model.norm.weight")}
    for i in range(config.n_layers):
        theirs = f"model.layers.{i}."
        for name, our_name in _BLOCK_MAP.items():
            ours[f"backbone.blocks.{i}.{our_name}"] = sd.pop(theirs + name)
        # W_Q (D, D), W_K and W_V (n_kv_heads Dh, D) stacked: our qkv_proj splits its output in this order
        ours[f"backbone.blocks.{i}.attn.qkv_proj.weight"] = torch.cat([sd.pop(theirs + n) for n in _QKV], dim=0)
    lm_head = sd.pop("lm_head.weight", None)
    if not config.tie_weights:
        if lm_head is None:
            raise ValueError(f"{path}: tie_word_embeddings is false but the checkpoint has no lm_head.weight")
        ours["lm_head.weight"] = lm_head
    if sd:
        raise ValueError(f"{path} holds weights minilm has no place for: {sorted(sd)[:3]} ...; "
                         "is it a Llama-architecture checkpoint?")
    return _load_mapped(model, ours, "Llama")
