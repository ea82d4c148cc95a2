"""One Transformer backbone and two language-model heads: causal (GPT) and masked (BERT).

- `Transformer`: token + learned position embeddings, a stack of pre-norm blocks, a final LayerNorm (Eq. 5.1). BERT's
  variant is a config away (lectures/05_model.ipynb, section 10): post-norm blocks without the final LayerNorm
  (Eq. 4.7), token-type embeddings and a LayerNorm on the summed embeddings (Eq. 5.12), and the pooler (Eq. 5.13).
- `CausalLM`: next-token prediction, GPT-2 style (Radford et al. 2019, "Language Models are Unsupervised Multitask
  Learners", section 2.3): left-to-right attention, output projection tied to the token embedding (Eq. 5.2; Press &
  Wolf 2017, https://arxiv.org/abs/1608.05859), GPT-2 initialisation (Eq. 5.6), generation with a KV cache.
- `MaskedLM`: BERT's masked-token prediction (Devlin et al. 2019, https://arxiv.org/abs/1810.04805, section 3.1):
  bidirectional attention and BERT's MLM head (dense, GELU, LayerNorm, tied decoder + bias; Eq. 5.3).
The classification head lives in classifier.py, sampling rules in sampling.py, GPT-2 and BERT weight loading in
pretrained.py.

Left out on purpose: BERT's next-sentence prediction head (RoBERTa showed NSP does not help),
dropout variants, mixture of experts. Read beside lectures/05_model.ipynb.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import KVCache
from .block import LayerNorm, TransformerBlock, activation, make_norm
from .config import IGNORE_INDEX, ModelConfig
from .pretrained import load_hf_bert, load_hf_gpt2
from .pretrained_llama import is_llama_dir, load_hf_llama
from .sampling import append_token, sample_next


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy -1/N sum_t log p(x_{t+1} | x_<=t) over targets != IGNORE_INDEX (Eq. 2.2).

    logits: (B, T, V) predictions at every position; targets: (B, T), the inputs shifted left by one. Any leading
    shape works, e.g. (N, V) and (N,) for the positions a masked LM selected.
    """
    V = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, V).float(), targets.reshape(-1), ignore_index=IGNORE_INDEX)  # (B*T, V)


def masked_lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged over the masked positions only, i.e. where targets != IGNORE_INDEX (Eq. 2.3).

    logits: (..., V), targets: (...). The arithmetic is the same as `next_token_loss`; what differs is which targets
    the data pipeline fills in (every next token there, only the ~15% selected positions here).
    """
    return next_token_loss(logits, targets)


class Transformer(nn.Module):
    """Embeddings -> n_layers pre-norm blocks -> final LayerNorm. Returns hidden states (B, T, D).

    BERT (norm_position="post", type_vocab_size=2, embed_norm=True, pooler=True): embeddings + token types -> LayerNorm
    -> post-norm blocks, no final LayerNorm; `pooler` is BERT's dense + tanh, used only by the classifier."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)  # E: (V, D)
        # P: (max_seq_len, D), learned (GPT-2, BERT); None with RoPE, which puts positions into q and k instead
        self.pos_emb = nn.Embedding(config.max_seq_len, config.d_model) if config.pos_emb == "learned" else None
        norm = lambda: LayerNorm(config.d_model, config.norm_eps, config.bias, config.fused_kernels)  # noqa: E731
        # BERT only (None otherwise, so earlier checkpoints keep their names): S, a table of segment vectors (sentence
        # A / B), and a LayerNorm on the summed embeddings
        self.type_emb = nn.Embedding(config.type_vocab_size, config.d_model) if config.type_vocab_size else None
        self.emb_norm = norm() if config.embed_norm else None
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([TransformerBlock(config) for _ in range(config.n_layers)])
        # pre-norm leaves the residual stream unnormalised, so a final norm comes before any head; post-norm blocks
        # end in a LayerNorm already (Eq. 4.7), so BERT has none
        self.norm_f = make_norm(config) if config.norm_position == "pre" else None  # LayerNorm, or RMSNorm
        self.pooler = nn.Linear(config.d_model, config.d_model, bias=config.bias) if config.pooler else None  # Eq. 5.13

    def forward(self, idx: torch.Tensor, attention_mask: torch.Tensor | None = None,
                kv_caches: list[KVCache] | None = None, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        past = kv_caches[0].length if kv_caches else 0  # positions already in the cache
        B, T = idx.shape
        assert past + T <= self.config.max_seq_len, \
            f"cannot forward {past + T} positions: the context is max_seq_len={self.config.max_seq_len}"
        pos = torch.arange(past, past + T, device=idx.device)  # (T,) absolute positions
        x = self.tok_emb(idx)  # (B, T, D)
        if self.pos_emb is not None:
            x = x + self.pos_emb(pos)  # Eq. 5.1: h_0 = E[x_t] + P[t], (B, T, D); with RoPE h_0 = E[x_t]
        if self.type_emb is not None:  # all zeros (sentence A) unless told otherwise, as in BERT
            types = torch.zeros_like(idx) if token_type_ids is None else token_type_ids  # (B, T)
            x = x + self.type_emb(types)  # Eq. 5.12: + S[s_t], (B, T, D)
        else:
            assert token_type_ids is None, "token_type_ids need a model with ModelConfig.type_vocab_size > 0"
        if self.emb_norm is not None:
            x = self.emb_norm(x)  # Eq. 5.12: BERT normalises the summed embeddings, (B, T, D)
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, attention_mask, kv_caches[i] if kv_caches else None)  # (B, T, D)
        return x if self.norm_f is None else self.norm_f(x)  # (B, T, D)


