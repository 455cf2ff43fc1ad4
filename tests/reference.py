"""Obvious float64 references, written from the formulas in docs/theory.md and nothing else.

Each builds the dense soft target q row by row and computes −Σ_k w_k q_k log p_k by hand, so it shares
no code with the library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def soft_target_row(y: int, K: int, eps: float, convention: str, prior: list[float] | None) -> list[float]:
    pi = prior if prior is not None else [1.0 / K] * K
    if convention == "uniform":
        return [(1.0 - eps) * (k == y) + eps * pi[k] for k in range(K)]
    # others: 1 − ε stays on y, ε is shared by the other classes in proportion to the prior
    rest = sum(pi[k] for k in range(K) if k != y)
    return [1.0 - eps if k == y else eps * pi[k] / rest for k in range(K)]


def cap(v: float, softcap: float | None) -> float:
    return v if softcap is None else softcap * math.tanh(v / softcap)


def logsumexp_row(z: list[float]) -> float:
    m = max(z)
    return m + math.log(sum(math.exp(v - m) for v in z))


def log_softmax_row(z: list[float]) -> list[float]:
    m = max(z)
    lse = m + math.log(sum(math.exp(v - m) for v in z))
    return [v - lse for v in z]


@dataclass(frozen=True)
class Loss:
    """The arguments of :func:`cross_entropy` and :func:`cross_entropy_grad` besides the logits and the
    targets, with the library's defaults (an unknown name is a TypeError)."""

    eps: float = 0.0
    convention: str = "uniform"
    prior: torch.Tensor | None = None
    weight: torch.Tensor | None = None
    ignore_index: int = -100
    reduction: str = "mean"
    z_loss: float = 0.0
    softcap: float | None = None

    def read(
        self, logits: torch.Tensor, target: torch.Tensor
    ) -> tuple[list[list[float]], list[int], list[float] | None, list[float], float]:
        """The inputs as plain floats: raw logit rows, targets, prior (None: uniform), class weights w and
        the mean's denominator Σ_{kept i} w_{y_i}."""
        ys = target.tolist()
        pi = None if self.prior is None else self.prior.double().tolist()
        w = [1.0] * logits.shape[1] if self.weight is None else self.weight.double().tolist()
        denominator = sum(w[y] for y in ys if y != self.ignore_index)
        return logits.double().tolist(), ys, pi, w, denominator


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, **options) -> torch.Tensor:
    """Reference loss for (N, K) logits and (N,) class indices, in plain Python floats.

    ``options`` are the fields of :class:`Loss`. With ``softcap`` c every logit is first replaced by
    c·tanh(z/c); with ``z_loss`` λ each kept row adds λ·lse(z)² (of the capped logits), and the mean keeps
    the loss's denominator.
    """
    o = Loss(**options)
    N, K = logits.shape
    raw, ys, pi, w, denominator = o.read(logits, target)
    rows = []
    for i in range(N):
        if ys[i] == o.ignore_index:
            rows.append(0.0)
            continue
        x = [cap(v, o.softcap) for v in raw[i]]
        q = soft_target_row(ys[i], K, o.eps, o.convention, pi)
        logp = log_softmax_row(x)
        rows.append(-sum(w[k] * q[k] * logp[k] for k in range(K)) + o.z_loss * logsumexp_row(x) ** 2)
    out = torch.tensor(rows, dtype=torch.float64)
    if o.reduction == "none":
        return out
    if o.reduction == "sum":
        return out.sum()
    return out.sum() / denominator if denominator else torch.tensor(float("nan"), dtype=torch.float64)


def cross_entropy_grad(
    logits: torch.Tensor, target: torch.Tensor, *, upstream: torch.Tensor | None = None, **options
) -> torch.Tensor:
    """The gradient of :func:`cross_entropy` w.r.t. the (N, K) logits, derived by hand.

    ``options`` are the fields of :class:`Loss`. With x = cap(z), p = softmax(x) and L = lse(x), row i's
    loss −Σ_k w_k q_k (x_k − L) + λ L² has ∂/∂x_k = (Σ_j w_j q_j) p_k − w_k q_k + 2λ L p_k, and
    ∂x_k/∂z_k = 1 − tanh²(z_k/c). Rows are scaled by ``upstream`` (reduction "none"), 1 ("sum") or
    1/denominator ("mean"; 0 when it is 0).
    """
    o = Loss(**options)
    N, K = logits.shape
    raw, ys, pi, w, denominator = o.read(logits, target)
    up = [1.0] * N if upstream is None else upstream.double().reshape(-1).tolist()
    grads = []
    for i in range(N):
        if ys[i] == o.ignore_index:
            grads.append([0.0] * K)
            continue
        x = [cap(v, o.softcap) for v in raw[i]]
        L = logsumexp_row(x)
        p = [math.exp(v - L) for v in x]
        q = soft_target_row(ys[i], K, o.eps, o.convention, pi)
        mass = sum(w[k] * q[k] for k in range(K))
        scale = up[i] if o.reduction == "none" else 1.0
        if o.reduction == "mean":
            scale = 1.0 / denominator if denominator else 0.0
        row = []
        for k in range(K):
            g = mass * p[k] - w[k] * q[k] + 2.0 * o.z_loss * L * p[k]
            if o.softcap is not None:
                g *= 1.0 - math.tanh(raw[i][k] / o.softcap) ** 2
            row.append(scale * g)
        grads.append(row)
    return torch.tensor(grads, dtype=torch.float64)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    rows = []
    for z in logits.double().tolist():
        logp = log_softmax_row(z)
        rows.append(-sum(math.exp(v) * v for v in logp))
    return torch.tensor(rows, dtype=torch.float64)
