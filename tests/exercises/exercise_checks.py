"""Comparisons whose failure messages teach: what was checked, expected against got, and a hint."""

from __future__ import annotations

import torch


def _rows(got: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float) -> tuple[str, str]:
    """Both tensors when small, else the first row (along the last axis) where they differ."""
    if expected.numel() <= 32:
        return f"\n{expected}", f"\n{got}"
    g, e = got.reshape(-1, got.shape[-1]), expected.reshape(-1, expected.shape[-1])
    bad = ~torch.isclose(g.double(), e.double(), atol=atol, rtol=rtol, equal_nan=False)
    i = int(bad.any(dim=-1).nonzero()[0]) if bad.any() else 0
    return f" (row {i} of {tuple(expected.shape)}) {e[i].tolist()}", f" (row {i}) {g[i].tolist()}"


def close(got, expected: torch.Tensor, what: str, hint: str = "", atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """assert_close(got, expected) that names the check and shows both values when they are small."""
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"{what}: expected a tensor of shape {tuple(expected.shape)}, got {type(got).__name__}. {hint}")
    if got.shape != expected.shape:
        raise AssertionError(f"{what}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}. {hint}")
    if got.dtype != expected.dtype:
        raise AssertionError(f"{what}: expected dtype {expected.dtype}, got {got.dtype}. {hint}")
    try:
        torch.testing.assert_close(got, expected, atol=atol, rtol=rtol, equal_nan=False)
    except AssertionError as e:
        want, have = _rows(got.detach(), expected, atol, rtol)
        raise AssertionError(f"{what}: values differ.\nexpected:{want}\ngot:{have}\n{e}\n{hint}") from None


def same(got, expected: torch.Tensor, what: str, hint: str = "") -> None:
    """Exact equality (bool and integer tensors), with the same kind of message."""
    close(got, expected, what, hint, atol=0, rtol=0)
