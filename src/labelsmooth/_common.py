"""The small pieces every loss shares: the compute dtype, the reduction, the class-last flattening.

The lowest layer of the library with :mod:`labelsmooth._validation`: it imports nothing from labelsmooth.
"""

from __future__ import annotations

import torch
from torch import Tensor


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half and bfloat16 inputs are computed in float32; float32 and float64 in their own precision."""
    return torch.promote_types(dtype, torch.float32)


def in_dtype(t: Tensor, dtype: torch.dtype) -> Tensor:
    """``t.to(dtype)``, without the call when ``t`` has that dtype already."""
    return t if t.dtype == dtype else t.to(dtype)


def class_dim(input: Tensor) -> int:
    """The class dimension of logits shaped (C,), (N, C) or (N, C, d1, ...): 0 for (C,), else 1."""
    return 0 if input.dim() == 1 else 1


def flatten_classes_last(x: Tensor, cdim: int) -> Tensor:
    """(…, C, …) with the classes in dimension ``cdim`` as (M, C), classes last; 2-d input is returned as is."""
    if x.dim() == 2 and cdim == 1:
        return x
    return x.movedim(cdim, -1).reshape(-1, x.shape[cdim])


def reduce_rows(row_loss: Tensor, reduction: str, denominator: Tensor | float, out_shape: torch.Size) -> Tensor:
    """torch's reductions of per-row losses: "none" (in ``out_shape``), "sum", or "mean" (sum / denominator).

    A mean over a zero denominator (every target ignored, or of weight 0) is NaN, as in torch, and its
    gradient is zero, as in torch: the row losses' gradients are divided by 1 instead of 0.
    """
    if reduction == "none":
        return row_loss.reshape(out_shape)
    if reduction == "sum":
        return row_loss.sum()
    if isinstance(denominator, Tensor):
        empty = denominator == 0
        return row_loss.sum() / torch.where(empty, 1.0, denominator) + torch.where(empty, torch.nan, 0.0)
    return row_loss.sum() / denominator


def mean_scale(denominator: Tensor) -> Tensor:
    """The gradient factor 1/denominator of reduction="mean"; 0 for a zero denominator (see :func:`reduce_rows`)."""
    return torch.where(denominator == 0, 0.0, 1.0 / denominator)
