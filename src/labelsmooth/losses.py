r"""The reference functional losses: label-smoothed cross-entropy, binary smoothing, the confidence penalty.

These are the exact, readable implementations (autograd through ``log_softmax``). The fused kernels in
:mod:`labelsmooth.fused` compute the same numbers with less memory and are tested against these.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from labelsmooth import _validation as V
from labelsmooth._common import class_dim, compute_dtype, in_dtype, reduce_rows
from labelsmooth.conventions import to_uniform
from labelsmooth.targets import index_target_coefficients, prior_vector, smooth_probabilities


def torch_smoothing(args: V.CrossEntropyArgs, prior: Tensor | None) -> float | None:
    """The ε of :func:`torch.nn.functional.cross_entropy` that gives the same target, or None if it has none.

    Without a prior, "uniform" is torch's own convention, and "others" with ε on K >= 2 classes is
    "uniform" with ε·K/(K − 1) (docs/theory.md), as long as that is at most 1. With a prior, torch has no
    equivalent.

    Example:
        >>> import torch
        >>> from labelsmooth._validation import check_cross_entropy_args
        >>> args = check_cross_entropy_args(torch.zeros(2, 10), torch.tensor([0, 1]), None, -100, "mean", 0.09,
        ...                                 "others", None)
        >>> round(torch_smoothing(args, None), 12)
        0.1
    """
    if prior is not None:
        return None
    if args.convention == "uniform":
        return args.label_smoothing
    K = args.num_classes
    if K < 2:
        return None
    eps = to_uniform(args.label_smoothing, K, "others")
    return eps if eps <= 1.0 else None  # torch's range of ε


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    convention: str = "uniform",
    prior: Tensor | None = None,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_z_loss: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""Cross-entropy against a label-smoothed target, a drop-in for :func:`torch.nn.functional.cross_entropy`.

    .. math::
        \ell_i = -\sum_k w_k\, q_{ik} \log \mathrm{softmax}(z_i)_k, \qquad
        q_i = (1-s)\,e_{y_i} + s\,\pi

    with :math:`s = \varepsilon` for ``convention="uniform"`` (Szegedy et al. 2016, torch's meaning of ε)
    and :math:`s = \varepsilon/(1-\pi_{y_i})` for ``convention="others"`` (fairseq's: the true class keeps
    exactly 1 − ε and the others share ε, ε/(K−1) each under a uniform prior). ``prior`` π defaults to 1/K.

    Weights follow torch: each class's term is scaled by its weight ``w_k`` (so the weights also scale the
    smoothing term), and ``reduction="mean"`` divides by :math:`\sum_i w_{y_i}` over non-ignored targets
    (by the number of rows for probability targets). The same rule extends unchanged to "others" and to
    priors. A mean over targets that are all ignored is NaN, as in torch.

    Without a prior, the target is one torch has (``convention="others"`` with ε is ``"uniform"`` with
    ε·K/(K − 1)), and the loss is computed by :func:`torch.nn.functional.cross_entropy` itself (its fused
    kernel, in the compute dtype); with a prior, or an "others" ε beyond (K − 1)/K, by the linear form of
    :mod:`labelsmooth.targets`.
    float16/bfloat16 logits are computed in float32 and the loss returned in their dtype.
    Under ``torch.compile`` (fullgraph works) the class-index and prior checks are assertions inside the
    graph: RuntimeError naming the argument, without the offending value.

    Args:
        input: logits, shape (C,), (N, C) or (N, C, d1, ..., dk); floating point.
        target: class indices, shape (), (N,) or (N, d1, ..., dk), values in [0, C) or ``ignore_index``;
            or class probabilities of the input's shape (smoothed by the linear extension, see
            :mod:`labelsmooth.targets`).
        weight: optional (C,) class weights.
        ignore_index: target value that contributes nothing (class-index targets only).
        reduction: "mean", "sum" or "none" (shape of the target without the class dimension).
        label_smoothing: ε in [0, 1].
        convention: "uniform" or "others".
        prior: optional (C,) probability vector the smoothing mass is spread by.
        z_loss: λ >= 0, the coefficient of the z-loss λ·lse(z_i)² (PaLM) added to every row whose target
            is not ignored, reduced like the loss (the mean keeps the loss's denominator; class weights
            do not scale it). 0 turns it off.
        softcap: c > 0: the logits are capped, z ← c·tanh(z/c) (Gemma 2), before the softmax, so the
            smoothing term, the z-loss and all gradients use the capped logits. None turns it off.
        return_z_loss: also return the z-loss part of the loss (already included in the loss).

    Returns:
        The loss: a scalar, or per-element losses for ``reduction="none"``; with ``return_z_loss`` the pair
        (loss, z-loss part), the second reduced like the first.

    Example:
        >>> import torch, torch.nn.functional as F, labelsmooth
        >>> z = torch.tensor([[2.0, 0.5, -1.0]]); y = torch.tensor([0])
        >>> torch.allclose(labelsmooth.cross_entropy(z, y, label_smoothing=0.1),
        ...                F.cross_entropy(z, y, label_smoothing=0.1))
        True
        >>> # fairseq's ε = 0.1 on K = 3 classes is torch's ε = 0.15
        >>> torch.allclose(labelsmooth.cross_entropy(z, y, label_smoothing=0.1, convention="others"),
        ...                F.cross_entropy(z, y, label_smoothing=0.15))
        True
        >>> # z-loss and softcapping (docs/theory.md §9); the loss includes the z-loss part returned
        >>> loss, z_part = labelsmooth.cross_entropy(z, y, z_loss=1e-4, softcap=30.0, return_z_loss=True)
        >>> torch.allclose(z_part, 1e-4 * torch.logsumexp(30.0 * torch.tanh(z / 30.0), 1).square().mean())
        True
    """
    # On a CPU, torch's own kernel checks the class indices as it reads them; the range check is then left
    # to it (one reduction and a host sync fewer per call) and its IndexError replaced by ours.
    V.check_logits(input)
    z_loss = V.check_z_loss(z_loss)
    softcap = V.check_softcap(softcap)
    return_z_loss = V.check_bool("return_z_loss", return_z_loss)
    delegate = prior is None and input.device.type == "cpu"
    args = V.check_cross_entropy_args(
        input, target, weight, ignore_index, reduction, label_smoothing, convention, prior, check_range=not delegate
    )
    dtype = compute_dtype(input.dtype)
    eps_torch = torch_smoothing(args, prior)
    if eps_torch is not None:  # a target torch has: its own fused kernel, in the compute dtype
        index = None if args.soft else V.as_index(target)
        try:
            loss = F.cross_entropy(
                _capped(in_dtype(input, dtype), softcap), in_dtype(target, dtype) if args.soft else index,
                weight=None if weight is None else in_dtype(weight, dtype), ignore_index=ignore_index,
                reduction=args.reduction, label_smoothing=eps_torch,
            )  # fmt: skip
            if z_loss == 0.0 and not return_z_loss:
                return in_dtype(loss, input.dtype)
            z_part = _z_loss_part(args, weight, ignore_index, z_loss, softcap, dtype)
            return _with_z_loss(loss, z_part, input.dtype, return_z_loss)
        except IndexError as error:
            if not delegate:
                raise
            torch_error = error
        V.check_target_range(index, args.num_classes, ignore_index)  # torch refused an index: ours names it
        raise torch_error
    if delegate and not args.soft:
        V.check_target_range(args.target, args.num_classes, ignore_index)
    logp = F.log_softmax(_capped(args.logits.to(dtype), softcap), dim=-1)
    K = args.num_classes
    if args.soft:
        prior_vec = prior_vector(prior, K, dtype=dtype, device=input.device)
        q = smooth_probabilities(args.target.to(dtype), args.label_smoothing, args.convention, prior_vec)
        if weight is not None:
            q = q * weight.to(dtype)
        row_loss = -(q * logp).sum(-1)
        denominator: Tensor | float = float(args.logits.shape[0])
    else:
        c = index_target_coefficients(
            args.target, K, args.label_smoothing, convention=args.convention, prior=prior,
            weight=weight, ignore_index=ignore_index, dtype=dtype,
        )  # fmt: skip
        true_logp = logp.gather(1, c.safe_target.unsqueeze(1)).squeeze(1)
        row_loss = -c.true_coef * true_logp
        if args.label_smoothing > 0:
            row_loss = row_loss - c.prior_coef * (logp @ c.prior_weighted)
        denominator = c.row_weight.sum()
    loss = reduce_rows(row_loss, args.reduction, denominator, args.out_shape)
    if z_loss == 0.0 and not return_z_loss:
        return loss.to(input.dtype)
    return _with_z_loss(
        loss, _z_loss_part(args, weight, ignore_index, z_loss, softcap, dtype), input.dtype, return_z_loss
    )


