"""SequenceClassifier: padding invariance for every pooling, construction from LMs, loss, errors."""

import dataclasses

import pytest
import torch

from minilm import CausalLM, MaskedLM, SequenceClassifier
from minilm.classifier import pool


def _classifier(cfg, pooling):
    causal = pooling == "last" or (pooling == "mean-causal")
    lm = CausalLM(cfg) if causal else MaskedLM(cfg)
    return SequenceClassifier.from_lm(lm, 3, pooling="mean" if pooling == "mean-causal" else pooling).eval()


@pytest.mark.parametrize("pooling", ["cls", "mean", "last", "mean-causal"])
def test_logits_do_not_depend_on_padding(tiny_config, pooling):
    clf = _classifier(tiny_config, pooling)
    idx = torch.randint(1, tiny_config.vocab_size, (2, 9))
    am = torch.ones_like(idx)
    am[1, 6:] = 0  # the second sentence is 6 tokens long
    base, _ = clf(idx, am)
    extra = torch.cat([idx, torch.zeros(2, 7, dtype=torch.long)], dim=1)  # 7 more pad tokens
    extra_am = torch.cat([am, torch.zeros(2, 7, dtype=torch.long)], dim=1)
    more, _ = clf(extra, extra_am)
    torch.testing.assert_close(more, base, atol=1e-5, rtol=1e-5)
    alone, _ = clf(idx[1:, :6], am[1:, :6])  # the same sentence on its own, no padding at all
    torch.testing.assert_close(alone[0], base[1], atol=1e-5, rtol=1e-5)


def test_pool_by_hand():
    h = torch.arange(2 * 3 * 2, dtype=torch.float).view(2, 3, 2)
    am = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert pool(h, am, "cls").tolist() == [[0, 1], [6, 7]]
    assert pool(h, am, "last").tolist() == [[2, 3], [10, 11]]
    assert pool(h, am, "mean").tolist() == [[1, 2], [8, 9]]


def test_default_pooling_follows_the_backbone(tiny_config):
    assert SequenceClassifier.from_lm(CausalLM(tiny_config), 2).pooling == "last"
    assert SequenceClassifier.from_lm(MaskedLM(tiny_config), 2).pooling == "cls"
    with pytest.raises(ValueError, match="bidirectional"):
        SequenceClassifier.from_lm(CausalLM(tiny_config), 2, pooling="cls")
    with pytest.raises(ValueError, match="pooling"):
        SequenceClassifier.from_lm(CausalLM(tiny_config), 2, pooling="max")


def test_shares_the_backbone_and_learns(tiny_config):
    lm = CausalLM(tiny_config)
    clf = SequenceClassifier.from_lm(lm, 2, dropout=0.0)
    assert clf.backbone is lm.backbone
    idx = torch.randint(0, tiny_config.vocab_size, (8, 10))
    labels = torch.randint(0, 2, (8,))
    opt = torch.optim.AdamW(clf.parameters(), lr=3e-3)
    for _ in range(100):
        _, loss = clf(idx, labels=labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


def test_a_whole_language_model_is_refused_at_once(tiny_config):
    """Passing the LM instead of its backbone used to build and then fail with "'tuple' object has no attribute"."""
    lm = CausalLM(tiny_config)
    with pytest.raises(TypeError, match=r"SequenceClassifier\.from_lm"):
        SequenceClassifier(lm, 2)
    assert SequenceClassifier(lm.backbone, 2).backbone is lm.backbone
