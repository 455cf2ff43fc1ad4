r"""Temperature scaling (Guo et al. 2017, §4.2): one scalar :math:`T > 0` fitted on held-out logits.

:math:`T^\star = \arg\min_{T>0} -\frac1n \sum_i \log \mathrm{softmax}(z_i / T)_{y_i}` on the *validation*
logits; the test logits are then divided by :math:`T^\star`. Dividing by one positive scalar keeps every
argmax, so accuracy does not change; only confidence does. The 1-D problem is solved over
:math:`\log T \in [\log 0.01, \log 100]` with ``scipy.optimize.minimize_scalar`` (bounded Brent,
``xatol = 1e-7``), in float64.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> z = 3 * torch.randn(20000, 5, generator=g, dtype=torch.float64)
    >>> y = torch.multinomial(torch.softmax(z / 2.0, dim=1), 1, generator=g).squeeze(1)  # true T = 2
    >>> round(fit_temperature(z, y), 1)
    2.0
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

LOG_T_BOUNDS = (math.log(0.01), math.log(100.0))


def fit_temperature(logits: Tensor, target: Tensor) -> float:
    """The T > 0 minimising the mean NLL of ``softmax(logits / T)`` (module docstring).

    Args:
        logits: (n, K) finite scores, n >= 1. target: (n,) class indices in [0, K).

    Raises:
        ValueError: naming the argument for wrong shapes, non-finite logits or labels out of range.
    """
    from scipy.optimize import minimize_scalar

    if logits.dim() != 2 or logits.shape[0] == 0 or target.shape != logits.shape[:1]:
        raise ValueError(
            f"Expected `logits` (n, K) with n >= 1 and `target` (n,), "
            f"but got {tuple(logits.shape)} and {tuple(target.shape)}"
        )
    z = logits.detach().to(torch.float64)
    y = target.detach().long()
    if not bool(torch.isfinite(z).all()):
        raise ValueError("Expected `logits` to be finite, but got NaN or infinite values")
    if int(y.min()) < 0 or int(y.max()) >= z.shape[1]:
        raise ValueError(f"Expected `target` in [0, {z.shape[1]}), but got values in [{int(y.min())}, {int(y.max())}]")

    def nll(log_t: float) -> float:
        return float(F.cross_entropy(z / math.exp(log_t), y))

    result = minimize_scalar(nll, bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-7})
    return float(math.exp(result.x))
