"""Argument validation: the one place for every "Expected ..., got ..." message.

Every public function checks its arguments here, before any computation, so that bad input gives an
error naming the argument, the rule and the value received, never a NaN or a traceback from deep inside.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from labelsmooth._common import class_dim, flatten_classes_last

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


def check_z_loss(z_loss: object) -> float:
    """The z-loss coefficient λ: a finite number >= 0 (0 turns the term off)."""
    if isinstance(z_loss, bool) or not isinstance(z_loss, (int, float)):
        raise TypeError(
            f"Expected argument `z_loss` to be a finite non-negative number, but got {type(z_loss).__name__}"
        )
    value = float(z_loss)
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise ValueError(f"Expected argument `z_loss` to be a finite non-negative number, but got {value}")
    return value


def check_softcap(softcap: object) -> float | None:
    """The logit cap c of z ← c·tanh(z/c): None (no cap) or a finite number > 0."""
    if softcap is None:
        return None
    if isinstance(softcap, bool) or not isinstance(softcap, (int, float)):
        raise TypeError(
            f"Expected argument `softcap` to be None or a finite positive number, but got {type(softcap).__name__}"
        )
    value = float(softcap)
    if math.isnan(value) or math.isinf(value) or value <= 0:
        raise ValueError(f"Expected argument `softcap` to be None or a finite positive number, but got {value}")
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


def check_target(input: Tensor | Sequence[int], target: Tensor, ignore_index: int, *, check_range: bool = True) -> bool:
    """Validate `target` against `input` (the logits, or only their shape); True for class probabilities.

    Class indices: integer dtype, shape = input's shape without the class dimension, values in [0, C) or
    equal to ignore_index (the values only with ``check_range``; see :func:`check_target_range`).
    Probabilities: floating dtype, the input's shape.
    """
    shape = torch.Size(input.shape if isinstance(input, Tensor) else input)
    if not isinstance(target, Tensor):
        raise TypeError(f"Expected argument `target` to be a torch.Tensor, but got {type(target).__name__}")
    if target.is_floating_point():
        if target.shape != shape:
            raise ValueError(
                "Expected argument `target` (class probabilities) to have the input's shape "
                f"{tuple(shape)}, but got {tuple(target.shape)}"
            )
        return True
    if target.dtype == torch.bool or target.is_complex():
        raise TypeError(
            f"Expected argument `target` to hold integer class indices or float probabilities, but got {target.dtype}"
        )
    expected = shape[:1] + shape[2:] if len(shape) > 1 else torch.Size([])
    if target.shape != expected:
        raise ValueError(
            f"Expected argument `target` to have shape {tuple(expected)} for input of shape {tuple(shape)} "
            f"(the input's shape without the class dimension), but got {tuple(target.shape)}"
        )
    if check_range:
        check_target_range(target, shape[0 if len(shape) == 1 else 1], ignore_index)
    return False


def as_index(target: Tensor) -> Tensor:
    """Class indices as int64: every integer dtype is accepted (uint8 to int64) and read as int64."""
    return target if target.dtype == torch.int64 else target.long()


def assert_in_graph(condition: Tensor, message: str) -> None:
    """Under torch.compile, where a host sync would break the graph: ``condition`` (a 0-d bool tensor) is
    asserted by the graph itself as it runs (``torch._assert_async``), raising RuntimeError with
    ``message`` and a note that the offending value is not reported."""
    torch._assert_async(condition, f"{message} (checked inside torch.compile, which cannot report the value)")


def check_target_range(target: Tensor, num_classes: int | None, ignore_index: int | None) -> None:
    """Class indices in [0, C) (C = ``num_classes``; any index >= 0 for None), or equal to ``ignore_index``
    (None: no value is ignored).

    One reduction and one host sync; a second pair when some targets lie outside [0, C), as ignored ones do.
    Under torch.compile the check is an assertion in the graph instead (:func:`assert_in_graph`): a
    RuntimeError without the value, since reading it would need a host sync.
    """
    if not target.numel():
        return
    if torch.compiler.is_compiling():  # no host sync in a graph: an assertion that runs with it
        ok = target >= 0 if num_classes is None else (target >= 0) & (target < num_classes)
        if ignore_index is not None:
            ok |= target == ignore_index
        rule = f"in [0, {num_classes})" if num_classes is not None else ">= 0"
        also = "" if ignore_index is None else f" or ignore_index={ignore_index}"
        assert_in_graph(ok.all(), f"Expected argument `target` to hold class indices {rule}{also}")
        return
    limit = math.inf if num_classes is None else num_classes
    low, high = torch.aminmax(target)
    if 0 <= low.item() and high.item() < limit:  # the common case: one reduction
        return
    bad = (target < 0) | (target >= limit) if num_classes is not None else target < 0
    if ignore_index is not None:
        bad &= target != ignore_index
    if not bool(bad.any()):
        return
    value = int(target[bad].flatten()[0])
    rule = f"in [0, {num_classes})" if num_classes is not None else ">= 0"
    also = "" if ignore_index is None else f" or ignore_index={ignore_index}"
    raise ValueError(f"Expected argument `target` to hold class indices {rule}{also}, but got {value}")


def _check_class_vector(name: str, value: object, num_classes: int) -> Tensor | None:
    """None, or a floating-point tensor of shape (K,), one entry per class."""
    if value is None:
        return None
    if not isinstance(value, Tensor):
        raise TypeError(f"Expected argument `{name}` to be a torch.Tensor or None, but got {type(value).__name__}")
    if value.shape != (num_classes,):
        raise ValueError(
            f"Expected argument `{name}` to have shape ({num_classes},), one per class, but got {tuple(value.shape)}"
        )
    if not value.is_floating_point():
        raise TypeError(f"Expected argument `{name}` to have a floating-point dtype, but got {value.dtype}")
    return value


def check_weight(weight: Tensor | None, num_classes: int, name: str = "weight") -> None:
    _check_class_vector(name, weight, num_classes)


def check_prior(prior: Tensor | None, num_classes: int, convention: str = "uniform") -> None:
    """A probability vector of length K: finite, non-negative, summing to 1 (tolerance 1e-6).

    Under torch.compile the values are asserted by the graph (:func:`assert_in_graph`: RuntimeError)."""
    if _check_class_vector("prior", prior, num_classes) is None:
        return
    if torch.compiler.is_compiling():  # the same rules, asserted by the graph (no host sync)
        p = prior.detach().double()
        assert_in_graph(torch.isfinite(p).all(), "Expected argument `prior` to be finite")
        assert_in_graph((p >= 0).all(), "Expected argument `prior` to be non-negative")
        assert_in_graph(
            (p.sum() - 1.0).abs() <= PRIOR_SUM_TOLERANCE,
            f"Expected argument `prior` to sum to 1 (tolerance {PRIOR_SUM_TOLERANCE})",
        )
        if convention == "others":
            assert_in_graph(
                (p < 1.0).all(), "Expected argument `prior` to put mass below 1 on every class with convention='others'"
            )
        return
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


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"Expected argument `{name}` to be a bool, but got {type(value).__name__}")
    return value


def check_chunk_size(chunk_size: object) -> int | None:
    """Rows per chunk: a positive integer, or None for the kernels' default."""
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"Expected argument `chunk_size` to be a positive integer or None, but got {chunk_size!r}")
    return chunk_size


