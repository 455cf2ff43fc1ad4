r"""What the soft target q is: the two conventions, priors, and the linear form every loss shares.

Two conventions name the same family of targets differently (see docs/theory.md):

- ``"uniform"`` (Szegedy et al. 2016; PyTorch, Keras, timm, Optax, Hugging Face, Liger, Apex):
  :math:`q = (1-\varepsilon)\,e_y + \varepsilon\,\pi`, with the prior :math:`\pi = 1/K` by default.
- ``"others"`` (fairseq, Megatron; the seed paper's γ = 1 − ε): :math:`q_y = 1-\varepsilon` and
  :math:`q_k = \varepsilon\,\pi_k / (1-\pi_y)` for :math:`k \ne y` (uniform prior: ε/(K−1)).

Both are :math:`q = (1-s_y)\,e_y + s_y\,\pi` with a per-class coefficient :math:`s_j`: ``s_j = ε`` for
"uniform" and ``s_j = ε / (1 − π_j)`` for "others". That single form, together with torch's weight
semantics (each class's term is scaled by its weight), gives every loss in the library as

.. math::
    \ell_i = -\sum_k w_k q_{ik} \log p_{ik}
           = m_i\,\mathrm{lse}(z_i) - a_i\,z_{i,y_i} - b_i\,(z_i \cdot v),
    \qquad \nabla_{z_i}\ell_i = m_i\,p_i - a_i\,e_{y_i} - b_i\,v,

with :math:`a_i = (1-s_{y_i})\,w_{y_i}`, :math:`b_i = s_{y_i}`, :math:`v = w \odot \pi` and the row mass
:math:`m_i = a_i + b_i \sum_k v_k`. :func:`index_target_coefficients` computes those numbers once
(:class:`Coefficients`); the reference loss, the fused kernels and the distributed loss all consume them.

Class-probability targets extend the map affinely: a one-hot row :math:`e_j` becomes
:math:`(1-s_j)e_j + s_j\pi` and a row t of any sum becomes
:math:`t \odot (1-s) + (t\cdot s + (1-\sum_k t_k)\,\pi\cdot s)\,\pi` (:func:`smooth_probabilities`; for
"uniform" that is torch's :math:`t(1-\varepsilon) + \varepsilon/K`). In the same linear form such a
row has :math:`a_i = 0`, :math:`b_i = 1` and its own :math:`v_i = w \odot q_i`
(:func:`probability_target_coefficients`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from labelsmooth import _validation as V
from labelsmooth.conventions import class_coefficient


def prior_vector(prior: Tensor | None, num_classes: int, *, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The prior π as a (K,) tensor: ``prior`` itself, or the uniform 1/K."""
    if prior is None:
        return torch.full((num_classes,), 1.0 / num_classes, dtype=dtype, device=device)
    return prior.detach().to(dtype=dtype, device=device)


def class_smoothing(label_smoothing: float, convention: str, prior_vec: Tensor) -> Tensor:
    """The (K,) coefficients s_j with q(e_j) = (1 − s_j)·e_j + s_j·π (:func:`conventions.class_coefficient`)."""
    return class_coefficient(label_smoothing, convention, prior_vec)


def smooth_probabilities(target: Tensor, label_smoothing: float, convention: str, prior_vec: Tensor) -> Tensor:
    r"""Smooth class-probability rows t (class dimension last), rows of any sum:

    .. math::
        q(t) = t \odot (1 - s) + \bigl(t\cdot s + (1 - {\textstyle\sum_k} t_k)\,(\pi\cdot s)\bigr)\,\pi

    the affine map that sends each one-hot e_j to its smoothed target (1 − s_j)·e_j + s_j·π and the zero
    row to (π·s)·π. With a constant s (convention "uniform", or "others" with the uniform prior) it is
    torch's t(1 − ε) + ε/K for the uniform-convention ε, whatever the rows sum to (docs/theory.md).
    """
    s = class_smoothing(label_smoothing, convention, prior_vec)
    mass = target @ s + (1.0 - target.sum(-1)) * (prior_vec @ s)
    return target * (1.0 - s) + mass.unsqueeze(-1) * prior_vec


