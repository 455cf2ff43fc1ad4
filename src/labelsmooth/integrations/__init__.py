"""Adapters for the frameworks people already train with, each behind its own optional extra.

- :mod:`labelsmooth.integrations.huggingface` (extra ``huggingface``): ``loss_func`` for
  ``Trainer(compute_loss_func=...)`` and ``patch`` for causal LMs (the loss from the final hidden states,
  no full logits in training), including a Trainer with ``label_smoothing_factor`` set.
- :mod:`labelsmooth.integrations.torchtune` (extra ``torchtune``): a loss with torchtune's ``SFTLoss``
  protocol, selected with one ``_component_:`` line.

Lightning and timm need no adapter: their recipes (a loss module in ``training_step``; the loss block of
timm's train.py) are in docs/integrations.md, the Lightning one executed by the tests.

Nothing here is imported by ``import labelsmooth``; import the submodule you need. Recipes, and how each
framework names and normalises its smoothing: docs/integrations.md.
"""