def init_weights(module: nn.Module, n_layers: int, std: float = 0.02) -> None:
    """GPT-2 initialisation (Eq. 5.6): every weight ~ N(0, std^2), biases 0, LayerNorm gain 1; the projections that
    write into the residual stream (attention out_proj, MLP fc_out) ~ N(0, (std / sqrt(2 n_layers))^2), so the
    variance of the residual stream does not grow with depth (GPT-2 paper, section 2.3: 2 residual adds per block).
    std = 0.02 is GPT-2's and BERT's `initializer_range` (ModelConfig.init_std)."""
    for name, p in module.named_parameters():
        if name.endswith("bias"):
            nn.init.zeros_(p)
        elif "norm" in name and name.endswith("weight"):
            nn.init.ones_(p)
        elif name.endswith("out_proj.weight") or name.endswith("fc_out.weight"):
            nn.init.normal_(p, mean=0.0, std=std / math.sqrt(2 * n_layers))  # Eq. 5.6, residual projections
        else:
            nn.init.normal_(p, mean=0.0, std=std)  # Eq. 5.6


class LanguageModel(nn.Module):
    """What both LM heads share: the backbone, parameter counting and the FLOP estimate."""

    config: ModelConfig
    backbone: Transformer

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters, counting tied weights once; `non_embedding` leaves out the position table (Eq. 5.10)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and self.backbone.pos_emb is not None:
            n -= self.backbone.pos_emb.weight.numel()
        return n

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token, forward + backward (Eq. 5.11): 6 N for the weight matmuls (2 per parameter
        forward, 4 backward; Kaplan et al. 2020, section 2.1) + 12 L T D for the attention scores Q K^T and the
        weighted sum of values, which no parameter counts (PaLM's count: Chowdhery et al. 2022, appendix B; Kaplan
        et al. count the same two matmuls forward only as 2 n_layer n_ctx d_attn, and omit them from C = 6N).
        N excludes the position table but includes biases and LayerNorm gains, which do no multiply-add per
        token: that is why 6N slightly overstates the weight matmuls (lectures/05_model.ipynb measures it)."""
        c = self.config
        T = seq_len or c.max_seq_len
        return 6 * self.num_params(non_embedding=True) + 12 * c.n_layers * c.d_model * T


class CausalLM(LanguageModel):
    """GPT: predict token t+1 from tokens 1..t. `forward(idx, targets=None) -> (logits, loss)`."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        config = dataclasses.replace(config, causal=True)  # the head decides the direction: left to right
        self.config = config
        self.backbone = Transformer(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)  # (D -> V)
        if config.tie_weights:
            self.lm_head.weight = self.backbone.tok_emb.weight  # Eq. 5.2: logits = h E^T (weight tying)
        init_weights(self, config.n_layers, config.init_std)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None):
        h = self.backbone(idx, attention_mask)  # (B, T, D)
        logits = self.lm_head(h)  # Eq. 5.2: (B, T, V)
        loss = None if targets is None else next_token_loss(logits, targets)
        return logits, loss

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, eos_id: int | None = None, generator: torch.Generator | None = None,
                 use_cache: bool = True) -> torch.Tensor:
        """Append up to `max_new_tokens` sampled tokens to `idx` (B, T) and return (B, T + n).

        temperature 0 means greedy decoding (argmax). Sampling rules: sampling.py (Eqs. 5.7-5.9).
        With `use_cache`, each step runs the model on the newest token only and reads the earlier keys and values
        from a KV cache (Eq. 3.7). Learned absolute positions cannot slide, so once the context is full each step
        re-encodes the last max_seq_len tokens, exactly as generation without a cache does (with RoPE too, which could
        slide but then would not match the recompute).
        `eos_id`: a row that has produced it keeps producing it; generation stops when every row has.
        """
        context = self.config.max_seq_len
        assert idx.shape[1] <= context, f"a prompt of {idx.shape[1]} tokens is longer than max_seq_len={context}"
        was_training = self.training
        self.eval()
        caches: list[KVCache] | None = None
        done = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
        for _ in range(max_new_tokens):
            if use_cache and caches is not None and caches[0].length < context:
                h = self.backbone(idx[:, -1:], kv_caches=caches)  # only the new token: (B, 1, D)
            else:
                window = idx[:, -context:]  # crop to the context: (B, min(T, max_seq_len))
                caches = [KVCache(context) for _ in self.backbone.blocks] if use_cache else None
                h = self.backbone(window, kv_caches=caches)  # (B, T, D)
            logits = self.lm_head(h[:, -1, :])  # (B, V)
            nxt = sample_next(logits, temperature, top_k, top_p, generator)  # (B, 1)
            idx, finished = append_token(idx, nxt, done, eos_id)  # (B, T + 1)
            if finished:
                break
        self.train(was_training)
        return idx

    @classmethod
    def from_pretrained(cls, path) -> "CausalLM":
        """Load a local Hugging Face GPT-2 (pretrained.py) or Llama-architecture (pretrained_llama.py) checkpoint
        directory; no network."""
        return load_hf_llama(cls, path) if is_llama_dir(path) else load_hf_gpt2(cls, path)


