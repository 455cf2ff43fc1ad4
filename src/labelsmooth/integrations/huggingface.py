r"""Hugging Face ``transformers``: label smoothing for the Trainer and for causal LMs without full logits.

Two entry points (extra ``huggingface``: ``pip install 'labelsmooth[huggingface]'``):

- :func:`loss_func` builds a ``compute_loss_func`` for ``Trainer(compute_loss_func=...)``: from the model's
  logits, with the causal shift, ``ignore_index=-100`` and the Trainer's ``num_items_in_batch``.
- :func:`patch` makes a causal LM (Llama, Qwen2, GPT-2 families) compute its training loss with
  :func:`labelsmooth.linear_cross_entropy` on the final hidden states, so the (tokens × vocabulary) logits
  are never materialised in training. ``patch(trainer)`` also closes the Trainer's "full-logits trap".

Normalisation (both entry points). With :math:`n` the number of predicted tokens (labels ≠ −100 after the
shift) and :math:`\ell_i` the smoothed per-token loss of :func:`labelsmooth.cross_entropy`:

.. math::
    L = \frac{1}{d}\sum_{i} \ell_i, \qquad d = \texttt{num\_items\_in\_batch} \text{ when given, else } n.

With ``convention="uniform"`` and no prior this is term for term the Trainer's own ``LabelSmoother``
(transformers/trainer_pt_utils.py: NLL sum ÷ d times 1 − ε, plus ε times the sum over tokens of the mean
over the vocabulary of −log p, ÷ d), so under gradient accumulation it gives the gradient of the whole
accumulated batch (the fix of transformers#46731, PR #47261). One difference: a batch in which every label
is −100 gives 0 (and zero gradients) here, NaN there.

The full-logits trap: when ``TrainingArguments(label_smoothing_factor=ε)`` is set, ``Trainer.compute_loss``
pops ``labels`` before the forward pass and smooths the logits afterwards, so a forward that computes the
loss from hidden states never sees the labels and the full logits are built. ``patch(trainer)`` moves the
Trainer's ε into the patched model and sets ``trainer.label_smoother = None``: the Trainer then leaves
``labels`` in the batch and passes ``num_items_in_batch`` to the forward (for models whose forward takes
``**kwargs``, as Llama, Qwen2 and GPT-2 do), which is how it treats any model that computes its own loss.

Unknown keywords (``**loss_kwargs``) go to :func:`labelsmooth.cross_entropy` (``loss_func``) or
:func:`labelsmooth.linear_cross_entropy` (``patch``: e.g. ``chunk_size``), checked against their
signatures when the loss is built, so keywords those functions gain later work here unchanged.
"""

from __future__ import annotations

import inspect
import types
import warnings
from typing import Any

import torch
from torch import Tensor

import labelsmooth as ls

IGNORE_INDEX = -100

#: ``config.model_type`` of the causal LMs :func:`patch` is tested on; their head is a plain
#: ``lm_head(hidden_states)`` with no logit post-processing (no softcapping or scaling).
SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "gpt2")

_LOSS_ATTR = "_labelsmooth_patch"
_ORIGINAL_ATTR = "_labelsmooth_original_forward"


def _check_loss_kwargs(fn: Any, loss_kwargs: dict[str, Any], caller: str) -> None:
    reserved = {"input", "target", "linear_weight", "linear_bias", "reduction", "ignore_index"}
    clash = sorted(reserved & loss_kwargs.keys())
    if clash:
        raise TypeError(f"{caller}: argument `{clash[0]}` is set by {caller} itself and cannot be passed, got {clash}")
    try:
        inspect.signature(fn).bind_partial(**loss_kwargs)
    except TypeError as exc:
        raise TypeError(
            f"{caller}: unknown loss keyword(s) {sorted(loss_kwargs)} for labelsmooth.{fn.__name__} ({exc})"
        ) from None


def _check_settings(label_smoothing: float, convention: str, prior: Tensor | None, loss_kwargs: dict, caller: str):
    """Validate the smoothing settings once, on a one-row problem, so that a bad value fails here, not in training."""
    sized = prior if prior is not None else loss_kwargs.get("weight")
    K = sized.shape[-1] if isinstance(sized, Tensor) and sized.dim() == 1 and sized.shape[-1] >= 2 else 2
    z = torch.zeros(1, K, dtype=torch.float64)
    kwargs = {k: v for k, v in loss_kwargs.items() if k not in ("chunk_size", "backend")}
    ls.cross_entropy(
        z,
        torch.zeros(1, dtype=torch.long),
        label_smoothing=label_smoothing,
        convention=convention,
        prior=prior,
        **kwargs,
    )


