"""labelsmooth: exact label smoothing for PyTorch.

Every formula is one hop from here:

- losses (:mod:`labelsmooth.losses`): :func:`cross_entropy`, :func:`binary_cross_entropy_with_logits`,
  :func:`confidence_penalty`, and their modules (:mod:`labelsmooth.modules`);
- targets (:mod:`labelsmooth.targets`): :func:`target_distribution`, the two conventions and priors;
- conversions (:mod:`labelsmooth.conventions`): :func:`convert_smoothing` between conventions and frameworks;
- theory (:mod:`labelsmooth.theory`): :func:`decompose` (NLL + KL) and :func:`optimal_logit_gap`;
- Liger-Kernel's fused linear loss (:class:`LigerCompatibleFusedLinearCrossEntropyLoss`, :mod:`labelsmooth.liger`);
- distributed (:mod:`labelsmooth.distributed`, import it explicitly): the exact vocab-parallel losses.

The experiment harness (:mod:`labelsmooth.experiment`) is an optional extra and is never imported here.
"""

from labelsmooth.conventions import FRAMEWORKS, convert_smoothing
from labelsmooth.fused import fused_cross_entropy
from labelsmooth.liger import LigerCompatibleFusedLinearCrossEntropyLoss, LossAndZLoss
from labelsmooth.linear import linear_cross_entropy
from labelsmooth.losses import binary_cross_entropy_with_logits, confidence_penalty, cross_entropy
from labelsmooth.modules import BCEWithLogitsLoss, ConfidencePenaltyLoss, CrossEntropyLoss, LinearCrossEntropyLoss
from labelsmooth.targets import target_distribution
from labelsmooth.theory import Decomposition, decompose, optimal_logit_gap

__version__ = "0.1.0"

__all__ = [
    "FRAMEWORKS",
    "LigerCompatibleFusedLinearCrossEntropyLoss",
    "LinearCrossEntropyLoss",
    "LossAndZLoss",
    "BCEWithLogitsLoss",
    "ConfidencePenaltyLoss",
    "CrossEntropyLoss",
    "Decomposition",
    "binary_cross_entropy_with_logits",
    "confidence_penalty",
    "convert_smoothing",
    "cross_entropy",
    "decompose",
    "fused_cross_entropy",
    "linear_cross_entropy",
    "optimal_logit_gap",
    "target_distribution",
]
