"""The Lightning recipe of docs/integrations.md, executed as written: a few Trainer steps equal a plain loop.

The reference loop uses torch's own F.cross_entropy(label_smoothing=...) and torch.optim.SGD on the same
batches in the same order, so the recipe's weights after training must match it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

pl = pytest.importorskip("pytorch_lightning")

DOC = Path(__file__).resolve().parents[2] / "docs" / "integrations.md"


def recipe_namespace() -> dict:
    blocks = re.findall(r"```python\n(# recipe: lightning\n.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1, "docs/integrations.md must hold exactly one '# recipe: lightning' block"
    ns: dict = {}
    exec(compile(blocks[0], str(DOC), "exec"), ns)  # the documented code, unchanged
    return ns


def data(n=48, d=8, k=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = torch.randint(0, k, (n,), generator=g)
    return torch.utils.data.TensorDataset(x, y)


def make_net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 5))


@pytest.mark.parametrize("accumulate", [1, 2])
def test_lightning_recipe_trains_exactly_like_a_plain_loop_with_torchs_loss(tmp_path, accumulate):
    ns = recipe_namespace()
    ds, steps, batch = data(), 4, 6
    module = ns["SmoothedClassifier"](make_net(), label_smoothing=0.1, lr=0.3)
    trainer = pl.Trainer(
        max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accumulate_grad_batches=accumulate,
        default_root_dir=str(tmp_path),
    )  # fmt: skip
    trainer.fit(module, torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=False))

    net = make_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.3)
    loader = iter(torch.utils.data.DataLoader(ds, batch_size=batch * accumulate, shuffle=False))
    for _ in range(steps):
        x, y = next(loader)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y, label_smoothing=0.1).backward()
        opt.step()
    for got, want in zip(module.net.parameters(), net.parameters()):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert not torch.equal(net[0].weight, make_net()[0].weight)  # it trained


def test_recipe_others_convention_is_fairseqs_epsilon():
    ns = recipe_namespace()
    module = ns["SmoothedClassifier"](make_net(), label_smoothing=0.1, convention="others")
    x, y = data()[:6]
    want = torch.nn.functional.cross_entropy(module.net(x), y, label_smoothing=0.1 * 5 / 4)  # ε·K/(K−1)
    torch.testing.assert_close(module.loss(module.net(x), y), want)
