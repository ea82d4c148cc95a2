"""How the next token is chosen from the model's logits: temperature, top-k, top-p (nucleus), greedy.

A language model gives a distribution p(x_{t+1} | x_<=t); decoding is the separate choice of how to draw from it.
Temperature reshapes the distribution (Eq. 5.7), top-k keeps only the k most likely tokens (Fan et al. 2018,
https://arxiv.org/abs/1805.04833, Eq. 5.8), top-p keeps the smallest set whose probability reaches p (Holtzman et al.
2020, "The Curious Case of Neural Text Degeneration", https://arxiv.org/abs/1904.09751, section 3.1, Eq. 5.9).

Left out on purpose: beam search, repetition penalties, min-p. Read beside lectures/05_model.ipynb.
"""

from __future__ import annotations

import torch


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits in each row, set the rest to -inf (Eq. 5.8). logits: (B, V)."""
    if k <= 0:
        raise ValueError(f"top_k must be a positive integer, got {k}")
    k = min(k, logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1): the k-th largest logit
    return logits.masked_fill(logits < kth, float("-inf"))  # ties with the k-th value are kept


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the nucleus: the most likely tokens whose cumulative probability first reaches p (Eq. 5.9).

    A token (in order of decreasing probability) is in the nucleus when the mass *before* it is still below p,
    so the most likely token is always kept. logits: (B, V).
    """
    if not 0.0 < p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {p}")
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
    probs = torch.softmax(sorted_logits.float(), dim=-1)  # (B, V)
    mass_before = torch.cumsum(probs, dim=-1) - probs  # (B, V): probability of the more likely tokens
    drop_sorted = mass_before >= p  # (B, V), in sorted order
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token id per row from logits (B, V); returns (B, 1). temperature 0 means greedy (argmax)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return torch.argmax(logits, dim=-1, keepdim=True)  # (B, 1)
    logits = logits.float() / temperature  # Eq. 5.7: softmax(z / tau); tau < 1 sharpens, tau > 1 flattens
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    probs = torch.softmax(logits, dim=-1)  # (B, V)
    return torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)


def append_token(idx: torch.Tensor, nxt: torch.Tensor, done: torch.Tensor, eos_id: int | None):
    """Append the sampled tokens nxt (B, 1) to idx (B, T) -> (B, T + 1), and whether every row has ended.

    A row that has produced `eos_id` keeps producing it (`done`, (B,), is updated in place), so rows of a batch can
    end at different steps while the batch stays rectangular.
    """
    if eos_id is not None:
        nxt = torch.where(done[:, None], torch.full_like(nxt, eos_id), nxt)  # (B, 1)
        done |= nxt[:, 0] == eos_id
    return torch.cat([idx, nxt], dim=1), eos_id is not None and bool(done.all())  # (B, T + 1)
