r"""Conversions between what different papers and frameworks mean by "label smoothing ε".

The same soft target (uniform prior, K classes) has three common names:

==========  ===================================  ===========================================
name        true class keeps                     each other class gets
==========  ===================================  ===========================================
uniform     1 − ε_u + ε_u/K                      ε_u/K      (torch, Keras, timm, Optax, HF, ...)
others      1 − ε_o                              ε_o/(K−1)  (fairseq, Megatron)
gamma       γ                                    (1 − γ)/(K−1)   (the seed paper, Mezzini 2018)
==========  ===================================  ===========================================

so ε_o = ε_u (K−1)/K, γ = 1 − ε_o, and the true class stays strictly the most likely exactly when
γ > 1/K, i.e. ε_u < 1. Sources: each framework's own code (docs/theory.md).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from labelsmooth import _validation as V

#: Framework name -> the convention its ``label_smoothing``/``epsilon`` argument uses.
FRAMEWORKS: dict[str, str] = {
    "torch": "uniform",
    "keras": "uniform",
    "timm": "uniform",
    "optax": "uniform",
    "huggingface": "uniform",
    "liger": "uniform",
    "apex": "uniform",
    "fairseq": "others",
    "megatron": "others",
}

#: Every name :func:`convert_smoothing` accepts.
SETTINGS = ("uniform", "others", "gamma", *FRAMEWORKS)


def canonical_setting(name: object, argument: str) -> str:
    """Map a convention or framework name to "uniform", "others" or "gamma"."""
    V.check_choice(argument, name, SETTINGS)
    return FRAMEWORKS.get(name, name)  # type: ignore[arg-type]


def to_uniform(value: float, num_classes: int, setting: str) -> float:
    """ε_u, the uniform-convention smoothing with the same soft target (no validation of the result)."""
    K = num_classes
    if setting == "uniform":
        return value
    if setting == "others":
        return value * K / (K - 1)
    return (1.0 - value) * K / (K - 1)  # gamma


def class_coefficient(label_smoothing: float, convention: str, prior: float | Tensor) -> float | Tensor:
    r"""The coefficient :math:`s_j` with :math:`q(e_j) = (1-s_j)\,e_j + s_j\,\pi` for a class of prior mass π_j.

    "uniform": s_j = ε. "others": s_j = ε / (1 − π_j), so that the true class keeps exactly 1 − ε (with the
    uniform prior π_j = 1/K that is ε·K/(K−1)); for a class that holds all the prior mass (K = 1) there
    is no other class to share ε, and s_j = 0: the target stays e_j, as for "uniform". ``prior`` is a
    number or a tensor of class masses.
    """
    if isinstance(prior, Tensor):
        if convention == "uniform":
            return torch.full_like(prior, label_smoothing)
        return torch.where(prior < 1.0, label_smoothing / (1.0 - prior).clamp_min(torch.finfo(prior.dtype).tiny), 0.0)
    if convention == "uniform":
        return label_smoothing
    return label_smoothing / (1.0 - prior) if prior < 1.0 else 0.0


def epsilon_limit(num_classes: int, convention: str) -> float:
    """The ε (exclusive) at which the true class stops being strictly the most likely: 1 for "uniform",
    (K − 1)/K for "others" (both are γ = 1/K)."""
    return 1.0 if convention == "uniform" else (num_classes - 1) / num_classes


def gamma_limit(num_classes: int) -> float:
    """The γ (exclusive lower bound) at which the true class stops being strictly the most likely: 1/K."""
    return 1.0 / num_classes


def from_uniform(eps_uniform: float, num_classes: int, setting: str) -> float:
    K = num_classes
    if setting == "uniform":
        return eps_uniform
    others = eps_uniform * (K - 1) / K
    return others if setting == "others" else 1.0 - others


def convert_smoothing(value: float, num_classes: int, source: str, target: str) -> float:
    r"""Convert a smoothing setting between conventions or frameworks, keeping the soft target identical.

    .. math::
        \varepsilon_{\text{others}} = \varepsilon_{\text{uniform}}\,\frac{K-1}{K}, \qquad
        \gamma = 1 - \varepsilon_{\text{others}} = 1 - \varepsilon_{\text{uniform}} + \varepsilon_{\text{uniform}}/K

    Args:
        value: the setting in ``source``'s terms: ε, or γ for "gamma".
        num_classes: K >= 2.
        source, target: "uniform", "others", "gamma", or a framework name: torch, keras, timm, optax,
            huggingface, liger, apex (uniform), fairseq, megatron (others).

    Returns:
        The setting in ``target``'s terms.

    Raises:
        ValueError: if the setting leaves the true class no longer strictly the most likely
            (γ <= 1/K, i.e. ε_uniform >= 1), if it is negative, or if a name is unknown.

    Example:
        >>> import labelsmooth
        >>> round(labelsmooth.convert_smoothing(0.1, 10, "fairseq", "torch"), 6)
        0.111111
        >>> round(labelsmooth.convert_smoothing(0.9, 10, "gamma", "uniform"), 6)
        0.111111
    """
    K = V.check_num_classes(num_classes)
    src = canonical_setting(source, "source")
    dst = canonical_setting(target, "target")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"Expected argument `value` to be a number, but got {value!r}")
    value = float(value)
    if src == "gamma":
        if not gamma_limit(K) < value <= 1.0:
            raise ValueError(
                f"Expected argument `value` (γ, the probability on the true class) to be in (1/K, 1] = "
                f"({gamma_limit(K):.6g}, 1] so the true class stays the most likely, but got {value}"
            )
    elif value < 0:
        raise ValueError(f"Expected argument `value` (ε in the {source!r} convention) to be >= 0, but got {value}")
    eps_u = to_uniform(value, K, src)
    if eps_u >= 1.0:
        limit = epsilon_limit(K, src)
        raise ValueError(
            f"Expected argument `value` (ε in the {source!r} convention) to be below {limit:.6g} for K={K}, "
            f"so that the true class stays strictly the most likely (γ > 1/K), but got {value}"
        )
    return from_uniform(eps_u, K, dst)