def _shift(labels: Tensor, shift_labels: Tensor | None) -> Tensor:
    """Targets aligned with positions 0..S−2 (the last position predicts nothing)."""
    if shift_labels is not None:
        return shift_labels
    return labels[..., 1:]


def _denominator(n_active: Tensor, num_items_in_batch: Tensor | int | float | None, device) -> Tensor | int | float:
    if num_items_in_batch is None:
        return n_active.clamp(min=1)  # a batch with nothing to predict gives 0 and zero gradients, not NaN
    if isinstance(num_items_in_batch, Tensor):
        return num_items_in_batch.to(device)
    return num_items_in_batch


def loss_func(
    label_smoothing: float = 0.1,
    convention: str = "uniform",
    prior: Tensor | None = None,
    *,
    shift_labels: bool = True,
    **loss_kwargs: Any,
):
    r"""A ``compute_loss_func`` for the Hugging Face Trainer: the label-smoothed token loss from the logits.

    .. math::
        L = \frac{1}{d}\sum_{i:\,y_i \ne -100} \ell_i(z_i, y_i), \qquad
        d = \texttt{num\_items\_in\_batch} \text{ if given, else } \#\{i : y_i \ne -100\}

    with :math:`\ell_i` the loss of :func:`labelsmooth.cross_entropy` (``label_smoothing``, ``convention``,
    ``prior``). With ``shift_labels`` (causal LMs), position t predicts label t + 1. The Trainer calls it as
    ``fn(outputs, labels, num_items_in_batch=...)``.

    With ``convention="uniform"`` and no prior it equals ``TrainingArguments(label_smoothing_factor=ε)``
    (the Trainer's LabelSmoother) on the same batch, with or without gradient accumulation. Do not set both:
    with ``compute_loss_func`` the Trainer ignores ``label_smoothing_factor``.

    Args:
        label_smoothing: ε, in ``convention``'s terms.
        convention: "uniform" (torch's and the Trainer's ε) or "others" (fairseq's).
        prior: optional (V,) distribution the smoothing mass is spread by.
        shift_labels: shift for causal LMs (default); False for models whose labels align with the logits.
        **loss_kwargs: further keywords of :func:`labelsmooth.cross_entropy` (e.g. ``weight``).

    Returns:
        ``fn(outputs, labels, num_items_in_batch=None) -> Tensor``, a scalar loss.

    Example:
        >>> import torch
        >>> from labelsmooth.integrations.huggingface import loss_func
        >>> fn = loss_func(label_smoothing=0.1)
        >>> logits = torch.randn(2, 5, 11); labels = torch.randint(0, 11, (2, 5)); labels[0, 3] = -100
        >>> fn({"logits": logits}, labels, num_items_in_batch=7).shape
        torch.Size([])
    """
    _check_loss_kwargs(ls.cross_entropy, loss_kwargs, "loss_func")
    _check_settings(label_smoothing, convention, prior, loss_kwargs, "loss_func")

    def compute_loss(outputs: Any, labels: Tensor | None, num_items_in_batch: Tensor | int | None = None) -> Tensor:
        logits = _logits_of(outputs)
        if labels is None:
            raise ValueError(
                "Expected argument `labels` (from the Trainer's batch) to be a tensor of token ids, but got None: "
                "the batch has no 'labels' key"
            )
        if shift_labels:
            logits = logits[..., :-1, :]
            labels = labels[..., 1:]
        if logits.shape[:-1] != labels.shape:
            raise ValueError(
                f"Expected argument `labels` to have shape {tuple(logits.shape[:-1])} (the logits' leading shape"
                f"{' after the causal shift' if shift_labels else ''}), but got {tuple(labels.shape)}"
            )
        labels = labels.to(logits.device)
        total = ls.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            labels.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
            label_smoothing=label_smoothing,
            convention=convention,
            prior=prior,
            **loss_kwargs,
        )
        return total / _denominator(labels.ne(IGNORE_INDEX).sum(), num_items_in_batch, total.device)

    return compute_loss


