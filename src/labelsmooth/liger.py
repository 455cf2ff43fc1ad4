r"""A drop-in for Liger-Kernel's ``LigerFusedLinearCrossEntropyLoss``, computed by :func:`labelsmooth.linear_cross_entropy`.

Liger's definitions (``liger_kernel/ops/cross_entropy.py`` and ``fused_linear_cross_entropy.py``), for a
row with logits :math:`z = W h + b` (capped first, :math:`z \leftarrow c\tanh(z/c)`, with a ``softcap`` c),
target y not ignored, class weights w (all 1 without ``ce_weight``), ε = ``label_smoothing``,
λ = ``lse_square_scale`` and V classes:

.. math::
    \ell_i = (1-\varepsilon)\,w_{y_i}\,(\mathrm{lse}(z_i) - z_{i,y_i})
        + \frac{\varepsilon}{V}\sum_k w_k\,(\mathrm{lse}(z_i) - z_{ik}), \qquad
    \zeta_i = \lambda\,\mathrm{lse}(z_i)^2,

and the loss is :math:`\sum_i \ell_i / D + \sum_i \zeta_i / n` for ``reduction="mean"``
(:math:`D = \sum_i w_{y_i}` and n the number of kept rows, both over kept rows: the z-loss is neither
weighted nor divided by the weights), :math:`\sum_i (\ell_i + \zeta_i)` for "sum" and
:math:`\ell_i + \zeta_i` per row for "none"; ignored rows give 0 and a zero gradient, and a mean over
rows that are all ignored is 0. ``return_z_loss`` adds the z-loss part, reduced the same way
(:math:`\sum_i \zeta_i / n` for the mean). The smoothing is torch's (ε/V on every class, the target
included, each class's term scaled by its own weight), i.e. our ``convention="uniform"``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from labelsmooth import _validation as V
from labelsmooth._common import compute_dtype
from labelsmooth.linear import linear_cross_entropy


class LossAndZLoss(NamedTuple):
    """What ``return_z_loss=True`` returns: unpacks as ``loss, z_loss`` (Liger's older tuple) and reads as
    ``out.loss``, ``out.z_loss`` (the fields of Liger's newer ``CrossEntropyOutput``)."""

    loss: Tensor
    z_loss: Tensor


class LigerCompatibleFusedLinearCrossEntropyLoss(nn.Module):
    r"""Liger-Kernel's ``LigerFusedLinearCrossEntropyLoss`` (same constructor, same ``forward``), exact on CPU and GPU.

    ``loss_fn(lin_weight, _input, target, bias=None)`` computes the linear head and the loss of the module
    docstring of :mod:`labelsmooth.liger` without materialising the logits beyond one chunk of rows, by
    one call of :func:`labelsmooth.linear_cross_entropy` (``lse_square_scale`` is its ``z_loss``). Where
    the arguments are Liger's, the values and gradients are Liger's definitions (tests/test_liger.py
    writes them out in float64). Beyond Liger: ``convention`` ("uniform", Liger's and torch's; or "others",
    fairseq's) and ``prior`` (the smoothing mass spread by a prior π instead of 1/V), ``chunk_size``, and
    inputs of shape (..., H).

    Where we differ from Liger:

    - ``accum_dtype``: the gradients of ``lin_weight`` and ``bias`` are always accumulated in the compute
      dtype, float32 for float16/bfloat16 inputs (Liger's ``accum_dtype=torch.float32``), the input's own
      for float32/float64, and returned in the parameters' dtypes. So ``accum_dtype=None`` with bf16
      parameters accumulates in float32 here (Liger: in bf16); an ``accum_dtype`` finer than the compute
      dtype (float64 for float32 inputs) raises ValueError instead of being ignored.
    - the loss is returned in the input's dtype (Liger's newer versions return float32).
    - a weighted mean whose kept targets all have weight 0 is NaN (Liger divides by 0 too: inf or NaN).
    - ``target`` is checked: class indices outside [0, V) that are not ``ignore_index`` raise ValueError.
    - ``use_token_scaling``, ``return_token_accuracy`` and ``return_predicted_tokens`` are accepted only
      as False (ValueError otherwise), so code that passes Liger's defaults explicitly still runs.

    Args:
        ce_weight: optional (V,) class weights (a buffer: it follows ``.to()``); no gradient is computed
            for it (one that requires grad is refused).
        ignore_index: target value that contributes nothing.
        lse_square_scale: λ >= 0 of the z-loss λ·lse² (0: off).
        label_smoothing: ε in [0, 1].
        reduction: "mean", "sum" or "none".
        softcap: None or c > 0: logits capped to c·tanh(z/c) before the softmax.
        return_z_loss: also return the z-loss part (already in the loss), as :class:`LossAndZLoss`.
        accum_dtype: None or a floating dtype (see above).
        convention, prior: ours, as :func:`labelsmooth.cross_entropy`.
        chunk_size: rows per chunk (None: about 2**24 logits per chunk).

    Returns (forward):
        The loss (scalar, or (...) for "none"); with ``return_z_loss`` a :class:`LossAndZLoss`, whose
        z-loss part carries no gradient (for logging).

    Example:
        >>> import torch, labelsmooth
        >>> head = torch.nn.Linear(4, 9)
        >>> loss_fn = labelsmooth.LigerCompatibleFusedLinearCrossEntropyLoss(label_smoothing=0.1,
        ...                                                                    lse_square_scale=1e-4)
        >>> h = torch.randn(6, 4); y = torch.tensor([0, 8, 3, 3, -100, 1])
        >>> loss = loss_fn(head.weight, h, y, head.bias)
        >>> z = h @ head.weight.T + head.bias; keep = y != -100
        >>> ref = torch.nn.functional.cross_entropy(z, y, label_smoothing=0.1)
        >>> ref = ref + 1e-4 * torch.logsumexp(z[keep], 1).square().mean()
        >>> torch.allclose(loss, ref)
        True
    """

    def __init__(
        self,
        ce_weight: Tensor | None = None,
        ignore_index: int = -100,
        lse_square_scale: float = 0.0,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
        softcap: float | None = None,
        return_z_loss: bool = False,
        accum_dtype: torch.dtype | None = None,
        use_token_scaling: bool = False,
        return_token_accuracy: bool = False,
        return_predicted_tokens: bool = False,
        *,
        convention: str = "uniform",
        prior: Tensor | None = None,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        if ce_weight is not None:
            V.check_logits(ce_weight, "ce_weight")
            if ce_weight.dim() != 1:
                raise ValueError(
                    f"Expected argument `ce_weight` to have shape (V,), one weight per class, but got "
                    f"{tuple(ce_weight.shape)}"
                )
        self.ignore_index = V.check_ignore_index(ignore_index)
        self.lse_square_scale = V.check_nonnegative("lse_square_scale", lse_square_scale)
        self.label_smoothing = V.check_probability("label_smoothing", label_smoothing)
        self.reduction = V.check_reduction(reduction)
        self.softcap = V.check_softcap(softcap)
        self.return_z_loss = V.check_bool("return_z_loss", return_z_loss)
        if accum_dtype is not None and not (isinstance(accum_dtype, torch.dtype) and accum_dtype.is_floating_point):
            raise TypeError(
                f"Expected argument `accum_dtype` to be None or a floating torch.dtype, but got {accum_dtype!r}"
            )
        self.accum_dtype = accum_dtype
        for name, value in (
            ("use_token_scaling", use_token_scaling),
            ("return_token_accuracy", return_token_accuracy),
            ("return_predicted_tokens", return_predicted_tokens),
        ):
            if V.check_bool(name, value):
                raise ValueError(
                    f"Expected argument `{name}` to be False (Liger's option is not implemented here), but got True"
                )
        self.convention = V.check_convention(convention)
        self.chunk_size = V.check_chunk_size(chunk_size)
        self.register_buffer("ce_weight", ce_weight)
        self.register_buffer("prior", prior)

    def forward(
        self, lin_weight: Tensor, _input: Tensor, target: Tensor, bias: Tensor | None = None
    ) -> Tensor | LossAndZLoss:
        V.check_logits(_input, "_input")
        V.check_linear_head(_input, lin_weight, bias, names=("lin_weight", "bias"))
        vocab = lin_weight.shape[0]
        if self.accum_dtype is not None:
            dtype = compute_dtype(_input.dtype)
            if torch.finfo(self.accum_dtype).bits > torch.finfo(dtype).bits:
                raise ValueError(
                    f"Expected argument `accum_dtype` to be at most as precise as the compute dtype {dtype} of "
                    f"_input of dtype {_input.dtype} (gradients are accumulated in it), but got {self.accum_dtype}; "
                    "cast the inputs instead"
                )
        target = V.check_index_target(target, _input.shape[:-1], where="LigerCompatibleFusedLinearCrossEntropyLoss")
        weight = self.ce_weight
        if weight is not None:
            V.check_constant("ce_weight", weight, "LigerCompatibleFusedLinearCrossEntropyLoss")
            if weight.shape != (vocab,):
                raise ValueError(
                    f"Expected argument `ce_weight` to have shape ({vocab},), one weight per class of lin_weight, "
                    f"but got {tuple(weight.shape)}"
                )
        mean = self.reduction == "mean"
        kept = (target != self.ignore_index).sum() if mean else None
        if mean and weight is not None and self.lse_square_scale != 0.0:
            # Liger divides the z-loss by the number of kept rows n, the loss by D = Σ w_y; our z-loss keeps
            # the loss's denominator. A weighted mean is unchanged when every weight is scaled by n / D, and
            # its denominator becomes n: one call then gives Liger's loss (and gradients).
            keep = target != self.ignore_index
            safe = torch.where(keep, target, 0).clamp(0, vocab - 1)
            weights = weight.detach().double()
            total = (weights[safe] * keep).sum()
            weight = weights * torch.where(total == 0, 1.0, kept / total)
        out = linear_cross_entropy(
            _input, lin_weight, target, linear_bias=bias, weight=weight, reduction=self.reduction,
            ignore_index=self.ignore_index, label_smoothing=self.label_smoothing, convention=self.convention,
            prior=self.prior, chunk_size=self.chunk_size, z_loss=self.lse_square_scale, softcap=self.softcap,
            return_z_loss=self.return_z_loss,
        )  # fmt: skip
        loss, z_loss = out if self.return_z_loss else (out, None)
        if mean:  # Liger's mean over rows that are all ignored is 0 (ours, torch's, is NaN)
            loss = torch.where(kept == 0, 0.0, loss)
            z_loss = None if z_loss is None else torch.where(kept == 0, 0.0, z_loss)
        return loss if z_loss is None else LossAndZLoss(loss, z_loss)

    def extra_repr(self) -> str:
        text = f"ignore_index={self.ignore_index}, label_smoothing={self.label_smoothing}, reduction={self.reduction!r}"
        if self.lse_square_scale:
            text += f", lse_square_scale={self.lse_square_scale}"
        if self.softcap is not None:
            text += f", softcap={self.softcap}"
        if self.convention != "uniform":
            text += f", convention={self.convention!r}"
        return text


__all__ = ["LigerCompatibleFusedLinearCrossEntropyLoss", "LossAndZLoss"]
