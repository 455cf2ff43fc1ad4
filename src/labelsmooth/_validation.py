"""Argument validation: the one place for every "Expected ..., got ..." message.

Every public function checks its arguments here, before any computation, so that bad input gives an
error naming the argument, the rule and the value received, never a NaN or a traceback from deep inside.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

CONVENTIONS = ("uniform", "others")
REDUCTIONS = ("none", "mean", "sum")
PRIOR_SUM_TOLERANCE = 1e-6


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"Expected argument `{name}` to be one of {list(choices)}, but got {value!r}")
    return value


def check_probability(name: str, value: object) -> float:
    """A number in [0, 1]; NaN, infinities and negatives are refused (torch clamps negatives to 0)."""
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"Expected argument `{name}` to be a number in [0, 1], but got a tensor of shape {tuple(value.shape)}"
            )
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Expected argument `{name}` to be a number in [0, 1], but got {type(value).__name__}")
    value = float(value)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"Expected argument `{name}` to be a number in [0, 1], but got {value}")
    return value


def check_nonnegative(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Expected argument `{name}` to be a non-negative number, but got {type(value).__name__}")
    value = float(value)
    if math.isnan(value) or value < 0 or math.isinf(value):
        raise ValueError(f"Expected argument `{name}` to be a finite non-negative number, but got {value}")
    return value


def check_num_classes(num_classes: object, name: str = "num_classes") -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        raise TypeError(f"Expected argument `{name}` to be an integer >= 2, but got {type(num_classes).__name__}")
    if num_classes < 2:
        raise ValueError(f"Expected argument `{name}` to be an integer >= 2, but got {num_classes}")
    return num_classes


def check_logits(input: Tensor, name: str = "input") -> None:
    if not isinstance(input, Tensor):
        raise TypeError(f"Expected argument `{name}` to be a torch.Tensor, but got {type(input).__name__}")
    if not input.is_floating_point():
        raise TypeError(f"Expected argument `{name}` to have a floating-point dtype (logits), but got {input.dtype}")
    if input.dim() == 0:
        raise ValueError(f"Expected argument `{name}` to have shape (C,), (N, C) or (N, C, d1, ...), but got a scalar")


def class_dim(input: Tensor) -> int:
    return 0 if input.dim() == 1 else 1


def check_target(input: Tensor, target: Tensor, ignore_index: int, *, check_range: bool = True) -> bool:
    """Validate `target` against `input`; returns True for class-probability targets.

    Class indices: integer dtype, shape = input's shape without the class dimension, values in [0, C) or
    equal to ignore_index (the values only with ``check_range``; see :func:`check_target_range`).
    Probabilities: floating dtype, the input's shape.
    """
    if not isinstance(target, Tensor):
        raise TypeError(f"Expected argument `target` to be a torch.Tensor, but got {type(target).__name__}")
    if target.is_floating_point():
        if target.shape != input.shape:
            raise ValueError(
                "Expected argument `target` (class probabilities) to have the input's shape "
                f"{tuple(input.shape)}, but got {tuple(target.shape)}"
            )
        return True
    if target.dtype == torch.bool or target.is_complex():
        raise TypeError(
            f"Expected argument `target` to hold integer class indices or float probabilities, but got {target.dtype}"
        )
    expected = input.shape[:1] + input.shape[2:] if input.dim() > 1 else torch.Size([])
    if target.shape != expected:
        raise ValueError(
            f"Expected argument `target` to have shape {tuple(expected)} for input of shape {tuple(input.shape)} "
            f"(the input's shape without the class dimension), but got {tuple(target.shape)}"
        )
    if check_range:
        check_target_range(target, input.shape[class_dim(input)], ignore_index)
    return False


def check_target_range(target: Tensor, num_classes: int, ignore_index: int) -> None:
    """Class indices in [0, C) or equal to ignore_index: one reduction and one host sync (a second pair
    when some targets lie outside [0, C), as ignored ones do).

    The fused losses call it after their kernels are queued, so that on a GPU the sync overlaps the work
    instead of stalling the queue before it (the kernels read clamped targets, never out of bounds).
    """
    if not target.numel():
        return
    low, high = torch.aminmax(target)
    if 0 <= low.item() and high.item() < num_classes:  # the common case: one reduction
        return
    low, high = torch.stack(torch.aminmax(torch.where(target == ignore_index, 0, target))).tolist()
    if low < 0 or high >= num_classes:
        bad = ((target < 0) | (target >= num_classes)) & (target != ignore_index)
        value = int(target[bad].flatten()[0])
        raise ValueError(
            f"Expected argument `target` to hold class indices in [0, {num_classes}) or "
            f"ignore_index={ignore_index}, but got {value}"
        )


def check_weight(weight: Tensor | None, num_classes: int, name: str = "weight") -> None:
    if weight is None:
        return
    if not isinstance(weight, Tensor):
        raise TypeError(f"Expected argument `{name}` to be a torch.Tensor or None, but got {type(weight).__name__}")
    if weight.shape != (num_classes,):
        raise ValueError(
            f"Expected argument `{name}` to have shape ({num_classes},), one per class, but got {tuple(weight.shape)}"
        )
    if not weight.is_floating_point():
        raise TypeError(f"Expected argument `{name}` to have a floating-point dtype, but got {weight.dtype}")


def check_prior(prior: Tensor | None, num_classes: int, convention: str = "uniform") -> None:
    """A probability vector of length K: finite, non-negative, summing to 1 (tolerance 1e-6)."""
    if prior is None:
        return
    if not isinstance(prior, Tensor):
        raise TypeError(f"Expected argument `prior` to be a torch.Tensor or None, but got {type(prior).__name__}")
    if prior.shape != (num_classes,):
        raise ValueError(
            f"Expected argument `prior` to have shape ({num_classes},), one per class, but got {tuple(prior.shape)}"
        )
    if not prior.is_floating_point():
        raise TypeError(f"Expected argument `prior` to have a floating-point dtype, but got {prior.dtype}")
    p = prior.detach().double()
    if not bool(torch.isfinite(p).all()):
        raise ValueError(
            f"Expected argument `prior` to be finite, but got {prior.tolist() if num_classes <= 20 else 'NaN/inf entries'}"
        )
    if bool((p < 0).any()):
        raise ValueError(f"Expected argument `prior` to be non-negative, but got a minimum of {p.min().item()}")
    total = p.sum().item()
    if abs(total - 1.0) > PRIOR_SUM_TOLERANCE:
        raise ValueError(
            f"Expected argument `prior` to sum to 1 (tolerance {PRIOR_SUM_TOLERANCE}), but got a sum of {total!r}"
        )
    if convention == "others" and bool((p >= 1.0).any()):
        raise ValueError(
            "Expected argument `prior` to put mass below 1 on every class with convention='others' "
            "(the other classes share ε in proportion to the prior), but got a one-hot prior"
        )


def check_reduction(reduction: object) -> str:
    return check_choice("reduction", reduction, REDUCTIONS)


def check_convention(convention: object) -> str:
    return check_choice("convention", convention, CONVENTIONS)


def check_ignore_index(ignore_index: object) -> int:
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"Expected argument `ignore_index` to be an integer, but got {type(ignore_index).__name__}")
    return ignore_index