def _capped(z: Tensor, softcap: float | None) -> Tensor:
    """c·tanh(z/c), or z itself without a cap."""
    return z if softcap is None else softcap * torch.tanh(z / softcap)


def _z_loss_part(
    args: V.CrossEntropyArgs, weight: Tensor | None, ignore_index: int, z_loss: float, softcap: float | None,
    dtype: torch.dtype,
) -> Tensor:  # fmt: skip
    """λ·lse(z_i)² per kept row (capped logits), reduced like the loss, in the compute dtype."""
    lse = torch.logsumexp(_capped(args.logits.to(dtype), softcap), dim=-1)
    M = lse.shape[0]
    if args.soft:
        keep = torch.ones(M, dtype=dtype, device=lse.device)
        denominator: Tensor = torch.tensor(float(M), dtype=dtype, device=lse.device)
    else:
        kept = args.target != ignore_index
        keep = kept.to(dtype)
        if weight is None:
            denominator = keep.sum()
        else:
            safe = torch.where(kept, args.target, 0)
            denominator = (in_dtype(weight, dtype)[safe] * keep).sum()
    return reduce_rows(z_loss * keep * lse.square(), args.reduction, denominator, args.out_shape)


def _with_z_loss(
    loss: Tensor, z_part: Tensor, out_dtype: torch.dtype, return_z_loss: bool
) -> Tensor | tuple[Tensor, Tensor]:
    total = in_dtype(loss + z_part, out_dtype)
    return (total, in_dtype(z_part, out_dtype)) if return_z_loss else total


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    reduction: str = "mean",
    pos_weight: Tensor | None = None,
    label_smoothing: float = 0.0,
) -> Tensor:
    r"""Binary (and multi-label) cross-entropy on logits with targets pulled towards 1/2.

    .. math::
        \tilde y = y\,(1-\varepsilon) + \varepsilon/2, \qquad
        \ell = -w\,[\,p_w \tilde y \log\sigma(x) + (1-\tilde y)\log(1-\sigma(x))\,]

    Keras' convention (``BinaryCrossentropy(label_smoothing=ε)``). timm's ``BinaryCrossEntropy`` spreads
    its ``smoothing`` s over C classes (off = s/C, on = 1 − s + s/C): the same target only when C = 2.
    Everything else, including ``weight`` and ``pos_weight`` broadcasting, is
    :func:`torch.nn.functional.binary_cross_entropy_with_logits`.

    Args:
        input: logits of any shape.
        target: targets in [0, 1], the input's shape (multi-label: one column per label).
        weight: optional rescaling, broadcastable to the input.
        reduction: "mean", "sum" or "none".
        pos_weight: optional weight of positive examples, broadcastable along the last dimension.
        label_smoothing: ε in [0, 1].

    Returns:
        The loss, in the input's dtype.

    Example:
        >>> import torch, labelsmooth
        >>> x = torch.tensor([3.0, -2.0]); y = torch.tensor([1.0, 0.0])
        >>> loss = labelsmooth.binary_cross_entropy_with_logits(x, y, label_smoothing=0.2)
        >>> manual = torch.nn.functional.binary_cross_entropy_with_logits(x, torch.tensor([0.9, 0.1]))
        >>> torch.allclose(loss, manual)
        True
    """
    V.check_logits(input)
    eps = V.check_probability("label_smoothing", label_smoothing)
    reduction = V.check_reduction(reduction)
    if not isinstance(target, Tensor):
        raise TypeError(f"Expected argument `target` to be a torch.Tensor, but got {type(target).__name__}")
    if target.shape != input.shape:
        raise ValueError(
            f"Expected argument `target` to have the input's shape {tuple(input.shape)}, but got {tuple(target.shape)}"
        )
    for name, value in (("weight", weight), ("pos_weight", pos_weight)):
        if value is not None and not isinstance(value, Tensor):
            raise TypeError(f"Expected argument `{name}` to be a torch.Tensor or None, but got {type(value).__name__}")
    dtype = compute_dtype(input.dtype)
    smoothed = target.to(dtype) * (1.0 - eps) + eps / 2.0
    loss = F.binary_cross_entropy_with_logits(
        input.to(dtype), smoothed,
        weight=None if weight is None else weight.to(dtype),
        pos_weight=None if pos_weight is None else pos_weight.to(dtype),
        reduction=reduction,
    )  # fmt: skip
    return loss.to(input.dtype)


