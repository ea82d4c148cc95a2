"""Load Hugging Face GPT-2 and BERT checkpoint directories into minilm's CausalLM and MaskedLM (local files only).

GPT-2 (Radford et al. 2019) is the architecture minilm's causal model reproduces: pre-norm blocks, learned positions,
tanh-GELU, tied embeddings. So its weights load one-to-one once two differences are handled:
  - names: GPT-2's `wte`, `wpe`, `h.{i}.ln_1`, `attn.c_attn`, `attn.c_proj`, `ln_2`, `mlp.c_fc`, `mlp.c_proj`, `ln_f`
    are our `tok_emb`, `pos_emb`, `blocks.{i}.norm1`, `attn.qkv_proj`, `attn.out_proj`, `norm2`, `mlp.fc_in`,
    `mlp.fc_out`, `norm_f` (this file is the only place GPT-2's names appear);
  - layout: GPT-2 stores its projections as `Conv1D` with weight (in, out), the transpose of `nn.Linear`'s (out, in).
The directory holds `config.json` and `model.safetensors` (or `pytorch_model.bin`, read with weights_only=True), as
written by `transformers`' `save_pretrained`. Read beside lectures/05_model.ipynb.

BERT (Devlin et al. 2019, https://arxiv.org/abs/1810.04805, section 3) differs from minilm's encoder in ways the
config switches on, rather than in names only: post-norm blocks with no final LayerNorm (Eq. 4.7), token-type
embeddings and a LayerNorm on the summed embeddings (Eq. 5.12), exact GELU, and a pooler (Eq. 5.13). Its `query`,
`key`, `value` Linears are stacked into our one `qkv_proj`. `BertForMaskedLM`, `BertForPreTraining` (whose
next-sentence head is dropped: minilm leaves NSP out) and `BertModel` (no MLM head: ours keeps its initialisation)
load; anything else is refused with a line that says why. Read beside lectures/05_model.ipynb, section 10.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from .config import ModelConfig

# GPT-2 name suffix inside block i -> (our name inside blocks.{i}, transposed?): GPT-2's Conv1D stores its weight as
# (in, out), so the weights of the four projections are transposed; biases and LayerNorm gains are copied as they are.
_BLOCK_MAP = {f"{theirs}.{p}": (f"{ours}.{p}", conv1d and p == "weight")
              for theirs, ours, conv1d in [("ln_1", "norm1", False), ("attn.c_attn", "attn.qkv_proj", True),
                                           ("attn.c_proj", "attn.out_proj", True), ("ln_2", "norm2", False),
                                           ("mlp.c_fc", "mlp.fc_in", True), ("mlp.c_proj", "mlp.fc_out", True)]
              for p in ("weight", "bias")}


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


def _read_config(path: Path, saved_by: str) -> dict:
    """`path`/config.json as a dict; when it is missing, say what writes such a directory (`saved_by`)."""
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}/config.json not found: pass a directory written by transformers' {saved_by}")
    return json.loads((path / "config.json").read_text())


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if (path / "model.safetensors").exists():
        from safetensors.torch import load_file

        return load_file(str(path / "model.safetensors"))
    if (path / "pytorch_model.bin").exists():
        return torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{path} has no model.safetensors or pytorch_model.bin: "
                            "save one with transformers' model.save_pretrained(path)")


def _load_mapped(model: torch.nn.Module, ours: dict[str, torch.Tensor], what: str) -> torch.nn.Module:
    """Load the renamed tensors `ours` into `model`, which they must cover (a tied lm_head is the embedding)."""
    missing, unexpected = model.load_state_dict(ours, strict=False)
    missing = [m for m in missing if not (model.config.tie_weights and m == "lm_head.weight")]
    assert not missing and not unexpected, f"{what} mapping incomplete: missing {missing}, unexpected {unexpected}"
    return model


def load_hf_gpt2(cls, path) -> "torch.nn.Module":
    """Build `cls(config)` (a CausalLM) and copy the GPT-2 weights found in directory `path` into it."""
    path = Path(path)
    config = gpt2_config(_read_config(path, "GPT2LMHeadModel.save_pretrained"))
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
    return _load_mapped(model, ours, "GPT-2")


# BERT name inside encoder.layer.{i} -> our name inside blocks.{i} (query / key / value are stacked separately).
_BERT_BLOCK_MAP = {
    "attention.output.dense": "attn.out_proj",
    "attention.output.LayerNorm": "norm1",  # post-norm: LN(x + Attn(x)), Eq. 4.7
    "intermediate.dense": "mlp.fc_in",
    "output.dense": "mlp.fc_out",
    "output.LayerNorm": "norm2",  # LN(x + MLP(x)), Eq. 4.7
}
# BERT name outside the blocks -> ours; the `cls.predictions` ones are the MLM head (absent from a BertModel).
_BERT_MAP = {
    "embeddings.word_embeddings": "backbone.tok_emb",
    "embeddings.position_embeddings": "backbone.pos_emb",
    "embeddings.token_type_embeddings": "backbone.type_emb",
    "embeddings.LayerNorm": "backbone.emb_norm",
    "pooler.dense": "backbone.pooler",
    "cls.predictions.transform.dense": "head_dense",
    "cls.predictions.transform.LayerNorm": "head_norm",
}
# Stored by some BERT checkpoints and not needed: a buffer of 0..T-1, the NSP head, a copy of cls.predictions.bias.
_BERT_IGNORED = ("embeddings.position_ids", "cls.seq_relationship.", "cls.predictions.decoder.bias")


def bert_config(hf: dict, pooler: bool) -> ModelConfig:
    """Translate a BERT `config.json` into a ModelConfig; refuse what minilm's encoder cannot represent."""
    if hf.get("model_type") != "bert":
        raise ValueError(f"expected a BERT checkpoint (config.json model_type 'bert'), got {hf.get('model_type')!r}: "
                         "RoBERTa, DistilBERT and others name and place their weights differently")
    act = hf.get("hidden_act", "gelu")
    if act not in ("gelu", "gelu_new", "gelu_pytorch_tanh"):
        raise ValueError(f"config.json hidden_act {act!r}: minilm's MLP computes GELU only (exact or tanh)")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"config.json position_embedding_type {hf['position_embedding_type']!r}: minilm has learned "
                         "absolute positions only")
    if hf.get("is_decoder") or hf.get("add_cross_attention"):
        raise ValueError("config.json describes a BERT decoder (is_decoder / add_cross_attention): minilm's MaskedLM "
                         "is an encoder")
    return ModelConfig(
        vocab_size=hf["vocab_size"], max_seq_len=hf["max_position_embeddings"], d_model=hf["hidden_size"],
        n_heads=hf["num_attention_heads"], n_layers=hf["num_hidden_layers"], d_ff=hf["intermediate_size"],
        dropout=hf.get("hidden_dropout_prob", 0.1), bias=True, norm_eps=hf.get("layer_norm_eps", 1e-12),
        gelu="exact" if act == "gelu" else "tanh", init_std=hf.get("initializer_range", 0.02),
        tie_weights=hf.get("tie_word_embeddings", True), causal=False, norm_position="post",
        type_vocab_size=hf.get("type_vocab_size", 2), embed_norm=True, pooler=pooler)