@dataclass(frozen=True)
class Coefficients:
    r"""The linear form of a smoothed, weighted cross-entropy over M rows and K classes (module docstring):
    :math:`\ell_i = m_i\,\mathrm{lse}(z_i) - a_i z_{i,y_i} - b_i\,(z_i\cdot v_i)`.

    Tensors, in the compute dtype on the target's device:
        true_coef: (M,) a_i; 0 on ignored rows and for probability targets.
        prior_coef: (M,) b_i; 0 on ignored rows.
        prior_weighted: v, (K,) shared by every row (v = w ⊙ π), or (M, K) one row each (probability
            targets: v_i = w ⊙ q_i).
        row_mass: (M,) m_i = a_i + b_i·Σ_k v_ik, the weight of the log-sum-exp in row i.
        row_weight: (M,) the row's part of the denominator of reduction="mean" (w_{y_i}; 1 per row for
            probability targets; 0 on ignored rows).
        safe_target: (M,) int64, the class of a_i's term: ignored rows read class 0, invalid classes are
            clamped into [0, K) until they are reported.
        target: (M,) the class indices as given (what ``safe_target`` was made from).
    Host-side facts (no device sync to ask):
        num_classes, ignore_index: what the coefficients were made for.
        smoothing: False when every b_i is 0 (ε = 0 with class-index targets).
        constant_prior: the common value of v's entries when v is one constant (K,) vector (no weights,
            uniform prior: 1/K), else None.
        row_scalars: (a, b) of every kept row when all kept rows share them (no weights, no prior), else None.
        index_targets: False for probability targets (every a_i is 0: no target-logit term).
    """

    true_coef: Tensor
    prior_coef: Tensor
    prior_weighted: Tensor
    row_mass: Tensor
    row_weight: Tensor
    safe_target: Tensor
    target: Tensor
    num_classes: int
    ignore_index: int
    smoothing: bool
    constant_prior: float | None = None
    row_scalars: tuple[float, float] | None = None
    index_targets: bool = True


def index_target_coefficients(
    target: Tensor,
    num_classes: int,
    label_smoothing: float,
    *,
    convention: str = "uniform",
    prior: Tensor | None = None,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    dtype: torch.dtype = torch.float32,
) -> Coefficients:
    """Coefficients for flattened class-index targets of shape (M,). Arguments must be validated already.

    Example:
        >>> import torch
        >>> c = index_target_coefficients(torch.tensor([2, -100]), 4, 0.2, convention="others")
        >>> [round(x, 4) for x in c.row_scalars], c.prior_weighted.tolist()  # a = 1 − s, b = s = 0.2 / (1 − 1/4)
        ([0.7333, 0.2667], [0.25, 0.25, 0.25, 0.25])
        >>> (c.true_coef + c.prior_coef * c.prior_weighted[2]).tolist()  # q_y = a + b·π_y = 1 − ε; ignored: 0
        [0.800000011920929, 0.0]
    """
    K = num_classes
    device = target.device
    keep = target != ignore_index
    safe_target = torch.where(keep, target, 0).clamp_(0, K - 1).long()
    common = dict(target=target, num_classes=K, ignore_index=ignore_index, smoothing=label_smoothing > 0)
    zero = torch.zeros((), dtype=dtype, device=device)
    if weight is None and prior is None:  # s is one number, known on the host
        s = class_coefficient(label_smoothing, convention, 1.0 / K)
        row_weight = keep.to(dtype)
        return Coefficients(
            true_coef=row_weight * (1.0 - s), prior_coef=row_weight * s,
            prior_weighted=torch.full((K,), 1.0 / K, dtype=dtype, device=device),
            row_mass=row_weight * ((1.0 - s) + s), row_weight=row_weight, safe_target=safe_target,
            constant_prior=1.0 / K, row_scalars=(1.0 - s, s), **common,
        )  # fmt: skip
    prior_vec = prior_vector(prior, K, dtype=dtype, device=device)
    w = torch.ones(K, dtype=dtype, device=device) if weight is None else weight.to(dtype=dtype, device=device)
    s = class_smoothing(label_smoothing, convention, prior_vec)[safe_target]
    row_weight = torch.where(keep, w[safe_target], zero)
    true_coef = (1.0 - s) * row_weight
    prior_coef = torch.where(keep, s, zero)
    v = w * prior_vec
    return Coefficients(
        true_coef=true_coef, prior_coef=prior_coef, prior_weighted=v, row_mass=true_coef + prior_coef * v.sum(),
        row_weight=row_weight, safe_target=safe_target, **common,
    )  # fmt: skip


