r"""Test-set metrics from logits: accuracy, NLL, calibration (ECE, adaptive ECE, Brier), confidence and
the logit gap.

With logits :math:`z_i \in \mathbb{R}^K`, :math:`p_i = \mathrm{softmax}(z_i)`, prediction
:math:`\hat y_i = \arg\max_k p_{ik}` and confidence :math:`c_i = \max_k p_{ik}` over :math:`n` examples:

- accuracy :math:`\frac1n\sum_i [\hat y_i = y_i]` (in float64; torchmetrics' float32 would round it);
- NLL :math:`-\frac1n\sum_i \log p_{i y_i}` (nats);
- ECE (Guo et al. 2017, §2): 15 equal-width bins :math:`B_m` of confidence on (0, 1],
  :math:`\sum_m \frac{|B_m|}{n}\,|\mathrm{acc}(B_m) - \mathrm{conf}(B_m)|`
  (torchmetrics ``multiclass_calibration_error``, ``norm="l1"``);
- adaptive ECE (Nguyen & O'Connor 2015; Nixon et al. 2019): the same sum over 15 equal-mass bins, the
  examples sorted by confidence and split into 15 runs of sizes differing by at most one;
- Brier score (Brier 1950, the multi-class form): :math:`\frac1n\sum_i\sum_k (p_{ik} - [k = y_i])^2`,
  in [0, 2];
- confidence :math:`\frac1n\sum_i c_i`;
- logit gap :math:`\frac1n\sum_i \big(z_{i\hat y_i} - \frac{1}{K-1}\sum_{k\ne\hat y_i} z_{ik}\big)`: the
  predicted class's logit minus the mean of the others'. At the minimiser of label smoothing every other
  logit is equal, so this is exactly :func:`labelsmooth.optimal_logit_gap` there.

For reliability diagrams, :func:`reliability_bins` gives the per-bin counts, accuracies and confidences of
the same 15 equal-width bins (``train()`` stores them next to the metrics, as ``reliability``).

Everything is computed in float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

N_BINS = 15
METRICS = ("accuracy", "nll", "ece", "adaptive_ece", "brier", "confidence", "logit_gap")


def evaluate(logits: Tensor, target: Tensor, n_bins: int = N_BINS) -> dict[str, float]:
    """Every metric of the module docstring, as floats keyed by :data:`METRICS`.

    Args:
        logits: (n, K) raw scores.
        target: (n,) class indices in [0, K).
        n_bins: bins of both ECEs.

    Example:
        >>> z = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]); y = torch.tensor([0, 2])
        >>> m = evaluate(z, y)
        >>> m["accuracy"], round(m["logit_gap"], 3)
        (0.5, 1.5)
    """
    from torchmetrics.functional.classification import multiclass_calibration_error

    if logits.dim() != 2 or target.shape != logits.shape[:1] or logits.shape[0] == 0:
        raise ValueError(
            f"Expected logits (n, K) with n >= 1 and target (n,), "
            f"but got {tuple(logits.shape)} and {tuple(target.shape)}"
        )
    z = logits.detach().to(torch.float64)
    y = target.detach().long()
    K = z.shape[1]
    p = torch.softmax(z, dim=1)
    accuracy = (p.argmax(dim=1) == y).double().mean()
    ece = multiclass_calibration_error(p, y, num_classes=K, n_bins=n_bins, norm="l1")
    return {
        "accuracy": float(accuracy),
        "nll": float(F.cross_entropy(z, y)),
        "ece": float(ece),
        "adaptive_ece": adaptive_ece(p, y, n_bins),
        "brier": brier_score(p, y),
        "confidence": float(p.max(dim=1).values.mean()),
        "logit_gap": logit_gap(z),
    }


def reliability_bins(logits: Tensor, target: Tensor, n_bins: int = N_BINS) -> dict[str, list]:
    r"""Equal-width confidence bins on (0, 1] for a reliability diagram (Guo et al. 2017, §2).

    With :math:`c_i = \max_k \mathrm{softmax}(z_i)_k`, bin :math:`m` holds the :math:`c_i \in ((m-1)/M, m/M]`;
    for each bin: ``count`` :math:`|B_m|`, ``accuracy`` acc(B_m) and ``confidence`` conf(B_m) (None if empty).
    ECE = Σ_m |B_m|/n · |acc − conf|.

    Args:
        logits: (n, K) tensor. target: (n,) class indices.

    Example:
        >>> z = torch.tensor([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0]])  # confidences 1/3 (wrong) and 0.909 (right)
        >>> b = reliability_bins(z, torch.tensor([1, 0]), n_bins=2)
        >>> b["count"], b["accuracy"], [round(c, 3) for c in b["confidence"]]
        ([1, 1], [0.0, 1.0], [0.333, 0.909])
    """
    p = torch.softmax(logits.detach().double(), dim=1)
    conf, pred = p.max(dim=1)
    correct = (pred == target).double()
    idx = (torch.ceil(conf * n_bins).long() - 1).clamp(0, n_bins - 1)
    count = torch.bincount(idx, minlength=n_bins)
    acc = torch.bincount(idx, weights=correct, minlength=n_bins)
    cf = torch.bincount(idx, weights=conf, minlength=n_bins)
    c = count.tolist()
    return {
        "count": c,
        "accuracy": [float(a / n) if n else None for a, n in zip(acc.tolist(), c)],
        "confidence": [float(f / n) if n else None for f, n in zip(cf.tolist(), c)],
    }


def adaptive_ece(probs: Tensor, target: Tensor, n_bins: int = N_BINS) -> float:
    """ECE over equal-mass bins: sort by confidence, split into ``n_bins`` runs (sizes differ by <= 1).

    Example:
        >>> p = torch.tensor([[0.9, 0.1], [0.6, 0.4]]); y = torch.tensor([0, 1])
        >>> round(adaptive_ece(p, y, n_bins=2), 3)  # bins {0.6: wrong}, {0.9: right}: (0.6 + 0.1) / 2
        0.35
    """
    conf, pred = probs.max(dim=1)
    order = torch.argsort(conf, stable=True)
    conf, correct = conf[order].double(), (pred[order] == target[order]).double()
    n = conf.numel()
    total = torch.zeros((), dtype=torch.float64)
    for idx in torch.tensor_split(torch.arange(n), min(n_bins, n)):
        total += idx.numel() / n * (correct[idx].mean() - conf[idx].mean()).abs()
    return float(total)


def brier_score(probs: Tensor, target: Tensor) -> float:
    """Multi-class Brier score: mean over examples of the squared distance of p to the one-hot target."""
    onehot = F.one_hot(target, probs.shape[1]).to(probs.dtype)
    return float(((probs - onehot) ** 2).sum(dim=1).mean())


def logit_gap(logits: Tensor) -> float:
    """Mean over examples of the top logit minus the mean of the other K − 1 logits."""
    K = logits.shape[1]
    top = logits.max(dim=1).values
    return float((top - (logits.sum(dim=1) - top) / (K - 1)).mean())


#: The metrics of a run under the protocol, beyond :data:`METRICS` (all on the test part unless ``val_``):
#: the fitted ``temperature`` T, and ``ts_*`` = the metric of the test logits divided by T.
PROTOCOL_METRICS = (
    *METRICS,
    "temperature",
    "ts_nll",
    "ts_ece",
    "ts_adaptive_ece",
    "ts_brier",
    "val_accuracy",
    "val_nll",
)


def protocol_metrics(val_logits: Tensor, y_val: Tensor, test_logits: Tensor, y_test: Tensor) -> dict[str, float]:
    """Test metrics raw and after temperature scaling fitted on validation, plus validation accuracy and NLL.

    T comes from :func:`labelsmooth.experiment.calibration.fit_temperature` on ``val_logits`` only; the
    test logits are read for nothing but the returned test numbers. Keys: :data:`PROTOCOL_METRICS`.

    Example:
        >>> z = torch.tensor([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0]]); y = torch.tensor([0, 1, 1])
        >>> m = protocol_metrics(z, y, z, y)
        >>> m["accuracy"] == m["val_accuracy"], m["temperature"] > 1, m["ts_nll"] < m["nll"]
        (True, True, True)
    """
    from labelsmooth.experiment.calibration import fit_temperature

    out = evaluate(test_logits, y_test)
    t = fit_temperature(val_logits, y_val)
    scaled = evaluate(test_logits.double() / t, y_test)
    out["temperature"] = t
    for name in ("nll", "ece", "adaptive_ece", "brier"):
        out[f"ts_{name}"] = scaled[name]
    z = val_logits.detach().double()
    out["val_accuracy"] = float((z.argmax(dim=1) == y_val).double().mean())
    out["val_nll"] = float(F.cross_entropy(z, y_val.long()))
    return out