def load_hf_bert(cls, path) -> "torch.nn.Module":
    """Build `cls(config)` (a MaskedLM) and copy the BERT weights found in directory `path` into it."""
    path = Path(path)
    hf = _read_config(path, "BertForMaskedLM.save_pretrained (or a downloaded bert-base-uncased)")
    config = bert_config(hf, pooler=False)  # refuses a non-BERT config before any weights are read
    sd = {}
    for k, v in _read_state_dict(path).items():
        k = k.removeprefix("bert.")
        k = k[:-6] + ".weight" if k.endswith(".gamma") else k[:-5] + ".bias" if k.endswith(".beta") else k  # TF names
        if not k.startswith(_BERT_IGNORED):
            sd[k] = v
    if "embeddings.word_embeddings.weight" not in sd:
        raise ValueError(f"{path} holds no BERT embeddings (embeddings.word_embeddings.weight): not a BERT checkpoint")
    config = dataclasses.replace(config, pooler="pooler.dense.weight" in sd)  # BertForMaskedLM saves no pooler
    model = cls(config)
    ours = {}
    for theirs, name in _BERT_MAP.items():
        for p in ("weight", "bias"):
            if f"{theirs}.{p}" in sd:
                ours[f"{name}.{p}"] = sd.pop(f"{theirs}.{p}")
    for i in range(config.n_layers):
        for p in ("weight", "bias"):
            qkv = [sd.pop(f"encoder.layer.{i}.attention.self.{n}.{p}", None) for n in ("query", "key", "value")]
            if all(t is not None for t in qkv):
                ours[f"backbone.blocks.{i}.attn.qkv_proj.{p}"] = torch.cat(qkv, dim=0)  # W_Q | W_K | W_V: (3D, D)
            for theirs, name in _BERT_BLOCK_MAP.items():
                if f"encoder.layer.{i}.{theirs}.{p}" in sd:
                    ours[f"backbone.blocks.{i}.{name}.{p}"] = sd.pop(f"encoder.layer.{i}.{theirs}.{p}")
    if "cls.predictions.bias" in sd:
        ours["decoder_bias"] = sd.pop("cls.predictions.bias")
    decoder = sd.pop("cls.predictions.decoder.weight", None)  # tied checkpoints may store a copy of the embedding
    if not config.tie_weights and decoder is not None:
        ours["decoder.weight"] = decoder
    if sd:
        raise ValueError(f"{path}: weights minilm's MaskedLM cannot represent: {sorted(sd)[:4]}"
                         f"{' ...' if len(sd) > 4 else ''} ({hf.get('architectures')})")
    missing, unexpected = model.load_state_dict(ours, strict=False)
    missing = [m for m in missing if not (config.tie_weights and m == "decoder.weight")]
    head_missing = [m for m in missing if not m.startswith("backbone.")]
    if head_missing and any(not k.startswith("backbone.") for k in ours):
        raise ValueError(f"{path}: the MLM head (cls.predictions) is incomplete, missing {head_missing}")
    missing = [m for m in missing if m not in head_missing]  # a BertModel has no MLM head: ours keeps its init
    if missing:
        more = " ..." if len(missing) > 4 else ""
        raise ValueError(f"{path}: not a complete BERT checkpoint, missing {missing[:4]}{more}")
    assert not unexpected, f"BERT mapping produced names MaskedLM does not have: {unexpected}"
    return model
