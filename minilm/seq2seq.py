"""The original Transformer: an encoder, a decoder, and cross-attention between them (Vaswani et al. 2017).

"Attention Is All You Need" (https://arxiv.org/abs/1706.03762, section 3.1 and figure 1) is an encoder-decoder:
the encoder reads the whole source with bidirectional self-attention; each decoder block runs causal self-attention
over the target so far, then *cross-attention* (queries from the decoder, keys and values from the encoder output,
section 3.2.3), then the MLP. The output projection is tied to the target embedding (section 3.4).

- `Seq2SeqConfig`: the shapes of both halves (separate or shared source / target vocabularies).
- `CrossAttention`, `DecoderBlock`, `Decoder`: the new pieces. The encoder is minilm's bidirectional `Transformer`
  (model.py) as it is, and the decoder reuses `MultiHeadAttention` + `KVCache` (attention.py), `LayerNorm` and `MLP`
  (block.py).
- `EncoderDecoder`: `forward(src, tgt_in, src_mask, targets)` with teacher forcing and label smoothing (section 5.4),
  `generate(...)`: greedy and beam search (section 6.1), the decoder's self-attention KV-cached and the
  cross-attention keys / values computed once per source.
- `beam_search_step`: one step of beam search on log-probabilities, a pure function (tested by brute force).

Deviation from the paper: pre-norm blocks, as everywhere in minilm (block.py; lectures/04_block.ipynb), so the
encoder and the decoder each end with a final LayerNorm; learned positions instead of sinusoids (as GPT-2 and BERT).
Left out on purpose: shared source/target BPE vocabularies, checkpoint averaging, relative positions.
Read beside lectures/08_encoder_decoder.ipynb (equations 8.1-8.10).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import KVCache, MultiHeadAttention, merge_heads, scaled_dot_product_attention, split_heads
from .block import MLP, LayerNorm
from .config import IGNORE_INDEX, ModelConfig, config_from_dict
from .model import Transformer, init_weights


@dataclass
class Seq2SeqConfig:
    src_vocab_size: int = 64  # V_src: source token ids
    tgt_vocab_size: int = 16  # V_tgt: target token ids (bos and eos included)
    max_src_len: int = 48  # S_max: the encoder's context
    max_tgt_len: int = 16  # T_max: the decoder's context, bos included
    d_model: int = 128  # D, shared by encoder and decoder (cross-attention adds their vectors' products)
    n_heads: int = 4  # H, in every attention of both halves
    n_enc_layers: int = 3  # encoder blocks
    n_dec_layers: int = 2  # decoder blocks
    d_ff: int | None = None  # MLP width; None means 4 * d_model
    dropout: float = 0.0
    bias: bool = True
    norm_eps: float = 1e-5
    gelu: str = "exact"  # "exact" (erf) or "tanh"
    init_std: float = 0.02  # N(0, std^2) initialisation (model.py's init_weights, GPT-2's)
    attn_impl: str = "manual"  # "manual" (hand-written) or "sdpa", for every attention
    fused_kernels: bool = False  # F.layer_norm / F.gelu instead of the hand-written formulas (tested equal)
    share_embeddings: bool = False  # one embedding table for source and target (needs one vocabulary)
    bos_id: int = 0  # the target id the decoder starts from
    eos_id: int = 1  # the target id that ends a target sequence

    def __post_init__(self) -> None:
        self.encoder_config(), self.decoder_config()  # ModelConfig validates the shapes, naming the field
        for name in ("bos_id", "eos_id"):
            if not 0 <= getattr(self, name) < self.tgt_vocab_size:
                raise ValueError(f"Seq2SeqConfig.{name} must be a target id in [0, {self.tgt_vocab_size}), "
                                 f"got {getattr(self, name)}")
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError("Seq2SeqConfig.share_embeddings needs src_vocab_size == tgt_vocab_size "
                             f"({self.src_vocab_size} != {self.tgt_vocab_size}): use one vocabulary, or share nothing")

    def _half(self, vocab_size: int, max_len: int, n_layers: int, causal: bool) -> ModelConfig:
        common = {f.name: getattr(self, f.name) for f in fields(ModelConfig) if hasattr(self, f.name)}
        return ModelConfig(**{**common, "vocab_size": vocab_size, "max_seq_len": max_len, "n_layers": n_layers,
                              "causal": causal, "tie_weights": True})

    def encoder_config(self) -> ModelConfig:
        """The encoder is a bidirectional minilm Transformer over the source vocabulary."""
        return self._half(self.src_vocab_size, self.max_src_len, self.n_enc_layers, causal=False)

    def decoder_config(self) -> ModelConfig:
        """The decoder's self-attention is causal, over the target vocabulary."""
        return self._half(self.tgt_vocab_size, self.max_tgt_len, self.n_dec_layers, causal=True)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Seq2SeqConfig":
        return config_from_dict(cls, d)


