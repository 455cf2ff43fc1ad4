"""Thin ``torch.nn.Module`` wrappers: each forward is one call to a functional loss."""

from __future__ import annotations

from torch import Tensor, nn

from labelsmooth import _validation as V
from labelsmooth.linear import linear_cross_entropy
from labelsmooth.losses import binary_cross_entropy_with_logits, confidence_penalty, cross_entropy


class SmoothedCrossEntropyOptions(nn.Module):
    """The options every smoothed cross-entropy module holds, validated once: torch's four plus ours.

    ``weight`` and ``prior`` are buffers (they follow ``.to()`` and the state dict). ``z_loss``,
    ``softcap`` and ``return_z_loss`` are those of :func:`labelsmooth.cross_entropy` (z-loss λ·lse²,
    logit cap c·tanh(z/c), and returning (loss, z-loss part)).
    """

    def __init__(
        self,
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
    ) -> None:
        super().__init__()
        self.z_loss = V.check_z_loss(z_loss)
        self.softcap = V.check_softcap(softcap)
        self.return_z_loss = V.check_bool("return_z_loss", return_z_loss)
        self.label_smoothing = V.check_probability("label_smoothing", label_smoothing)
        self.reduction = V.check_reduction(reduction)
        self.convention = V.check_convention(convention)
        self.ignore_index = V.check_ignore_index(ignore_index)
        self.register_buffer("weight", weight)
        self.register_buffer("prior", prior)

    def extra_repr(self) -> str:
        text = f"label_smoothing={self.label_smoothing}, convention={self.convention!r}, reduction={self.reduction!r}"
        if self.z_loss:
            text += f", z_loss={self.z_loss}"
        if self.softcap is not None:
            text += f", softcap={self.softcap}"
        return text


class CrossEntropyLoss(SmoothedCrossEntropyOptions):
    """Module form of :func:`labelsmooth.cross_entropy`; a drop-in for :class:`torch.nn.CrossEntropyLoss`.

    Example:
        >>> import torch, labelsmooth
        >>> loss = labelsmooth.CrossEntropyLoss(label_smoothing=0.1, convention="others")
        >>> loss(torch.zeros(2, 3), torch.tensor([0, 2])).item() == torch.log(torch.tensor(3.0)).item()
        True
    """

    def forward(self, input: Tensor, target: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        return cross_entropy(
            input, target, self.weight, self.ignore_index, self.reduction, self.label_smoothing,
            convention=self.convention, prior=self.prior, z_loss=self.z_loss, softcap=self.softcap,
            return_z_loss=self.return_z_loss,
        )  # fmt: skip


class BCEWithLogitsLoss(nn.Module):
    """Module form of :func:`labelsmooth.binary_cross_entropy_with_logits`.

    Example:
        >>> import torch, labelsmooth
        >>> labelsmooth.BCEWithLogitsLoss(label_smoothing=0.1)(torch.zeros(3), torch.ones(3)).item() > 0
        True
    """

    def __init__(
        self,
        weight: Tensor | None = None,
        reduction: str = "mean",
        pos_weight: Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.label_smoothing = V.check_probability("label_smoothing", label_smoothing)
        self.reduction = V.check_reduction(reduction)
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return binary_cross_entropy_with_logits(
            input, target, self.weight, self.reduction, self.pos_weight, self.label_smoothing
        )


class ConfidencePenaltyLoss(nn.Module):
    r"""Cross-entropy plus the confidence penalty (Pereyra et al. 2017): :math:`\mathrm{CE} - \beta H(p)`.

    The cross-entropy part follows :func:`labelsmooth.cross_entropy` (``weight``, ``ignore_index``). The
    penalty (:func:`labelsmooth.confidence_penalty`) covers the rows whose target is not ignored and,
    for ``reduction="mean"``, is averaged over them (unweighted).

    Example:
        >>> import torch, labelsmooth
        >>> z = torch.tensor([[4.0, 0.0, 0.0]]); y = torch.tensor([0])
        >>> cp = labelsmooth.ConfidencePenaltyLoss(beta=0.5)
        >>> bool(cp(z, y) < labelsmooth.cross_entropy(z, y))  # the entropy term is subtracted
        True
    """

    def __init__(
        self,
        beta: float,
        threshold: float | None = None,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.beta = V.check_nonnegative("beta", beta)
        self.threshold = None if threshold is None else V.check_nonnegative("threshold", threshold)
        self.reduction = V.check_reduction(reduction)
        self.ignore_index = V.check_ignore_index(ignore_index)
        self.register_buffer("weight", weight)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        ce = cross_entropy(input, target, self.weight, self.ignore_index, self.reduction)
        penalty = confidence_penalty(input, self.beta, threshold=self.threshold, reduction="none")
        keep = (V.as_index(target) != self.ignore_index) if not target.is_floating_point() else None
        if keep is not None:
            penalty = penalty * keep
        if self.reduction == "none":
            return ce + penalty
        total = penalty.sum()
        if self.reduction == "mean":
            total = total / (keep.sum() if keep is not None else penalty.numel())
        return ce + total

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}, reduction={self.reduction!r}"


class LinearCrossEntropyLoss(SmoothedCrossEntropyOptions):
    """Module form of :func:`labelsmooth.linear_cross_entropy`: ``loss(input, linear_weight, target, linear_bias)``.

    Example:
        >>> import torch, labelsmooth
        >>> head = torch.nn.Linear(4, 9)
        >>> loss_fn = labelsmooth.LinearCrossEntropyLoss(label_smoothing=0.1)
        >>> loss = loss_fn(torch.randn(3, 4), head.weight, torch.tensor([1, 2, 3]), head.bias)
        >>> loss.backward(); head.weight.grad.shape
        torch.Size([9, 4])
    """

    def __init__(self, *args, chunk_size: int | None = None, **kwargs) -> None:
        """The options of :class:`SmoothedCrossEntropyOptions`, and ``chunk_size`` (rows per chunk, or None)."""
        super().__init__(*args, **kwargs)
        self.chunk_size = V.check_chunk_size(chunk_size)

    def forward(
        self, input: Tensor, linear_weight: Tensor, target: Tensor, linear_bias: Tensor | None = None
    ) -> Tensor | tuple[Tensor, Tensor]:
        return linear_cross_entropy(
            input, linear_weight, target, linear_bias=linear_bias, weight=self.weight,
            reduction=self.reduction, ignore_index=self.ignore_index, label_smoothing=self.label_smoothing,
            convention=self.convention, prior=self.prior, chunk_size=self.chunk_size, z_loss=self.z_loss,
            softcap=self.softcap, return_z_loss=self.return_z_loss,
        )  # fmt: skip