def entropy(input: Tensor) -> Tensor:
    """H(softmax(z)) per row, class dimension last: −Σ p log p, computed stably from log-probabilities."""
    logp = F.log_softmax(input, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def confidence_penalty(
    input: Tensor, beta: float, *, threshold: float | None = None, reduction: str = "mean"
) -> Tensor:
    r"""The confidence penalty of Pereyra et al. 2017 (arXiv:1701.06548, §2): punish low output entropy.

    .. math::
        \ell_i = -\beta\, H(p_i) \quad\text{or, with a threshold } \Gamma,\quad
        \ell_i = \beta \max(0,\ \Gamma - H(p_i)), \qquad H(p) = -\sum_k p_k \log p_k

    Add it to a cross-entropy (:class:`labelsmooth.ConfidencePenaltyLoss` does). Minimising it *raises*
    the entropy of p. Since :math:`-H(p) = D_{KL}(p\,\|\,u) - \log K`, it is label smoothing's
    :math:`D_{KL}(u\,\|\,p)` with the divergence reversed.

    Args:
        input: logits, shape (C,), (N, C) or (N, C, d1, ..., dk).
        beta: β >= 0.
        threshold: optional Γ >= 0 (in nats) for the hinge form.
        reduction: "mean", "sum" or "none" (the input's shape without the class dimension).

    Returns:
        The penalty, in the input's dtype.

    Example:
        >>> import torch, math, labelsmooth
        >>> # uniform logits have the largest entropy, log K: the penalty is −β log K
        >>> labelsmooth.confidence_penalty(torch.zeros(1, 4, dtype=torch.float64), beta=1.0).item()
        -1.386294...
        >>> -math.log(4)
        -1.386294...
    """
    V.check_logits(input)
    beta = V.check_nonnegative("beta", beta)
    if threshold is not None:
        threshold = V.check_nonnegative("threshold", threshold)
    reduction = V.check_reduction(reduction)
    cdim = class_dim(input)
    z = input.movedim(cdim, -1).to(compute_dtype(input.dtype))
    h = entropy(z)
    penalty = -beta * h if threshold is None else beta * torch.clamp(threshold - h, min=0.0)
    if reduction == "none":
        return penalty.to(input.dtype)
    return (penalty.sum() if reduction == "sum" else penalty.mean()).to(input.dtype)