def seq2seq_loss(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Eq. 8.6-8.7: cross-entropy against q = (1 - eps) onehot(y) + eps / V, averaged over targets != IGNORE_INDEX.

    eps = 0 is the plain teacher-forcing loss (Eq. 8.6). PyTorch spreads eps over all V ids, the true one included,
    exactly as Szegedy et al. 2016 (https://arxiv.org/abs/1512.00567, section 7) and the paper's section 5.4 do.
    logits: (B, T, V), targets: (B, T).
    """
    V = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, V).float(), targets.reshape(-1), ignore_index=IGNORE_INDEX,
                           label_smoothing=label_smoothing)  # (B*T, V) -> ()


class CrossAttention(nn.Module):
    """Queries from the decoder, keys and values from the encoder output (Eq. 8.3; paper section 3.2.3).

    Two projections instead of self-attention's one: `q_proj` reads the decoder stream x (B, T, D), `kv_proj` the
    encoder output ("memory", B, S, D). Their rows stack to W_Q | W_K | W_V, the layout of PyTorch's
    nn.MultiheadAttention.in_proj_weight. `project_memory` computes K and V once per source (Eq. 8.10): they do not
    change while the target grows. `src_mask` (B, S): 1 = token, 0 = pad; pads are never attended to.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_heads = config.n_heads
        self.attn_impl = config.attn_impl
        self.dropout = config.dropout
        self.q_proj = nn.Linear(config.d_model, config.d_model, bias=config.bias)  # W_Q
        self.kv_proj = nn.Linear(config.d_model, 2 * config.d_model, bias=config.bias)  # W_K | W_V
        self.out_proj = nn.Linear(config.d_model, config.d_model, bias=config.bias)  # W_O
        self.resid_dropout = nn.Dropout(config.dropout)
        self.record_weights = False
        self.attn_weights: torch.Tensor | None = None  # (B, H, T, S) when record_weights

    def project_memory(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder output (B, S, D) -> keys, values (B, H, S, Dh) each (Eq. 8.10: once per source)."""
        B, S, D = memory.shape
        k, v = self.kv_proj(memory).split(D, dim=2)  # 2 x (B, S, D)
        return split_heads(k, self.n_heads), split_heads(v, self.n_heads)  # (B, H, S, Dh) each

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None, src_mask: torch.Tensor | None = None,
                memory_kv: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        B, T, D = x.shape
        k, v = memory_kv if memory_kv is not None else self.project_memory(memory)  # (B, H, S, Dh) each
        q = split_heads(self.q_proj(x), self.n_heads)  # (B, H, T, Dh)
        mask = None if src_mask is None else src_mask.bool()[:, None, None, :]  # (B, 1, 1, S): no causal rule
        dropout_p = self.dropout if self.training else 0.0
        if self.attn_impl == "manual" or self.record_weights:
            y, w = scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                                return_weights=True)  # Eq. 8.3: (B, H, T, Dh), (B, H, T, S)
            if self.record_weights:
                self.attn_weights = w.detach()
        else:  # every source has a real token, so no row of the mask is empty (the fused kernel's NaN case)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)  # (B, H, T, Dh)
        return self.resid_dropout(self.out_proj(merge_heads(y)))  # (B, T, D)


class DecoderBlock(nn.Module):
    """Pre-norm decoder block (Eq. 8.4): causal self-attention, cross-attention, MLP, each a residual branch.

    The paper's decoder is post-norm, LN(x + Sublayer(x)); this is the pre-norm form of block.py, with a third
    sublayer, the layout of PyTorch's nn.TransformerDecoderLayer(norm_first=True).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.norm1 = LayerNorm(config.d_model, config.norm_eps, config.bias, config.fused_kernels)
        self.self_attn = MultiHeadAttention(config)  # config.causal is True: Eq. 8.2
        self.norm2 = LayerNorm(config.d_model, config.norm_eps, config.bias, config.fused_kernels)
        self.cross_attn = CrossAttention(config)
        self.norm3 = LayerNorm(config.d_model, config.norm_eps, config.bias, config.fused_kernels)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None, src_mask: torch.Tensor | None = None,
                kv_cache: KVCache | None = None,
                memory_kv: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        x = x + self.self_attn(self.norm1(x), None, kv_cache)  # Eq. 8.2: the target so far, (B, T, D)
        x = x + self.cross_attn(self.norm2(x), memory, src_mask, memory_kv)  # Eq. 8.3: reads the source, (B, T, D)
        x = x + self.mlp(self.norm3(x))  # Eq. 4.6: (B, T, D)
        return x


class Decoder(nn.Module):
    """Target embeddings -> decoder blocks -> final LayerNorm; like model.py's Transformer, plus the memory."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)  # E_tgt: (V_tgt, D)
        self.pos_emb = nn.Embedding(config.max_seq_len, config.d_model)  # P_tgt: (T_max, D)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([DecoderBlock(config) for _ in range(config.n_layers)])
        self.norm_f = LayerNorm(config.d_model, config.norm_eps, config.bias, config.fused_kernels)

    def forward(self, idx: torch.Tensor, memory_kvs: list[tuple[torch.Tensor, torch.Tensor]],
                src_mask: torch.Tensor | None = None, kv_caches: list[KVCache] | None = None) -> torch.Tensor:
        B, T = idx.shape
        past = kv_caches[0].length if kv_caches else 0
        assert past + T <= self.config.max_seq_len, \
            f"target of {past + T} tokens is longer than the decoder's context {self.config.max_seq_len}"
        pos = torch.arange(past, past + T, device=idx.device)  # (T,) absolute positions
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))  # as in model.py's Transformer: (B, T, D)
        for i, block in enumerate(self.blocks):
            x = block(x, None, src_mask, kv_caches[i] if kv_caches else None, memory_kvs[i])  # (B, T, D)
        return self.norm_f(x)  # (B, T, D)


def beam_search_step(log_probs: torch.Tensor, beam_scores: torch.Tensor, finished: torch.Tensor,
                     eos_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of beam search (Eq. 8.8): extend each of K beams by every token, keep the K best of the K * V.

    log_probs: (B, K, V) log p(next token | beam); beam_scores: (B, K) log-probability of each beam so far;
    finished: (B, K) True for beams that have produced eos: their only continuation is eos again, at an unchanged
    score, so a finished hypothesis competes with the live ones without growing. Returns (scores, parents, tokens),
    each (B, K): the new beams' scores in decreasing order, the beam each extends, and its new token.
    Example, K = 2, V = 3, eos_id = 2: scores [0, -inf], log p of beam 0 = log [.5, .3, .2] -> scores
    log [.5, .3], parents [0, 0], tokens [0, 1].
    """
    B, K, V = log_probs.shape
    cand = beam_scores[:, :, None] + log_probs  # Eq. 8.8: (B, K, V)
    frozen = torch.full_like(cand, float("-inf"))
    frozen[:, :, eos_id] = beam_scores  # a finished beam: eos at no cost, nothing else
    cand = torch.where(finished[:, :, None], frozen, cand)  # (B, K, V)
    scores, flat = cand.view(B, K * V).topk(K, dim=-1)  # (B, K), sorted best first
    return scores, flat // V, flat % V  # (B, K) each: score, parent beam, token


def _length_penalty(lengths: torch.Tensor, alpha: float) -> torch.Tensor:
    """Eq. 8.9: lp(Y) = ((5 + |Y|) / 6)^alpha (GNMT, Wu et al. 2016, https://arxiv.org/abs/1609.08144, eq. 14);
    alpha = 0 compares raw log-probabilities; the paper's section 6.1 uses alpha = 0.6 with 4 beams."""
    return ((5.0 + lengths.float()) / 6.0) ** alpha


class EncoderDecoder(nn.Module):
    """Encoder + decoder + tied output projection. `forward(src, tgt_in, src_mask, targets) -> (logits, loss)`.

    src: (B, S) source ids, src_mask: (B, S) 1 = token, 0 = pad (None: no padding). tgt_in: (B, T) the target
    shifted right, starting with bos (teacher forcing, Eq. 8.6); targets: (B, T) the target itself, ending with eos,
    IGNORE_INDEX on padding.
    """

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.config = config
        enc, dec = config.encoder_config(), config.decoder_config()
        self.encoder = Transformer(enc)  # Eq. 8.1: minilm's bidirectional backbone, unchanged
        self.decoder = Decoder(dec)
        self.lm_head = nn.Linear(config.d_model, config.tgt_vocab_size, bias=False)  # (D -> V_tgt)
        # Eq. 8.5: init first, then tie, so the tied tables are drawn once (init_weights walks named_parameters)
        init_weights(self.encoder, config.n_enc_layers, config.init_std)  # GPT-2's initialisation (model.py)
        # init_weights counts 2 residual adds per block; a decoder block has 3 (cross-attention), so 3 n / 2 "layers"
        init_weights(self.decoder, max(1, math.ceil(1.5 * config.n_dec_layers)), config.init_std)
        if config.share_embeddings:
            self.decoder.tok_emb.weight = self.encoder.tok_emb.weight  # one vocabulary, one table
        self.lm_head.weight = self.decoder.tok_emb.weight  # Eq. 8.5: logits = h E_tgt^T (paper section 3.4)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())  # tied weights are counted once

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. 8.1: the encoder output H (B, S, D). Text is checked where it is encoded (translate.py's translate);
        here only the invariants, as asserts."""
        assert src.shape[1] <= self.config.max_src_len, \
            f"a source of {src.shape[1]} tokens is longer than the encoder's context max_src_len={self.config.max_src_len}"
        assert src_mask is None or src_mask.shape == src.shape, f"src_mask must have the shape of src {tuple(src.shape)}"
        return self.encoder(src, src_mask)  # (B, S, D)

    def memory_kvs(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every decoder block's cross-attention keys and values, (B, H, S, Dh) each (Eq. 8.10)."""
        return [block.cross_attn.project_memory(memory) for block in self.decoder.blocks]

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, src_mask: torch.Tensor | None = None,
                targets: torch.Tensor | None = None, label_smoothing: float = 0.0):
        memory = self.encode(src, src_mask)  # (B, S, D)
        h = self.decoder(tgt_in, self.memory_kvs(memory), src_mask)  # (B, T, D)
        logits = self.lm_head(h)  # Eq. 8.5: (B, T, V_tgt)
        loss = None if targets is None else seq2seq_loss(logits, targets, label_smoothing)  # Eqs. 8.6-8.7
        return logits, loss

    @torch.no_grad()
    def generate(self, src: torch.Tensor, max_new_tokens: int, src_mask: torch.Tensor | None = None,
                 beam_size: int = 1, length_penalty: float = 0.6, use_cache: bool = True) -> torch.Tensor:
        """Decode (B, n) target ids for each source, n <= max_new_tokens (bos left out; after eos, eos again).

        beam_size 1 is greedy decoding (argmax at each step); more runs `beam_search`.
        use_cache: the decoder's self-attention reads earlier keys / values from a KVCache (Eq. 3.7) and each
        block's cross-attention keys / values are computed once per source (Eq. 8.10); without it every step runs
        the decoder over the whole prefix and re-projects the memory, which gives the same ids, slower.
        """
        if beam_size != 1:
            return self.beam_search(src, max_new_tokens, src_mask, beam_size, length_penalty, use_cache)[0]
        memory = self._start(src, src_mask, max_new_tokens, beam_size)  # Eq. 8.1, once: (B, S, D)
        B, eos = memory.shape[0], self.config.eos_id
        tokens = torch.full((B, 1), self.config.bos_id, dtype=torch.long, device=memory.device)  # (B, 1)
        caches, kvs = self._new_caches(use_cache), self.memory_kvs(memory) if use_cache else None
        done = torch.zeros(B, dtype=torch.bool, device=memory.device)
        for _ in range(max_new_tokens):
            nxt = self._step(tokens, memory, src_mask, caches, kvs).argmax(dim=-1)  # (B,)
            nxt = torch.where(done, torch.full_like(nxt, eos), nxt)  # a finished row keeps saying eos
            done |= nxt == eos
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)  # (B, t + 1)
            if bool(done.all()):
                break
        return tokens[:, 1:]  # (B, n)

    @torch.no_grad()
    def beam_search(self, src: torch.Tensor, max_new_tokens: int, src_mask: torch.Tensor | None = None,
                    beam_size: int = 4, length_penalty: float = 0.6,
                    use_cache: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep the beam_size best partial targets (Eq. 8.8); return the best finished one per source, (B, n) ids,
        and its log-probability (B,). "Best" at the end is the length-normalised score (Eq. 8.9, alpha =
        length_penalty); beam_size 1 is greedy decoding. Caches as in `generate`."""
        memory = self._start(src, src_mask, max_new_tokens, beam_size)  # Eq. 8.1, once: (B, S, D)
        B, S, D = memory.shape
        K, eos, device = beam_size, self.config.eos_id, memory.device
        memory = memory.repeat_interleave(K, dim=0)  # K copies per source: (B*K, S, D); beams never change source
        src_mask = None if src_mask is None else src_mask.repeat_interleave(K, dim=0)  # (B*K, S)
        tokens = torch.full((B * K, 1), self.config.bos_id, dtype=torch.long, device=device)  # (B*K, 1)
        caches, kvs = self._new_caches(use_cache), self.memory_kvs(memory) if use_cache else None
        scores = torch.full((B, K), float("-inf"), device=device)
        scores[:, 0] = 0.0  # one live beam at the start, so the first step does not pick K copies of one token
        finished = torch.zeros(B, K, dtype=torch.bool, device=device)
        lengths = torch.zeros(B, K, dtype=torch.long, device=device)  # output tokens up to and including eos
        offset = (torch.arange(B, device=device) * K)[:, None]  # (B, 1): row of beam 0 of each source
        for _ in range(max_new_tokens):
            logits = self._step(tokens, memory, src_mask, caches, kvs)  # (B*K, V)
            log_probs = F.log_softmax(logits.float(), dim=-1).view(B, K, -1)  # (B, K, V)
            scores, parents, nxt = beam_search_step(log_probs, scores, finished, eos)  # Eq. 8.8: (B, K) each
            rows = (offset + parents).view(-1)  # (B*K,) the row each new beam continues
            tokens = torch.cat([tokens[rows], nxt.view(-1, 1)], dim=1)  # (B*K, t + 1)
            lengths = lengths.gather(1, parents) + (~finished.gather(1, parents)).long()
            finished = finished.gather(1, parents) | (nxt == eos)  # (B, K)
            for cache in caches or ():  # each new beam takes its parent's keys and values
                cache.k, cache.v = cache.k[rows], cache.v[rows]
            if bool(finished.all()):
                break
        best = (scores / _length_penalty(lengths, length_penalty)).argmax(dim=-1)  # Eq. 8.9: (B,)
        picked = torch.arange(B, device=device)
        return tokens.view(B, K, -1)[picked, best, 1:], scores[picked, best]  # (B, n), (B,)

    def _start(self, src, src_mask, max_new_tokens: int, beam_size: int) -> torch.Tensor:
        """Check the decoding arguments, switch to eval mode (dropout off), return the encoder output (B, S, D)."""
        if max_new_tokens < 1 or max_new_tokens + 1 > self.config.max_tgt_len:
            raise ValueError(f"max_new_tokens must be in [1, max_tgt_len - 1 = {self.config.max_tgt_len - 1}] "
                             f"(the decoder's context holds bos + the output), got {max_new_tokens}")
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        self.eval()  # decoding is evaluation: a training loop switches back with model.train()
        return self.encode(src, src_mask)

    def _step(self, tokens, memory, src_mask, caches, kvs) -> torch.Tensor:
        """Next-token logits (N, V) for N partial targets (N, t): the newest token only with caches, else all."""
        if caches is not None:
            return self.lm_head(self.decoder(tokens[:, -1:], kvs, src_mask, caches)[:, -1])  # (N, V)
        return self.lm_head(self.decoder(tokens, self.memory_kvs(memory), src_mask)[:, -1])  # recomputed: (N, V)

    def _new_caches(self, use_cache: bool):
        return [KVCache(self.config.max_tgt_len) for _ in self.decoder.blocks] if use_cache else None
