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
:math:`m_i = a_i + b_i \sum_k v_k`. :func:`index_target_coefficients` computes those numbers once; the
reference loss, the fused kernels and the distributed loss all consume them.

Class-probability targets extend the map linearly: a one-hot row :math:`e_j` becomes
:math:`(1-s_j)e_j + s_j\pi`, so a probability row t becomes :math:`t \odot (1-s) + (t\cdot s)\,\pi`
(for "uniform" that is torch's :math:`t(1-\varepsilon) + \varepsilon/K`).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from labelsmooth import _validation as V


def prior_vector(prior: Tensor | None, num_classes: int, *, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The prior π as a (K,) tensor: ``prior`` itself, or the uniform 1/K."""
    if prior is None:
        return torch.full((num_classes,), 1.0 / num_classes, dtype=dtype, device=device)
    return prior.detach().to(dtype=dtype, device=device)


def class_smoothing(label_smoothing: float, convention: str, prior_vec: Tensor) -> Tensor:
    """The (K,) coefficients s_j with q(e_j) = (1 − s_j)·e_j + s_j·π.

    "uniform": s_j = ε. "others": s_j = ε / (1 − π_j), so that the true class keeps exactly 1 − ε.
    """
    if convention == "uniform":
        return torch.full_like(prior_vec, label_smoothing)
    return label_smoothing / (1.0 - prior_vec)


def smooth_probabilities(target: Tensor, label_smoothing: float, convention: str, prior_vec: Tensor) -> Tensor:
    """Smooth class-probability rows (class dimension last): t ⊙ (1 − s) + (t · s) π."""
    s = class_smoothing(label_smoothing, convention, prior_vec)
    return target * (1.0 - s) + (target @ s).unsqueeze(-1) * prior_vec


class IndexTargetCoefficients:
    """The linear form of a smoothed, weighted cross-entropy with class-index targets (module docstring).

    Tensors, for M flattened rows and K classes:
        true_coef: (M,) a_i = (1 − s_{y_i})·w_{y_i}; 0 on ignored rows.
        prior_coef: (M,) b_i = s_{y_i}; 0 on ignored rows.
        prior_weighted: (K,) v = w ⊙ π.
        row_weight: (M,) w_{y_i}; 0 on ignored rows. Its sum divides the loss for reduction="mean".
        safe_target: (M,) the target with ignored rows replaced by class 0 (and clamped to [0, K)), safe for gather.
        row_mass: (M,) m_i = Σ_k w_k q_ik = a_i + b_i·Σ_k v_k: the weight of the log-sum-exp in row i.
    Host-side facts (no device sync to ask):
        smoothing: False when every b_i is 0 because ε = 0.
        constant_prior: v's common value when it is constant (no weights, uniform prior: 1/K), else None.
        row_scalars: (a, b) of every kept row when all kept rows share them (no weights, no prior), else None.
        target, ignore_index, num_classes: what the coefficients were made from.

    Without weights and prior every tensor follows from ``row_scalars``, ``constant_prior`` and the target,
    and is made only when first read (a kernel that takes the scalars never makes them); otherwise
    :func:`index_target_coefficients` computes them at once.
    """

    def __init__(
        self, target: Tensor, num_classes: int, *, ignore_index: int, dtype: torch.dtype, smoothing: bool,
        row_scalars: tuple[float, float] | None = None, constant_prior: float | None = None, **tensors: Tensor,
    ) -> None:  # fmt: skip
        self.target, self.num_classes, self.ignore_index, self.dtype = target, num_classes, ignore_index, dtype
        self.smoothing, self.row_scalars, self.constant_prior = smoothing, row_scalars, constant_prior
        if row_scalars is None and not {"true_coef", "prior_coef", "prior_weighted", "row_weight"} <= set(tensors):
            raise ValueError(f"Expected the coefficient tensors without row_scalars, but got {sorted(tensors)}")
        self.__dict__.update(tensors)  # computed ones stand in for the lazy properties below

    @functools.cached_property
    def keep(self) -> Tensor:
        """(M,) True on the rows whose target is not ``ignore_index``."""
        return self.target != self.ignore_index

    @functools.cached_property
    def safe_target(self) -> Tensor:
        return _safe_target(self.target, self.keep, self.num_classes)

    @functools.cached_property
    def row_weight(self) -> Tensor:
        return self.keep.to(self.dtype)

    @functools.cached_property
    def true_coef(self) -> Tensor:
        return self.row_weight * self.row_scalars[0]

    @functools.cached_property
    def prior_coef(self) -> Tensor:
        return self.row_weight * self.row_scalars[1]

    @functools.cached_property
    def prior_weighted(self) -> Tensor:
        return torch.full((self.num_classes,), self.constant_prior, dtype=self.dtype, device=self.target.device)

    @functools.cached_property
    def row_mass(self) -> Tensor:
        if self.row_scalars is not None:  # Σ_k v_k = 1: m_i = a_i + b_i on kept rows
            return self.row_weight * sum(self.row_scalars)
        return self.true_coef + self.prior_coef * self.prior_weighted.sum()


def _safe_target(target: Tensor, keep: Tensor, num_classes: int) -> Tensor:
    """Ignored rows read class 0, and the clamp keeps invalid classes in bounds until they are reported."""
    return torch.where(keep, target, 0).clamp_(0, num_classes - 1)


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
) -> IndexTargetCoefficients:
    """Coefficients for flattened class-index targets of shape (M,). Arguments must be validated already.

    Without weights and prior (the common case) s is one number, known on the host: the coefficients are
    two scalars and the tensors are made only if a consumer reads them. Otherwise s and w are gathered per row.

    Example:
        >>> import torch
        >>> c = index_target_coefficients(torch.tensor([2, -100]), 4, 0.2, convention="others")
        >>> [round(x, 4) for x in c.row_scalars], c.prior_weighted.tolist()  # a = 1 − s, b = s = 0.2 / (1 − 1/4)
        ([0.7333, 0.2667], [0.25, 0.25, 0.25, 0.25])
        >>> (c.true_coef + c.prior_coef * c.prior_weighted[2]).tolist()  # q_y = a + b·π_y = 1 − ε; ignored: 0
        [0.800000011920929, 0.0]
    """
    common = dict(ignore_index=ignore_index, dtype=dtype, smoothing=label_smoothing > 0)
    if weight is None and prior is None:
        s = label_smoothing if convention == "uniform" else label_smoothing / (1.0 - 1.0 / num_classes)
        return IndexTargetCoefficients(target, num_classes, row_scalars=(1.0 - s, s), constant_prior=1.0 / num_classes,
                                       **common)  # fmt: skip
    device = target.device
    keep = target != ignore_index
    safe_target = _safe_target(target, keep, num_classes)
    prior_vec = prior_vector(prior, num_classes, dtype=dtype, device=device)
    w = torch.ones(num_classes, dtype=dtype, device=device) if weight is None else weight.to(dtype=dtype, device=device)
    s = class_smoothing(label_smoothing, convention, prior_vec)[safe_target]
    row_weight = torch.where(keep, w[safe_target], torch.zeros((), dtype=dtype, device=device))
    return IndexTargetCoefficients(
        target, num_classes,
        true_coef=(1.0 - s) * row_weight,
        prior_coef=torch.where(keep, s, torch.zeros((), dtype=dtype, device=device)),
        prior_weighted=w * prior_vec,
        row_weight=row_weight,
        keep=keep,
        safe_target=safe_target,
        **common,
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
    if not isinstance(target, Tensor) or target.is_floating_point() or target.dtype == torch.bool:
        raise TypeError(
            f"Expected argument `target` to be a tensor of integer class indices, but got {getattr(target, 'dtype', type(target).__name__)}"
        )
    if target.numel() and bool(((target < 0) | (target >= K)).any()):
        bad = target[(target < 0) | (target >= K)].flatten()[0].item()
        raise ValueError(f"Expected argument `target` to hold class indices in [0, {K}), but got {bad}")
    dtype = prior.dtype if prior is not None else torch.float32
    prior_vec = prior_vector(prior, K, dtype=dtype, device=target.device)
    onehot = torch.nn.functional.one_hot(target.long(), K).to(dtype)
    return smooth_probabilities(onehot, eps, convention, prior_vec)