def check_block_size(block_size: object) -> int:
    """Classes per Triton tile: a power of two >= 16."""
    if isinstance(block_size, bool) or not isinstance(block_size, int):
        raise TypeError(
            f"Expected argument `block_size` to be a power of two >= 16, but got {type(block_size).__name__}"
        )
    if block_size < 16 or block_size & (block_size - 1):
        raise ValueError(f"Expected argument `block_size` to be a power of two >= 16, but got {block_size}")
    return block_size


# --------------------------------------------------------------------------------------------------
# Every argument of a smoothed cross-entropy at once


@dataclass(frozen=True)
class LossOptions:
    """The validated options of a smoothed cross-entropy over ``num_classes`` classes."""

    num_classes: int
    label_smoothing: float
    convention: str
    reduction: str
    ignore_index: int
    weight: Tensor | None
    prior: Tensor | None


@dataclass(frozen=True)
class CrossEntropyArgs(LossOptions):
    """Validated cross-entropy arguments: the options, and the logits flattened to (M, K), class dimension last."""

    logits: Tensor  # (M, K), the input's dtype
    target: Tensor  # (M,) class indices, or (M, K) probabilities
    soft: bool
    out_shape: torch.Size  # shape of reduction="none"


def check_loss_options(
    shape: Sequence[int],
    target: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    convention: str,
    prior: Tensor | None,
    *,
    check_range: bool = True,
) -> tuple[LossOptions, bool]:
    """Every option and the target, for logits of ``shape`` (classes in dimension 1, or 0 for (C,)).

    Returns the options and whether the target holds class probabilities. ``check_range=False`` leaves
    the class-index values to the caller (:func:`check_target_range`).
    """
    shape = torch.Size(shape)
    eps = check_probability("label_smoothing", label_smoothing)
    reduction = check_reduction(reduction)
    convention = check_convention(convention)
    ignore_index = check_ignore_index(ignore_index)
    K = shape[0 if len(shape) == 1 else 1]
    if K < 1:
        raise ValueError(f"Expected argument `input` to have at least one class, but got shape {tuple(shape)}")
    soft = check_target(shape, target, ignore_index, check_range=check_range)
    check_weight(weight, K)
    check_prior(prior, K, convention)
    return LossOptions(K, eps, convention, reduction, ignore_index, weight, prior), soft


