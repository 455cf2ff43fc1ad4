r"""torchtune: a label-smoothed linear cross-entropy with torchtune's ``SFTLoss`` protocol.

Select it in a fine-tuning recipe's config with one line (extra ``torchtune``)::

    loss:
      _component_: labelsmooth.integrations.torchtune.LinearCrossEntropyLoss
      label_smoothing: 0.1

The protocol (torchtune/modules/loss/loss_types.py on torchtune's main branch): the recipe calls
``loss.set_model_output(model)`` once, which sets ``model.skip_output_layer = True`` so the model returns
its final (normed) hidden states instead of logits, and keeps ``model.output`` (an ``nn.Linear`` or a
``TiedLinear``); each step then calls ``loss(hidden, targets)`` with targets already shifted by the recipe
(``ignore_index`` at the last position). The loss is :func:`labelsmooth.linear_cross_entropy` on those
hidden states, chunked, so the (tokens × vocabulary) logits are never materialised.

Normalisation, as torchtune's own LinearCrossEntropyLoss: the mean over non-ignored tokens,
:math:`\sum_i \ell_i / \max(1, n)`; with no token left it returns the (zero) sum, so data-parallel
ranks stay in step. The recipes multiply it back by the token count to accumulate gradients exactly.

torchtune 0.6.1, the newest release, has neither ``SFTLoss`` nor ``skip_output_layer``: its models
always return logits. This class then raises a clear error when handed logits instead of hidden states.
Where ``torchtune.modules.loss.loss_types.SFTLoss`` exists, the class is registered as its virtual
subclass, so the recipes' ``isinstance(loss, SFTLoss)`` check calls ``set_model_output``.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn

import labelsmooth as ls


class LinearCrossEntropyLoss(nn.Module):
    r"""Label-smoothed cross-entropy from hidden states and the model's output projection (``SFTLoss``).

    .. math::
        L = \frac{1}{\max(1, n)} \sum_{i:\,y_i \ne \text{ignore}} \ell(W h_i + b,\ y_i)

    with :math:`\ell` the loss of :func:`labelsmooth.cross_entropy` (``label_smoothing``, ``convention``,
    ``prior``) and :math:`W, b` the weight and bias of ``model.output``.

    Args:
        label_smoothing: ε in ``convention``'s terms.
        convention: "uniform" (torch's ε) or "others" (fairseq's).
        prior: optional (V,) distribution the smoothing mass is spread by.
        ignore_index: target value that contributes nothing (torchtune's CROSS_ENTROPY_IGNORE_IDX, −100).
        **loss_kwargs: further keywords of :func:`labelsmooth.linear_cross_entropy` (``chunk_size``, ...).

    Shape:
        - outputs: (B, S, D) or (N, D) hidden states.
        - targets: (B, S) or (N,) token ids, already shifted.

    Example:
        >>> import torch
        >>> from labelsmooth.integrations.torchtune import LinearCrossEntropyLoss
        >>> class Decoder(torch.nn.Module):  # a stand-in with torchtune's attributes
        ...     def __init__(self):
        ...         super().__init__(); self.output = torch.nn.Linear(8, 50, bias=False)
        ...         self.skip_output_layer = False
        >>> model = Decoder(); loss_fn = LinearCrossEntropyLoss(label_smoothing=0.1)
        >>> loss_fn.set_model_output(model); model.skip_output_layer
        True
        >>> loss_fn(torch.randn(2, 5, 8), torch.randint(0, 50, (2, 5))).shape
        torch.Size([])
    """

    def __init__(
        self,
        label_smoothing: float = 0.1,
        convention: str = "uniform",
        prior: Tensor | None = None,
        ignore_index: int = -100,
        **loss_kwargs: Any,
    ):
        super().__init__()
        for name in ("input", "linear_weight", "target", "linear_bias", "reduction"):
            if name in loss_kwargs:
                raise TypeError(
                    f"LinearCrossEntropyLoss: argument `{name}` is set by the loss itself and cannot be passed"
                )
        try:
            inspect.signature(ls.linear_cross_entropy).bind_partial(**loss_kwargs)
        except TypeError as exc:
            raise TypeError(f"LinearCrossEntropyLoss: unknown loss keyword(s) {sorted(loss_kwargs)} ({exc})") from None
        # Check the settings now, on one row, rather than at the first training step.
        K = prior.shape[-1] if isinstance(prior, Tensor) and prior.dim() == 1 and prior.shape[-1] >= 2 else 2
        ls.cross_entropy(
            torch.zeros(1, K, dtype=torch.float64), torch.zeros(1, dtype=torch.long),
            ignore_index=ignore_index, label_smoothing=label_smoothing, convention=convention, prior=prior,
        )  # fmt: skip
        self.label_smoothing = label_smoothing
        self.convention = convention
        self.prior = prior
        self.ignore_index = ignore_index
        self.loss_kwargs = loss_kwargs
        self.linear_projection: Any = None

    def apply_compile_strategy(self, *args: Any, **kwargs: Any) -> LinearCrossEntropyLoss:
        """Left uncompiled: the loss is a chunked autograd Function already (torchtune's own does the same)."""
        return self

    def set_model_output(self, model: nn.Module) -> None:
        """Make ``model`` return hidden states (``skip_output_layer``) and keep its output projection."""
        if not hasattr(model, "output"):
            raise ValueError(
                "Expected argument `model` to be a torchtune TransformerDecoder with an `output` projection, but got "
                f"{type(model).__name__} without one"
            )
        model.skip_output_layer = True
        self.linear_projection = model.output

    def _weight_and_bias(self) -> tuple[Tensor, Tensor | None]:
        proj = self.linear_projection
        if proj is None:
            raise RuntimeError("LinearCrossEntropyLoss: call set_model_output(model) before the loss")
        if hasattr(proj, "tied_module"):  # torchtune's TiedLinear: the embedding's weight, no bias
            return proj.tied_module.weight, None
        return proj.weight, getattr(proj, "bias", None)

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        W, b = self._weight_and_bias()
        if not isinstance(outputs, Tensor) or outputs.shape[-1] != W.shape[1]:
            got = tuple(outputs.shape) if isinstance(outputs, Tensor) else type(outputs).__name__
            raise ValueError(
                f"Expected argument `outputs` to be hidden states of width {W.shape[1]} (the output projection's input), "
                f"but got {got}; if the last size is the vocabulary ({W.shape[0]}), the model returned logits: its "
                "torchtune version does not honour skip_output_layer (torchtune 0.6.1 does not)"
            )
        total = ls.linear_cross_entropy(
            outputs, W, targets, linear_bias=b, reduction="sum", ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing, convention=self.convention, prior=self.prior, **self.loss_kwargs,
        )  # fmt: skip
        n = targets.ne(self.ignore_index).sum()
        return total / n.clamp(min=1).to(total.dtype)


def _register_with_torchtune() -> bool:
    """Register as a virtual subclass of torchtune's SFTLoss where that class exists (torchtune > 0.6.1)."""
    try:
        import torchtune  # noqa: F401  (the package first: torchtune.data has an import cycle otherwise)
        from torchtune.modules.loss.loss_types import SFTLoss
    except ImportError:
        return False
    SFTLoss.register(LinearCrossEntropyLoss)
    return True


SFT_LOSS_REGISTERED = _register_with_torchtune()
