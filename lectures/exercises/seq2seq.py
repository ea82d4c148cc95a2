"""Exercises for lectures/08_encoder_decoder.ipynb: cross-attention, and one step of beam search.

Write each body; keep every signature as it is (a test compares it with minilm/seq2seq.py). For the class the
constructor is given (the tests copy weights by these attribute names): you write `project_memory` and `forward`.
Check your work:

    pytest tests/exercises/test_seq2seq_exercises.py --impl=exercises     # or: python -m minilm.grade

The tests compare with nn.MultiheadAttention and with a brute-force search over every candidate. Shapes: B batch,
T target length, S source length, D d_model, H heads, Dh = D / H, K beams, V vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn as nn

# The attention arithmetic comes from minilm (its own exercises are in attention.py), so this exercise grades only
# what is new in cross-attention: where the queries, keys and values come from, and the source padding mask.
from minilm.attention import merge_heads, scaled_dot_product_attention, split_heads  # noqa: F401
from minilm.config import ModelConfig


class CrossAttention(nn.Module):
    """Exercise seq2seq.py::CrossAttention (Eq. 8.3): queries from the decoder, keys and values from the encoder.

        CrossAttn(X, M) = softmax(Q K^T / sqrt(Dh) + M_pad) V,   Q = X W_Q,  K = M W_K,  V = M W_V     (Eq. 8.3)

    then the heads are concatenated and projected by W_O (out_proj), then resid_dropout. X (B, T, D) is the decoder
    stream, M (B, S, D) the encoder output ("memory"). M_pad hides padded source positions: src_mask (B, S) holds
    1 for a token and 0 for a pad, and no query may attend to a pad. There is no causal mask: every target position
    may read the whole source.

    The constructor is given. Write:
    - `project_memory(memory)`: kv_proj(memory) is (B, S, 2D); split it into K and V and return both with their
      heads split, (B, H, S, Dh) each. The decoder calls it once per source (Eq. 8.10).
    - `forward(x, memory, src_mask, memory_kv)`: use `memory_kv` (the pair project_memory returned) when it is
      given, else project `memory`; q_proj(x) with its heads split is Q; attention; merge heads; out_proj.
    Hints: split_heads(t, self.n_heads) and merge_heads(y) from minilm.attention; the mask for
    scaled_dot_product_attention is boolean, True = may attend, broadcastable to (B, H, T, S):
    src_mask.bool()[:, None, None, :]. Pass dropout_p=self.dropout only in training mode (self.training).
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
        self.attn_weights: torch.Tensor | None = None

    def project_memory(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError("exercise seq2seq.py::CrossAttention is not attempted yet (write project_memory)")

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None, src_mask: torch.Tensor | None = None,
                memory_kv: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        raise NotImplementedError("exercise seq2seq.py::CrossAttention is not attempted yet (write forward)")


def beam_search_step(log_probs: torch.Tensor, beam_scores: torch.Tensor, finished: torch.Tensor,
                     eos_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exercise seq2seq.py::beam_search_step (Eq. 8.8): extend K beams by every token, keep the K best of K * V.

        score(y_1..t) = score(y_1..t-1) + log p(y_t | y_<t, x)      (Eq. 8.8)

    log_probs: (B, K, V), log p of each next token for each beam; beam_scores: (B, K), the score of each beam so
    far; finished: (B, K) bool, True for a beam that has already produced eos. A finished beam has exactly one
    continuation: eos again, at its unchanged score (so it keeps competing with the live beams without growing).
    Return (scores, parents, tokens), each (B, K): the K best candidates of each row in decreasing score, the beam
    k each one extends, and the token it appends.
    Example: K = 2, V = 3, eos_id = 2, beam_scores [[0, -inf]], log_probs of beam 0 log [.5, .3, .2] -> scores
    log [.5, .3], parents [0, 0], tokens [0, 1].

    Hints: candidates = beam_scores[:, :, None] + log_probs, (B, K, V); for finished beams replace their row by
    -inf everywhere except beam_scores at eos_id (torch.where(finished[:, :, None], frozen, candidates));
    .view(B, K * V).topk(K, dim=-1) gives scores and flat indices; parent = flat // V, token = flat % V.
    """
    raise NotImplementedError("exercise seq2seq.py::beam_search_step is not attempted yet")