def check_cross_entropy_args(input: Tensor, target: Tensor, *option_args, check_range: bool = True) -> CrossEntropyArgs:
    """Validate every argument of :func:`labelsmooth.cross_entropy` and flatten the logits to (M, K).

    ``option_args`` are :func:`check_loss_options`'s after ``target``, in its order (weight, ignore_index,
    reduction, label_smoothing, convention, prior), and checked by it."""
    check_logits(input)
    options, soft = check_loss_options(input.shape, target, *option_args, check_range=check_range)
    cdim = class_dim(input)
    logits = flatten_classes_last(input, cdim)
    if soft:
        flat_target = flatten_classes_last(target, cdim)
        out_shape = input.shape[:cdim] + input.shape[cdim + 1 :]
    else:
        flat_target = as_index(target if target.dim() == 1 else target.reshape(-1))
        out_shape = target.shape
    return CrossEntropyArgs(**vars(options), logits=logits, target=flat_target, soft=soft, out_shape=out_shape)


def check_index_target(target: object, shape: Sequence[int] | None, *, where: str) -> Tensor:
    """Class indices only (no probabilities), of ``shape`` when given; ``where`` names the function.

    Returns the target as int64 (:func:`as_index`)."""
    if (
        not isinstance(target, Tensor)
        or target.is_floating_point()
        or target.dtype == torch.bool
        or target.is_complex()
    ):
        raise TypeError(
            f"Expected argument `target` to hold integer class indices for {where}, but got "
            f"{getattr(target, 'dtype', type(target).__name__)}"
        )
    if shape is not None and target.shape != torch.Size(shape):
        raise ValueError(
            f"Expected argument `target` to have shape {tuple(shape)} (the input's shape without the feature "
            f"dimension), but got {tuple(target.shape)}"
        )
    return as_index(target)


def check_linear_head(
    input: Tensor, weight: object, bias: object, *, names: tuple[str, str] = ("linear_weight", "linear_bias"),
    rows: str = "V",
) -> None:  # fmt: skip
    """A head ``weight`` (V, D) for ``input`` (..., D) and an optional ``bias`` (V,), all floating point."""
    check_logits(weight, names[0])
    if weight.dim() != 2 or weight.shape[1] != input.shape[-1]:
        raise ValueError(
            f"Expected argument `{names[0]}` to have shape ({rows}, {input.shape[-1]}) for input of shape "
            f"{tuple(input.shape)}, but got {tuple(weight.shape)}"
        )
    if bias is not None:
        check_logits(bias, names[1])
        if bias.shape != weight.shape[:1]:
            raise ValueError(
                f"Expected argument `{names[1]}` to have shape ({weight.shape[0]},), one per class of the head, "
                f"but got {tuple(bias.shape)}"
            )


def check_class_offsets(offsets: object, world: int, rank: int, local_size: int) -> list[int]:
    """world + 1 integer boundaries from 0, rank r holding classes [offsets[r], offsets[r+1]) of its size."""
    if isinstance(offsets, Tensor):
        offsets = offsets.tolist()
    offsets = list(offsets)  # type: ignore[call-overload]
    if any(isinstance(o, bool) or not isinstance(o, int) for o in offsets):
        raise TypeError(f"Expected argument `class_offsets` to be a sequence of integers, but got {offsets!r}")
    if len(offsets) != world + 1:
        raise ValueError(
            f"Expected argument `class_offsets` to hold world_size + 1 = {world + 1} boundaries "
            f"(rank r holds classes [offsets[r], offsets[r+1])), but got {len(offsets)}: {offsets}"
        )
    if offsets[0] != 0:
        raise ValueError(f"Expected argument `class_offsets` to start at 0, but got {offsets}")
    if offsets[rank + 1] - offsets[rank] != local_size:
        raise ValueError(
            f"Expected argument `class_offsets` to give rank {rank} a slice of {local_size} classes "
            f"(the size of its local logits), but got [{offsets[rank]}, {offsets[rank + 1]}) in {offsets}"
        )
    return offsets


def check_constant(name: str, value: object, where: str) -> None:
    """Refuse a tensor that requires grad where ``where`` computes no gradient for it (never a silent None)."""
    if isinstance(value, Tensor) and value.requires_grad and torch.is_grad_enabled():
        raise ValueError(
            f"Expected argument `{name}` not to require grad for {where}, which computes no gradient for it, but "
            f"got a tensor that requires grad: pass {name}.detach(), or use labelsmooth.cross_entropy, whose "
            "autograd differentiates it"
        )


def refuse_double_backward(where: str) -> None:
    """Called in a backward whose gradient was computed in the forward pass: it has no graph of its own."""
    if torch.is_grad_enabled():
        raise RuntimeError(
            f"{where} has no second derivative: its gradient is computed in the forward pass, so "
            "backward with create_graph=True (or autograd.grad(..., create_graph=True)) cannot build a graph "
            "of it; use labelsmooth.cross_entropy for higher derivatives"
        )
