"""Shared fixtures: a tiny model config, fixed seeds, and the shared datasets beside the checkout (skip if absent)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from minilm.config import ModelConfig

ROOT = Path(__file__).resolve().parents[1]  # the repository root
SHARED_DATA = ROOT.parent / "shared" / "data"  # ../shared/data beside the checkout (CI and this machine have it)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def tiny_config() -> ModelConfig:
    """A model small enough that a forward pass takes milliseconds."""
    return ModelConfig(vocab_size=37, max_seq_len=24, d_model=32, n_heads=4, n_layers=2)


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or skip: tests that read the real datasets need the copies that CI and this machine have."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATA} (CI and the dev machines have them)")
    return SHARED_DATA


def pytest_addoption(parser):
    # tests/exercises/ run against minilm by default; students point them at their own code (Teaching with minilm).
    parser.addoption("--impl", default=None, metavar="IMPL",
                     help="implementation for tests/exercises/: 'reference' (minilm, the default), 'exercises' "
                          "(lectures/exercises/) or a folder holding a copy of it; or set MINILM_IMPL")
