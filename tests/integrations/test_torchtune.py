"""The torchtune loss: SFTLoss protocol on a stand-in decoder, and on torchtune's own decoder where it imports.

The stand-in does what torchtune's main-branch TransformerDecoder does with ``skip_output_layer``: return
the normed hidden states instead of ``output(h)``. The recipe step below is torchtune's: targets shifted
with an ignore column at the end, then ``loss(outputs, targets)``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import labelsmooth as ls
from labelsmooth.integrations.torchtune import LinearCrossEntropyLoss
from tests import reference as ref

V, D = 61, 12


class StandInDecoder(nn.Module):
    """Embedding, one mixing layer, a norm and an output projection; honours ``skip_output_layer``."""

    def __init__(self, tied: bool = False, bias: bool = False):
        super().__init__()
        self.tok_embeddings = nn.Embedding(V, D)
        self.layer = nn.Linear(D, D)
        self.norm = nn.LayerNorm(D)
        if tied:

            class Tied:  # torchtune's TiedLinear: not a Module, holds the embedding
                def __init__(self, module):
                    self.tied_module = module

                def __call__(self, x):
                    return x @ self.tied_module.weight.t()

            self.output = Tied(self.tok_embeddings)
        else:
            self.output = nn.Linear(D, V, bias=bias)
        self.skip_output_layer = False

    def forward(self, tokens):
        h = self.norm(torch.tanh(self.layer(self.tok_embeddings(tokens))))
        return h if self.skip_output_layer else self.output(h)


def recipe_targets(labels):
    ignore = torch.full((labels.shape[0], 1), -100, dtype=labels.dtype)
    return torch.hstack((labels[..., 1:], ignore))


def data(B=3, S=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, V, (B, S), generator=g)
    labels = tokens.clone()
    labels[0, :3] = -100
    return tokens, labels


@pytest.mark.parametrize("tied,bias", [(False, False), (True, False), (False, True)])
def test_sft_protocol_step_equals_the_full_logits_reference(tied, bias):
    torch.manual_seed(0)
    model = StandInDecoder(tied=tied, bias=bias).double()
    tokens, labels = data()
    targets = recipe_targets(labels)

    logits = model(tokens)  # before set_model_output: logits
    expected = ref.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), eps=0.1)
    torch.nn.functional.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), label_smoothing=0.1).backward()
    want = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    loss_fn = LinearCrossEntropyLoss(label_smoothing=0.1, chunk_size=5)
    loss_fn.set_model_output(model)
    assert model.skip_output_layer is True
    hidden = model(tokens)
    assert hidden.shape == (*tokens.shape, D)
    loss = loss_fn(hidden, targets)
    loss.backward()
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=0)
    for p, g in zip(model.parameters(), want):
        torch.testing.assert_close(p.grad, g, rtol=1e-9, atol=1e-12)
    # the recipe's flattened form gives the same
    torch.testing.assert_close(loss_fn(hidden.reshape(-1, D), targets.reshape(-1)), loss, rtol=1e-12, atol=0)


def test_others_convention_and_prior_pass_through():
    torch.manual_seed(0)
    model = StandInDecoder().double()
    prior = torch.softmax(torch.randn(V, dtype=torch.float64), 0)
    tokens, labels = data()
    targets = recipe_targets(labels).reshape(-1)
    expected = ref.cross_entropy(model(tokens).reshape(-1, V), targets, eps=0.2, convention="others", prior=prior)
    loss_fn = LinearCrossEntropyLoss(label_smoothing=0.2, convention="others", prior=prior)
    loss_fn.set_model_output(model)
    torch.testing.assert_close(loss_fn(model(tokens).reshape(-1, D), targets), expected, rtol=1e-10, atol=0)


def test_all_ignored_targets_give_zero_not_nan():
    model = StandInDecoder()
    loss_fn = LinearCrossEntropyLoss()
    loss_fn.set_model_output(model)
    h = model(torch.zeros(2, 4, dtype=torch.long)).requires_grad_()
    loss = loss_fn(h, torch.full((2, 4), -100))
    assert loss.item() == 0.0


def test_errors_name_the_argument():
    model = StandInDecoder()
    loss_fn = LinearCrossEntropyLoss()
    with pytest.raises(RuntimeError, match="set_model_output"):
        loss_fn(torch.randn(2, 3, D), torch.zeros(2, 3, dtype=torch.long))
    loss_fn.set_model_output(model)
    with pytest.raises(ValueError, match="returned logits"):
        loss_fn(torch.randn(2, 3, V), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="`model`"):
        loss_fn.set_model_output(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="label_smoothing"):
        LinearCrossEntropyLoss(label_smoothing=2.0)
    with pytest.raises(TypeError, match="unknown loss keyword"):
        LinearCrossEntropyLoss(chunks=4)
    with pytest.raises(TypeError, match="`reduction`"):
        LinearCrossEntropyLoss(reduction="none")


# ------------------------------------------------------------------------------ with torchtune installed


def _torchtune():
    tt = pytest.importorskip("torchtune", exc_type=ImportError)
    return tt


def test_selected_by_one_component_line_through_torchtune_config():
    _torchtune()
    from omegaconf import OmegaConf
    from torchtune import config

    cfg = OmegaConf.create(
        {"loss": {"_component_": "labelsmooth.integrations.torchtune.LinearCrossEntropyLoss", "label_smoothing": 0.1}}
    )
    loss_fn = config.instantiate(cfg.loss)
    assert isinstance(loss_fn, LinearCrossEntropyLoss) and loss_fn.label_smoothing == 0.1


def test_on_torchtunes_own_decoder_the_loss_from_its_hidden_states_equals_its_logits():
    _torchtune()
    from torchtune.models.llama3_2 import llama3_2

    torch.manual_seed(0)
    model = llama3_2(
        vocab_size=V, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=32, max_seq_len=32, intermediate_dim=64
    )  # float32: torchtune's RMSNorm and output compute in float32
    tokens, labels = data(S=12)
    targets = recipe_targets(labels)
    loss_fn = LinearCrossEntropyLoss(label_smoothing=0.1, chunk_size=8)
    loss_fn.set_model_output(model)  # 0.6.1 ignores skip_output_layer: take the hidden states from its norm
    seen = {}
    model.norm.register_forward_hook(lambda m, i, o: seen.__setitem__("h", o))
    logits = model(tokens)
    if logits.shape[-1] == 32:  # a torchtune that honours skip_output_layer returned hidden states
        hidden, logits = logits, model.output(logits)
    else:
        hidden = seen["h"]
        with pytest.raises(ValueError, match="returned logits"):
            loss_fn(logits, targets)
    got = loss_fn(hidden, targets)
    want = ls.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), label_smoothing=0.1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=0)