def _logits_of(outputs: Any) -> Tensor:
    logits = None
    if isinstance(outputs, dict):
        logits = outputs.get("logits")
    elif isinstance(outputs, (tuple, list)) and outputs:
        logits = outputs[0]
    elif isinstance(outputs, Tensor):
        logits = outputs
    if not isinstance(logits, Tensor) or logits.dim() < 2 or logits.shape[-1] == 0:
        raise ValueError(
            "Expected argument `outputs` to carry the logits (outputs['logits'] of shape (batch, seq, vocab)), but "
            f"got {type(outputs).__name__} without them; a model patched with labelsmooth's patch() computes its "
            "loss itself in training and needs no compute_loss_func"
        )
    return logits


# --------------------------------------------------------------------------------------------------- patch


class _Settings:
    def __init__(self, label_smoothing, convention, prior, loss_kwargs):
        self.label_smoothing = label_smoothing
        self.convention = convention
        self.prior = prior
        self.loss_kwargs = dict(loss_kwargs)
        self.warned_no_labels = False

    def __repr__(self) -> str:
        return (
            f"labelsmooth patch(label_smoothing={self.label_smoothing}, convention={self.convention!r}, "
            f"prior={'None' if self.prior is None else 'tensor'}, loss_kwargs={self.loss_kwargs})"
        )


def _is_trainer(obj: Any) -> bool:
    return hasattr(obj, "label_smoother") and hasattr(obj, "args") and hasattr(obj, "model")


def patch(
    model_or_trainer: Any,
    label_smoothing: float | None = None,
    convention: str = "uniform",
    prior: Tensor | None = None,
    **loss_kwargs: Any,
):
    r"""Route a causal LM's training loss through :func:`labelsmooth.linear_cross_entropy`: no full logits.

    In training (``model.training`` and ``labels`` given), the patched forward runs the model as usual up to
    the final hidden states :math:`h` (B, S, D), skips the ``lm_head`` projection, and returns

    .. math::
        L = \frac{1}{d}\sum_{t:\,y_{t+1} \ne -100} \ell(W h_t + b,\ y_{t+1}),
        \qquad d = \texttt{num\_items\_in\_batch} \text{ if given, else the count of predicted tokens,}

    computed chunk by chunk, with ``logits=None`` in the output. Out of training, or without labels, the
    model computes its logits as before; with labels the loss is then the same smoothed loss computed from
    those logits (so evaluation losses match training). A collator's pre-shifted ``shift_labels`` are used
    as given. The model is patched in place (its instance ``forward``); patching again replaces the settings.

    ``patch(trainer)`` patches ``trainer.model`` and closes the full-logits trap of
    ``TrainingArguments(label_smoothing_factor=ε)``: ε moves into the model (``label_smoothing`` defaults to
    the Trainer's ε, uniform convention, as the Trainer means it) and ``trainer.label_smoother`` is set to
    None, so that the Trainer keeps ``labels`` in the batch and hands ``num_items_in_batch`` to the forward.

    Supported: ``config.model_type`` in :data:`SUPPORTED_MODEL_TYPES` (Llama, Qwen2, GPT-2 families: a
    plain linear head on the final hidden states). Others are refused with an error, rather than silently
    skipping a logit transform their head may apply.

    Args:
        model_or_trainer: a ``PreTrainedModel`` for causal LM, or a ``transformers.Trainer`` holding one.
        label_smoothing: ε in ``convention``'s terms; default 0 for a model, the Trainer's
            ``label_smoothing_factor`` for a Trainer.
        convention: "uniform" or "others".
        prior: optional (V,) prior the smoothing mass is spread by.
        **loss_kwargs: further keywords of :func:`labelsmooth.linear_cross_entropy` (``chunk_size``, ...).

    Returns:
        The same model or Trainer, patched.

    Raises:
        ValueError: unsupported model, no linear output head, bad smoothing settings, or a Trainer whose
            ``label_smoothing_factor`` conflicts with the settings given, or that has a ``compute_loss_func``.

    Example:
        >>> import torch, transformers
        >>> from labelsmooth.integrations.huggingface import patch
        >>> cfg = transformers.LlamaConfig(vocab_size=97, hidden_size=16, intermediate_size=32,
        ...     num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
        >>> model = patch(transformers.AutoModelForCausalLM.from_config(cfg), label_smoothing=0.1).train()
        >>> ids = torch.randint(0, 97, (2, 8))
        >>> out = model(input_ids=ids, labels=ids)
        >>> out.logits is None, out.loss.shape
        (True, torch.Size([]))
    """
    if _is_trainer(model_or_trainer):
        return _patch_trainer(model_or_trainer, label_smoothing, convention, prior, loss_kwargs)
    return _patch_model(
        model_or_trainer, 0.0 if label_smoothing is None else label_smoothing, convention, prior, loss_kwargs
    )


