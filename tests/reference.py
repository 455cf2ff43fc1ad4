"""Obvious float64 references, written from the formulas in docs/theory.md and nothing else.

Each builds the dense soft target q row by row and computes −Σ_k w_k q_k log p_k by hand, so it shares
no code with the library.
"""

from __future__ import annotations

import math

import torch


def soft_target_row(y: int, K: int, eps: float, convention: str, prior: list[float] | None) -> list[float]:
    pi = prior if prior is not None else [1.0 / K] * K
    if convention == "uniform":
        return [(1.0 - eps) * (k == y) + eps * pi[k] for k in range(K)]
    # others: 1 − ε stays on y, ε is shared by the other classes in proportion to the prior
    rest = sum(pi[k] for k in range(K) if k != y)
    return [1.0 - eps if k == y else eps * pi[k] / rest for k in range(K)]


def log_softmax_row(z: list[float]) -> list[float]:
    m = max(z)
    lse = m + math.log(sum(math.exp(v - m) for v in z))
    return [v - lse for v in z]


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    eps: float = 0.0,
    convention: str = "uniform",
    prior: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    """Reference loss for (N, K) logits and (N,) class indices, in plain Python floats."""
    N, K = logits.shape
    z = logits.double().tolist()
    ys = target.tolist()
    pi = None if prior is None else prior.double().tolist()
    w = [1.0] * K if weight is None else weight.double().tolist()
    rows, denominator = [], 0.0
    for i in range(N):
        if ys[i] == ignore_index:
            rows.append(0.0)
            continue
        q = soft_target_row(ys[i], K, eps, convention, pi)
        logp = log_softmax_row(z[i])
        rows.append(-sum(w[k] * q[k] * logp[k] for k in range(K)))
        denominator += w[ys[i]]
    out = torch.tensor(rows, dtype=torch.float64)
    if reduction == "none":
        return out
    if reduction == "sum":
        return out.sum()
    return out.sum() / denominator if denominator else torch.tensor(float("nan"), dtype=torch.float64)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    rows = []
    for z in logits.double().tolist():
        logp = log_softmax_row(z)
        rows.append(-sum(math.exp(v) * v for v in logp))
    return torch.tensor(rows, dtype=torch.float64)
