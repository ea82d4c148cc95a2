"""Exercises of lectures/08_encoder_decoder.ipynb: cross-attention against nn.MultiheadAttention, and one beam-search
step against a brute-force search over every candidate."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from exercise_checks import close, same

from minilm.config import ModelConfig

exercise = pytest.mark.exercise


# -------------------------------------------------------------------------------------------------- CrossAttention
def _cross(solution, n_heads=4):
    config = ModelConfig(vocab_size=11, max_seq_len=8, d_model=16, n_heads=n_heads, n_layers=1)
    attn = solution(config).eval()
    with torch.no_grad():
        for p in attn.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    ref = nn.MultiheadAttention(16, n_heads, batch_first=True)  # PyTorch's attention, the same weights
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([attn.q_proj.weight, attn.kv_proj.weight]))  # W_Q | W_K | W_V
        ref.in_proj_bias.copy_(torch.cat([attn.q_proj.bias, attn.kv_proj.bias]))
        ref.out_proj.weight.copy_(attn.out_proj.weight)
        ref.out_proj.bias.copy_(attn.out_proj.bias)
    return attn, ref


HINT_CROSS = ("Eq. 8.3: Q from q_proj(x), K and V from kv_proj(memory) (K first), heads split, "
              "softmax(Q K^T / sqrt(Dh)) V with pads hidden, heads merged, out_proj")


@exercise("seq2seq.py::CrossAttention")
def test_cross_attention_matches_pytorch_multihead_attention(solution):
    attn, ref = _cross(solution)
    x, memory = torch.randn(2, 5, 16), torch.randn(2, 7, 16)  # (B, T, D), (B, S, D)
    expected = ref(x, memory, memory, need_weights=False)[0]
    close(attn(x, memory), expected, "CrossAttention(x, memory) against nn.MultiheadAttention(x, memory, memory)",
          HINT_CROSS)


@exercise("seq2seq.py::CrossAttention")
def test_cross_attention_hides_padded_source_positions(solution):
    attn, ref = _cross(solution, n_heads=2)
    x, memory = torch.randn(3, 4, 16), torch.randn(3, 6, 16)
    src_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]])  # (B, S): 0 = pad
    expected = ref(x, memory, memory, key_padding_mask=src_mask == 0, need_weights=False)[0]
    close(attn(x, memory, src_mask), expected, "CrossAttention(x, memory, src_mask) with padded sources",
          "a pad (src_mask 0) must get attention weight 0: mask the scores with src_mask.bool()[:, None, None, :]")


@exercise("seq2seq.py::CrossAttention")
def test_cross_attention_projects_the_memory_once_and_reuses_it(solution):
    attn, ref = _cross(solution)
    x, memory = torch.randn(2, 3, 16), torch.randn(2, 5, 16)
    k, v = attn.project_memory(memory)
    D, H = 16, 4
    kv = F.linear(memory, ref.in_proj_weight[D:], ref.in_proj_bias[D:])  # (B, S, 2D): K | V
    expected_k = kv[..., :D].view(2, 5, H, D // H).transpose(1, 2)  # (B, H, S, Dh)
    close(k, expected_k, "project_memory(memory)[0], the keys (B, H, S, Dh)", "the first D columns of kv_proj are W_K")
    close(v, kv[..., D:].view(2, 5, H, D // H).transpose(1, 2), "project_memory(memory)[1], the values",
          "the last D columns of kv_proj are W_V")
    close(attn(x, None, None, (k, v)), attn(x, memory), "forward with memory_kv=(k, v) against forward with memory",
          "when memory_kv is given, use it instead of projecting memory (Eq. 8.10: once per source)")


# ----------------------------------------------------------------------------------------------- beam_search_step
def _brute_force(log_probs, beam_scores, finished, eos_id):
    """Every candidate (score, parent, token) of every row, sorted best first: the K best are the answer."""
    B, K, V = log_probs.shape
    rows = []
    for b in range(B):
        cands = []
        for k in range(K):
            for v in range(V):
                if not finished[b, k]:
                    cands.append((float(beam_scores[b, k] + log_probs[b, k, v]), k, v))
                elif v == eos_id:
                    cands.append((float(beam_scores[b, k]), k, v))
        rows.append(sorted(cands, key=lambda c: -c[0])[:K])
    return rows


@exercise("seq2seq.py::beam_search_step")
def test_beam_search_step_worked_example(solution):
    log_probs = torch.log(torch.tensor([[[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]]))  # (B=1, K=2, V=3)
    beam_scores = torch.tensor([[0.0, -math.inf]])  # only beam 0 is alive at the start
    scores, parents, tokens = solution(log_probs, beam_scores, torch.zeros(1, 2, dtype=torch.bool), 2)
    close(scores, torch.log(torch.tensor([[0.5, 0.3]])), "scores of the docstring's example",
          "Eq. 8.8: beam score + log p, the K best of the K * V candidates, best first")
    same(parents, torch.tensor([[0, 0]]), "parents of the docstring's example", "parent = flat index // V")
    same(tokens, torch.tensor([[0, 1]]), "tokens of the docstring's example", "token = flat index % V")


@exercise("seq2seq.py::beam_search_step")
def test_beam_search_step_matches_brute_force(solution):
    torch.manual_seed(0)
    B, K, V, eos = 3, 4, 6, 1
    log_probs = F.log_softmax(torch.randn(B, K, V) * 2, dim=-1)
    beam_scores = torch.randn(B, K) * 3
    finished = torch.rand(B, K) < 0.4
    finished[0] = False
    scores, parents, tokens = solution(log_probs, beam_scores, finished, eos)
    best = _brute_force(log_probs, beam_scores, finished, eos)
    close(scores, torch.tensor([[c[0] for c in row] for row in best]), "scores against a brute-force search",
          "finished beams continue with eos only, at their unchanged score")
    same(parents, torch.tensor([[c[1] for c in row] for row in best]), "parents against a brute-force search")
    same(tokens, torch.tensor([[c[2] for c in row] for row in best]), "tokens against a brute-force search")