def probability_target_coefficients(
    target: Tensor,
    label_smoothing: float,
    *,
    convention: str = "uniform",
    prior: Tensor | None = None,
    weight: Tensor | None = None,
    dtype: torch.dtype = torch.float32,
) -> Coefficients:
    """Coefficients for flattened class-probability targets (M, K): a_i = 0, b_i = 1, v_i = w ⊙ q_i.

    q_i is the smoothed row (module docstring); the mean's denominator counts every row once, as in torch.
    """
    M, K = target.shape
    device = target.device
    q = smooth_probabilities(target.to(dtype), label_smoothing, convention, prior_vector(prior, K, dtype=dtype,
                                                                                         device=device))  # fmt: skip
    v = q if weight is None else q * weight.to(dtype)
    ones = torch.ones(M, dtype=dtype, device=device)
    index = torch.zeros(M, dtype=torch.long, device=device)
    return Coefficients(
        true_coef=torch.zeros(M, dtype=dtype, device=device), prior_coef=ones, prior_weighted=v, row_mass=v.sum(1),
        row_weight=ones, safe_target=index, target=index, num_classes=K, ignore_index=-100, smoothing=True,
        index_targets=False,
    )  # fmt: skip


def coefficients(args: V.CrossEntropyArgs, dtype: torch.dtype) -> Coefficients:
    """The coefficients of validated cross-entropy arguments (class indices or probabilities)."""
    if args.soft:
        return probability_target_coefficients(
            args.target, args.label_smoothing, convention=args.convention, prior=args.prior, weight=args.weight,
            dtype=dtype,
        )  # fmt: skip
    return index_target_coefficients(
        args.target, args.num_classes, args.label_smoothing, convention=args.convention, prior=args.prior,
        weight=args.weight, ignore_index=args.ignore_index, dtype=dtype,
    )  # fmt: skip


def target_distribution(
    target: Tensor,
    num_classes: int,
    label_smoothing: float,
    convention: str = "uniform",
    prior: Tensor | None = None,
) -> Tensor:
    r"""The dense soft target q for class indices, for inspection and tests.

    .. math::
        q = (1-s_y)\,e_y + s_y\,\pi, \quad s_y = \varepsilon \text{ (uniform) or }
        \varepsilon / (1-\pi_y) \text{ (others)}

    Args:
        target: integer class indices of any shape S, values in [0, K).
        num_classes: K >= 2.
        label_smoothing: ε in [0, 1].
        convention: "uniform" or "others" (module docstring).
        prior: optional (K,) probability vector π; uniform 1/K when None.

    Returns:
        float32 tensor of shape S + (K,) whose rows sum to 1 (float64 if ``prior`` is float64).

    Example:
        >>> import torch, labelsmooth
        >>> labelsmooth.target_distribution(torch.tensor([0]), 4, 0.3, convention="others")
        tensor([[0.7000, 0.1000, 0.1000, 0.1000]])
        >>> labelsmooth.target_distribution(torch.tensor([0]), 4, 0.4)  # uniform: 0.6 + 0.4/4 on the target
        tensor([[0.7000, 0.1000, 0.1000, 0.1000]])
    """
    K = V.check_num_classes(num_classes)
    eps = V.check_probability("label_smoothing", label_smoothing)
    convention = V.check_convention(convention)
    V.check_prior(prior, K, convention)
    target = V.check_index_target(target, None, where="target_distribution")
    V.check_target_range(target, K, None)
    dtype = prior.dtype if prior is not None else torch.float32
    prior_vec = prior_vector(prior, K, dtype=dtype, device=target.device)
    onehot = torch.nn.functional.one_hot(target.long(), K).to(dtype)
    return smooth_probabilities(onehot, eps, convention, prior_vec)