class MaskedLM(LanguageModel):
    """BERT: predict the masked tokens from both sides. `forward(idx, targets=None, attention_mask=None)`."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        config = dataclasses.replace(config, causal=False)  # the head decides the direction: both ways
        self.config = config
        self.backbone = Transformer(config)
        # BERT's prediction head ("transform" then decoder): dense -> GELU -> LayerNorm -> E^T + b (Eq. 5.3)
        self.head_dense = nn.Linear(config.d_model, config.d_model, bias=config.bias)
        self.head_norm = LayerNorm(config.d_model, config.norm_eps, config.bias, config.fused_kernels)
        self.decoder = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.decoder_bias = nn.Parameter(torch.zeros(config.vocab_size))  # BERT keeps an output bias per token
        self.act = activation(config)  # the same GELU as the blocks' MLPs
        if config.tie_weights:
            self.decoder.weight = self.backbone.tok_emb.weight  # tied, as in BERT
        init_weights(self, config.n_layers, config.init_std)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None):
        """Without targets: logits at every position, (B, T, V). With targets: the loss (Eq. 2.3) and the logits of
        the N selected positions only, (N, V) in row-major order of `targets != IGNORE_INDEX`. The loss reads nothing
        else, so the head (its D x V decoder is the largest matmul of a small model) runs on ~15% of the positions."""
        h = self.backbone(idx, attention_mask, token_type_ids=token_type_ids)  # (B, T, D)
        if targets is not None:
            selected = targets != IGNORE_INDEX  # (B, T)
            h, targets = h[selected], targets[selected]  # (N, D), (N,)
        z = self.head_norm(self.act(self.head_dense(h)))  # (B, T, D) or (N, D)
        logits = self.decoder(z) + self.decoder_bias  # Eq. 5.3: (B, T, V) or (N, V)
        loss = None if targets is None else masked_lm_loss(logits, targets)
        return logits, loss

    @classmethod
    def from_pretrained(cls, path) -> "MaskedLM":
        """Load a local Hugging Face BERT directory (BertForMaskedLM, BertForPreTraining or BertModel; no network):
        post-norm, token types, embedding LayerNorm, exact GELU. See pretrained.py."""
        return load_hf_bert(cls, path)

    def flops_per_token(self, seq_len: int | None = None, mask_prob: float = 1.0) -> int:
        """Eq. 5.11 with the head (dense, LayerNorm, decoder E^T + b) counted at the fraction `mask_prob` of positions
        it runs on in training (forward with targets); mask_prob=1 counts it everywhere, as for a causal LM."""
        D, V = self.config.d_model, self.config.vocab_size
        head = sum(p.numel() for p in (*self.head_dense.parameters(), *self.head_norm.parameters(), self.decoder_bias))
        head += V * D  # the decoder's weight (tied: counted once, in the embedding, by num_params)
        return super().flops_per_token(seq_len) - round(6 * (1 - mask_prob) * head)
