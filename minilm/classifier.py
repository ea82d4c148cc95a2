"""Sequence classification on top of a pretrained backbone: pool the hidden states, then a linear layer.

This is the fine-tuning half of "pretrain, then fine-tune" (GPT-1: Radford et al. 2018, section 3.2; BERT: Devlin
et al. 2019, https://arxiv.org/abs/1810.04805, section 4.1). One vector must summarise the sentence (Eq. 5.4):
  "cls"  the hidden state of the first token (BERT puts a [CLS] token there; bidirectional backbones only),
  "mean" the average over real (non-pad) tokens,
  "last" the hidden state of the last real token (GPT-1's choice: in a causal model only it has seen every token),
  "pooler" BERT's pooler, tanh(W h_[CLS] + b) (Eq. 5.13), for a backbone that carries its weights (a Hugging Face
         BERT checkpoint saved with them, minilm/pretrained.py); Devlin et al. fine-tune on top of it.
Then logits = W dropout(pooled) + b and a cross-entropy loss (Eq. 5.5).

Token classification (tagging) skips the pooling: TokenClassifier puts the same dropout + linear head on every
position's hidden state (Eq. 11.1) and averages the cross-entropy over the positions whose label is not IGNORE_INDEX,
one per word (Eq. 11.2; Devlin et al. 2019, section 5.3; the alignment is minilm/tagging.py). A causal backbone
works too, but position t sees only tokens <= t: no right context (lectures/11_token_classification.ipynb).

Padding never changes a prediction: pad keys are masked in attention (bidirectional), can only be seen by later pad
positions (causal, right padding), and are excluded from the pooling. Read beside lectures/05_model.ipynb and
lectures/07_finetuning.ipynb.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import IGNORE_INDEX
from .model import Transformer

POOLINGS = ("cls", "mean", "last", "pooler")


def pool(h: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, T, D) hidden states -> (B, D) sentence vectors (Eq. 5.4). attention_mask: (B, T), 1 = token, 0 = pad."""
    B, T, D = h.shape
    if pooling == "cls":
        return h[:, 0]  # (B, D)
    m = attention_mask.to(h.dtype)  # (B, T)
    if pooling == "mean":
        return (h * m[:, :, None]).sum(dim=1) / m.sum(dim=1, keepdim=True).clamp(min=1.0)  # (B, D)
    if pooling == "last":
        last = attention_mask.long().sum(dim=1).clamp(min=1) - 1  # (B,): index of the last real token
        return h[torch.arange(B, device=h.device), last]  # (B, D)
    raise AssertionError(f"pooling must be one of {POOLINGS}, got {pooling!r}")  # SequenceClassifier checked it


def linear_head(d_model: int, n_classes: int) -> nn.Linear:
    """The classification layer both heads end in (Eqs. 5.5 and 11.1): d_model -> n_classes, initialised at the
    backbone's scale (Eq. 5.6) with zero bias, so at step 0 every class is about equally likely."""
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    head = nn.Linear(d_model, n_classes)
    nn.init.normal_(head.weight, std=0.02)
    nn.init.zeros_(head.bias)
    return head


class SequenceClassifier(nn.Module):
    """`forward(idx, attention_mask=None, labels=None) -> (logits (B, n_classes), loss)`."""

    def __init__(self, backbone: Transformer, n_classes: int, pooling: str | None = None, dropout: float = 0.1):
        super().__init__()
        if not isinstance(backbone, Transformer):
            raise TypeError(f"SequenceClassifier takes a Transformer backbone, got a {type(backbone).__name__}: "
                            f"for a whole language model use SequenceClassifier.from_lm(lm, n_classes)")
        causal = backbone.config.causal
        pooling = pooling or ("last" if causal else "cls")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if pooling == "cls" and causal:
            raise ValueError("pooling='cls' needs a bidirectional backbone: in a causal model the first token "
                             "sees nothing after it; use pooling='last' or 'mean'")
        if pooling == "pooler" and getattr(backbone, "pooler", None) is None:
            raise ValueError("pooling='pooler' needs a backbone with BERT's pooler weights (a Hugging Face BERT "
                             "checkpoint that has pooler.dense, e.g. bert-base-uncased; BertForMaskedLM saves none): "
                             "use pooling='cls'")
        self.config = backbone.config
        self.backbone = backbone
        self.pooling = pooling
        self.n_classes = n_classes
        self.dropout = nn.Dropout(dropout)
        self.head = linear_head(backbone.config.d_model, n_classes)

    @classmethod
    def from_lm(cls, lm: nn.Module, n_classes: int, pooling: str | None = None,
                dropout: float = 0.1) -> "SequenceClassifier":
        """Reuse a trained CausalLM's or MaskedLM's backbone; its LM head is dropped."""
        return cls(lm.backbone, n_classes, pooling, dropout)

    def forward(self, idx: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None):
        if attention_mask is None:
            attention_mask = torch.ones_like(idx)  # (B, T): no padding
        # A causal backbone already hides later (pad) positions from earlier tokens, so it needs no key mask.
        key_mask = None if self.config.causal else attention_mask
        h = self.backbone(idx, key_mask)  # (B, T, D)
        if self.pooling == "pooler":  # BERT's pooler: dense + tanh on the [CLS] state (Eq. 5.13), (B, D)
            pooled = torch.tanh(self.backbone.pooler(h[:, 0]))
        else:
            pooled = pool(h, attention_mask, self.pooling)  # Eq. 5.4: (B, D)
        logits = self.head(self.dropout(pooled))  # Eq. 5.5: (B, n_classes)
        loss = None if labels is None else F.cross_entropy(logits.float(), labels)
        return logits, loss


class TokenClassifier(nn.Module):
    """`forward(idx, attention_mask=None, labels=None) -> (logits (B, T, n_classes), loss)`; labels (B, T) hold a tag
    id on each word's labelled piece and IGNORE_INDEX elsewhere (minilm.tagging.align_labels)."""

    pooling = "none"  # every position is read: nothing is pooled (recorded in checkpoints beside Eq. 5.4's choices)

    def __init__(self, backbone: Transformer, n_classes: int, dropout: float = 0.1):
        super().__init__()
        if not isinstance(backbone, Transformer):
            raise TypeError(f"TokenClassifier takes a Transformer backbone, got a {type(backbone).__name__}: "
                            f"for a whole language model use TokenClassifier.from_lm(lm, n_classes)")
        self.config = backbone.config
        self.backbone = backbone
        self.n_classes = n_classes
        self.dropout = nn.Dropout(dropout)
        self.head = linear_head(backbone.config.d_model, n_classes)

    @classmethod
    def from_lm(cls, lm: nn.Module, n_classes: int, dropout: float = 0.1) -> "TokenClassifier":
        """Reuse a trained CausalLM's or MaskedLM's backbone; its LM head is dropped."""
        return cls(lm.backbone, n_classes, dropout)

    def forward(self, idx: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None):
        B, T = idx.shape
        if attention_mask is None:
            attention_mask = torch.ones_like(idx)  # (B, T): no padding
        key_mask = None if self.config.causal else attention_mask  # causal: pads come after every real token
        h = self.backbone(idx, key_mask)  # (B, T, D)
        logits = self.head(self.dropout(h))  # Eq. 11.1: W h_t + b at every position, (B, T, n_classes)
        loss = None
        if labels is not None:  # Eq. 11.2: mean cross-entropy over the labelled pieces, one per word
            loss = F.cross_entropy(logits.float().view(B * T, self.n_classes), labels.view(B * T),
                                   ignore_index=IGNORE_INDEX)
        return logits, loss
