r"""The theory as code: the NLL + KL decomposition and the optimal logit gap.

See docs/theory.md for the derivations. In short, with :math:`q = (1-\varepsilon)e_y + \varepsilon\pi`,

.. math::
    H(q, p) = (1-\varepsilon)\,\underbrace{(-\log p_y)}_{\text{NLL}}
              + \varepsilon\,\big(D_{KL}(\pi\,\|\,p) + H(\pi)\big),

so label smoothing *adds* a weighted :math:`D_{KL}(\pi\|p)`: Pereyra et al. 2017 §3.2 prints
:math:`-\sum\log p - D_{KL}(u\|p)`, whose minus sign is a typo (it would reward confidence).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from labelsmooth import _validation as V
from labelsmooth._common import compute_dtype, reduce_rows
from labelsmooth.conventions import canonical_setting, to_uniform
from labelsmooth.targets import class_smoothing, prior_vector


class Decomposition(NamedTuple):
    """The parts of a label-smoothed cross-entropy; ``total = (1−ε′)·nll + ε′·(kl + prior_entropy)``."""

    nll: Tensor
    kl: Tensor
    prior_entropy: Tensor
    epsilon: float | Tensor
    total: Tensor


def decompose(
    input: Tensor,
    target: Tensor,
    label_smoothing: float,
    *,
    convention: str = "uniform",
    prior: Tensor | None = None,
    reduction: str = "mean",
) -> Decomposition:
    r"""Split a label-smoothed cross-entropy into NLL and KL to the prior.

    .. math::
        \ell = (1-\varepsilon')\,\mathrm{NLL} + \varepsilon'\,\big(D_{KL}(\pi\,\|\,p) + H(\pi)\big)

    where ε′ is the uniform-convention equivalent of the setting: ε for "uniform", ε/(1 − π_y) for
    "others" (ε·K/(K−1) under the uniform prior). When "others" meets a non-uniform prior, ε′ differs per
    example; ``epsilon`` is then a tensor and the identity holds example by example (``reduction="none"``).

    Args:
        input: logits, shape (C,), (N, C) or (N, C, d1, ..., dk).
        target: class indices in [0, C), the input's shape without the class dimension.
        label_smoothing: ε in [0, 1].
        convention: "uniform" or "others".
        prior: optional (C,) probability vector π; uniform when None.
        reduction: "mean", "sum" or "none", applied to every tensor field, so that the identity holds
            for each (``prior_entropy`` is H(π) for "mean", N·H(π) for "sum", H(π) per example for "none").

    Returns:
        :class:`Decomposition` with fields ``nll``, ``kl`` (D_KL(π‖p)), ``prior_entropy`` (H(π), a
        constant per example), ``epsilon`` (ε′: a float, or a per-example tensor) and ``total``, which equals
        :func:`labelsmooth.cross_entropy` with the same arguments.

    Example:
        >>> import torch, labelsmooth
        >>> z = torch.randn(8, 5, dtype=torch.float64); y = torch.randint(0, 5, (8,))
        >>> d = labelsmooth.decompose(z, y, 0.1)
        >>> bool(d.kl >= 0), torch.allclose(d.total, labelsmooth.cross_entropy(z, y, label_smoothing=0.1))
        (True, True)
        >>> torch.allclose(d.total, (1 - d.epsilon) * d.nll + d.epsilon * (d.kl + d.prior_entropy))
        True
    """
    args = V.check_cross_entropy_args(
        input, target, None, -100, reduction, label_smoothing, convention, prior, check_range=False
    )
    if args.soft:
        raise TypeError("Expected argument `target` to hold integer class indices for decompose, but got probabilities")
    V.check_target_range(args.target, args.num_classes, None)
    dtype = compute_dtype(input.dtype)
    K = args.num_classes
    logp = F.log_softmax(args.logits.to(dtype), dim=-1)
    pi = prior_vector(prior, K, dtype=dtype, device=input.device)
    nll = -logp.gather(1, args.target.unsqueeze(1)).squeeze(1)
    pi_logpi = torch.special.xlogy(pi, pi).sum()
    kl = pi_logpi - logp @ pi
    prior_entropy = -pi_logpi
    eps_row = class_smoothing(args.label_smoothing, args.convention, pi)[args.target]
    total = (1 - eps_row) * nll + eps_row * (kl + prior_entropy)
    constant = args.convention == "uniform" or prior is None
    if constant:
        epsilon: float | Tensor = float(eps_row[0]) if eps_row.numel() else float(args.label_smoothing)
    else:
        epsilon = eps_row.reshape(args.out_shape).to(input.dtype)
    n = float(args.logits.shape[0])

    def reduce(x: Tensor) -> Tensor:
        return reduce_rows(x, args.reduction, n, args.out_shape).to(input.dtype)

    return Decomposition(reduce(nll), reduce(kl), reduce(prior_entropy.expand_as(nll)), epsilon, reduce(total))


def optimal_logit_gap(label_smoothing: float, num_classes: int, convention: str = "uniform") -> float:
    r"""The gap :math:`z_y - z_k` between the true and every other logit at the loss's minimiser.

    The minimiser has :math:`p = q`, so :math:`z_y - z_k = \log(q_y/q_k)`; with the uniform prior

    .. math::
        z_y - z_k = \log\!\Big(1 + \frac{K(1-\varepsilon_u)}{\varepsilon_u}\Big)
                  = \log\frac{\gamma\,(K-1)}{1-\gamma},

    infinite at ε = 0: plain cross-entropy pushes logits apart forever.

    Args:
        label_smoothing: the setting in ``convention``'s terms (γ for "gamma").
        num_classes: K >= 2.
        convention: "uniform", "others", "gamma" or a framework name (see :func:`convert_smoothing`).

    Returns:
        The gap in nats (``math.inf`` for no smoothing; negative if the setting favours the other classes).

    Example:
        >>> import labelsmooth
        >>> round(labelsmooth.optimal_logit_gap(0.1, 10), 3), round(labelsmooth.optimal_logit_gap(0.1, 1000), 3)
        (4.511, 9.105)
        >>> labelsmooth.optimal_logit_gap(0.0, 10)
        inf
    """
    K = V.check_num_classes(num_classes)
    setting = canonical_setting(convention, "convention")
    value = V.check_probability("label_smoothing", label_smoothing)
    eps_u = to_uniform(value, K, setting)
    q_true, q_other = 1.0 - eps_u + eps_u / K, eps_u / K
    if q_other == 0.0:
        return math.inf
    if q_true <= 0.0:
        return -math.inf
    return math.log(q_true) - math.log(q_other)