def _patch_trainer(trainer, label_smoothing, convention, prior, loss_kwargs):
    factor = float(getattr(trainer.args, "label_smoothing_factor", 0.0) or 0.0)
    if getattr(trainer, "compute_loss_func", None) is not None:
        raise ValueError(
            "patch(trainer): the Trainer has a compute_loss_func, which would receive outputs without logits; "
            "use either patch() (the loss comes from the model) or compute_loss_func=loss_func(...), not both"
        )
    if label_smoothing is None:
        label_smoothing, convention_used = factor, convention
    else:
        convention_used = convention
        same = convention == "uniform" and prior is None and abs(float(label_smoothing) - factor) < 1e-12
        if factor != 0.0 and not same:
            raise ValueError(
                f"patch(trainer): the Trainer has label_smoothing_factor={factor} (uniform convention) but got "
                f"label_smoothing={label_smoothing}, convention={convention!r}"
                f"{', a prior' if prior is not None else ''}; set label_smoothing_factor=0 in TrainingArguments "
                "and pass the smoothing to patch(), or leave label_smoothing out to use the Trainer's"
            )
    model = trainer.model
    _patch_model(model, label_smoothing, convention_used, prior, loss_kwargs)
    # The Trainer pops `labels` before the forward pass whenever it has a label smoother; without one it leaves
    # them in the batch and takes the loss the model returns (and passes num_items_in_batch to the forward).
    trainer.label_smoother = None
    return trainer


def _output_head(model) -> torch.nn.Linear:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if not isinstance(head, torch.nn.Linear):
        raise ValueError(
            "Expected argument `model_or_trainer` to be a causal LM with a torch.nn.Linear output head "
            f"(model.get_output_embeddings()), but got {type(model).__name__} with head {type(head).__name__}"
        )
    return head


def _patch_model(model, label_smoothing, convention, prior, loss_kwargs):
    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            "Expected argument `model_or_trainer` to be a transformers causal LM (torch.nn.Module) or a Trainer, "
            f"but got {type(model).__name__}"
        )
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"Expected argument `model_or_trainer` to be a causal LM of model_type in {list(SUPPORTED_MODEL_TYPES)}, "
            f"but got {type(model).__name__} (model_type={model_type!r})"
        )
    head = _output_head(model)
    _check_loss_kwargs(ls.linear_cross_entropy, loss_kwargs, "patch")
    if prior is not None and (not isinstance(prior, Tensor) or prior.shape != (head.out_features,)):
        raise ValueError(
            f"Expected argument `prior` to be a tensor of shape ({head.out_features},) (the vocabulary), but got "
            f"{tuple(prior.shape) if isinstance(prior, Tensor) else type(prior).__name__}"
        )
    _check_settings(label_smoothing, convention, prior, loss_kwargs, "patch")
    settings = _Settings(label_smoothing, convention, prior, loss_kwargs)
    if getattr(model, _LOSS_ATTR, None) is not None:
        setattr(model, _LOSS_ATTR, settings)  # already patched: new settings, same forward
        return model
    setattr(model, _LOSS_ATTR, settings)
    # The forward it had (a bound method: copy.deepcopy rebinds it to the copy, as it does the patched one).
    setattr(model, _ORIGINAL_ATTR, model.forward)

    def forward(self, *args: Any, labels: Tensor | None = None, **kwargs: Any):
        return _patched_forward(self, args, labels, kwargs)

    # The Trainer reads the forward's signature to choose the batch columns it keeps and to decide whether the
    # model takes num_items_in_batch: keep the class forward's.
    forward.__signature__ = inspect.signature(type(model).forward)  # type: ignore[attr-defined]
    model.forward = types.MethodType(forward, model)
    return model


def _patched_forward(self, args: tuple, labels: Tensor | None, kwargs: dict):
    s: _Settings = getattr(self, _LOSS_ATTR)
    original = getattr(self, _ORIGINAL_ATTR)
    num_items_in_batch = kwargs.pop("num_items_in_batch", None)
    shift_labels = kwargs.pop("shift_labels", None)
    if labels is None and shift_labels is None:
        if self.training and torch.is_grad_enabled() and not s.warned_no_labels:
            s.warned_no_labels = True
            warnings.warn(
                "labelsmooth: the patched model got no labels in a training forward pass, so it builds the full "
                "logits; if a transformers Trainer with label_smoothing_factor runs it, call "
                "labelsmooth.integrations.huggingface.patch(trainer) so that the labels reach the model",
                stacklevel=3,
            )
        return original(*args, **kwargs)
    as_tuple = kwargs.pop("return_dict", True) is False
    keep = kwargs.get("logits_to_keep", 0)
    if not self.training or not (isinstance(keep, int) and keep == 0):
        out = original(*args, **kwargs)
        out = _replace(out, loss=_loss_from_logits(out["logits"], labels, shift_labels, num_items_in_batch, s))
        return out.to_tuple() if as_tuple else out
    head = _output_head(self)
    captured: dict[str, Tensor] = {}

    def skip_projection(module, inputs):
        (hidden,) = inputs
        captured["hidden"] = hidden
        return (hidden[..., :0, :],)  # the head then projects zero positions: a (B, 0, V) tensor

    handle = head.register_forward_pre_hook(skip_projection)
    try:
        out = original(*args, **kwargs)
    finally:
        handle.remove()
    if "hidden" not in captured:
        raise RuntimeError(
            f"labelsmooth patch: {type(self).__name__}.forward did not call its output head; cannot take the loss "
            "from the final hidden states"
        )
    loss = _loss_from_hidden(captured["hidden"], head, labels, shift_labels, num_items_in_batch, s)
    out = _replace(out, loss=loss, logits=None)
    return out.to_tuple() if as_tuple else out


def _replace(out: Any, **fields: Any):
    """A copy of a ModelOutput with some fields replaced (None drops a field)."""
    items = {k: v for k, v in out.items() if k not in fields}
    items.update({k: v for k, v in fields.items() if v is not None})
    return type(out)(**items)


def _aligned(x: Tensor, labels: Tensor | None, shift_labels: Tensor | None) -> tuple[Tensor, Tensor]:
    """``x`` (hidden states or logits, (batch, sequence, d)) and its targets, position by position: the next
    token's label with the last position dropped, or ``shift_labels`` as given (already aligned)."""
    y = (_shift(labels, None) if shift_labels is None else shift_labels).to(x.device)
    aligned = x if shift_labels is not None else x[..., :-1, :]
    if aligned.shape[:-1] != y.shape:
        raise ValueError(
            f"Expected argument `labels` to have shape {tuple(x.shape[:-1])} (batch, sequence), but got "
            f"{tuple((labels if shift_labels is None else shift_labels).shape)}"
        )
    return aligned, y


def _loss_from_hidden(hidden: Tensor, head: torch.nn.Linear, labels, shift_labels, num_items_in_batch, s: _Settings):
    h, y = _aligned(hidden, labels, shift_labels)
    total = ls.linear_cross_entropy(
        h,
        head.weight,
        y,
        linear_bias=head.bias,
        reduction="sum",
        ignore_index=IGNORE_INDEX,
        label_smoothing=s.label_smoothing,
        convention=s.convention,
        prior=s.prior,
        **s.loss_kwargs,
    )
    return total / _denominator(y.ne(IGNORE_INDEX).sum(), num_items_in_batch, total.device)


def _loss_from_logits(logits: Tensor, labels, shift_labels, num_items_in_batch, s: _Settings):
    z, y = _aligned(logits, labels, shift_labels)
    kwargs = {k: v for k, v in s.loss_kwargs.items() if k not in ("chunk_size", "backend")}
    total = ls.cross_entropy(
        z.reshape(-1, z.shape[-1]),
        y.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
        label_smoothing=s.label_smoothing,
        convention=s.convention,
        prior=s.prior,
        **kwargs,
    )
    return total / _denominator(y.ne(IGNORE_INDEX).sum(), num_items_in_batch, total.device)


def unpatch(model: Any):
    """Undo :func:`patch` on a model (or a Trainer's model): its class forward is used again."""
    model = model.model if _is_trainer(model) else model
    if getattr(model, _LOSS_ATTR, None) is not None:
        del model.forward
        delattr(model, _LOSS_ATTR)
        delattr(model, _ORIGINAL_ATTR)
    return model
