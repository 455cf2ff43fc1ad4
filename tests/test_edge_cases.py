"""Bad or unusual input on every path: torch's number (value and gradients), or a clear error naming the argument.

The cases of issue 16 ("silent wrong results" and "unhelpful crashes" in the losses). Expected values come
from torch itself where it has the setting, or from the float64 reference of tests/reference.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import labelsmooth as ls
from labelsmooth import kernels
from labelsmooth.distributed import (
    global_mean_denominator,
    vocab_parallel_cross_entropy,
    vocab_parallel_linear_cross_entropy,
)
from labelsmooth.kernels import triton_backend
from tests import reference as ref

D = torch.float64
K = 5


def _backends() -> list[str]:
    names = ["torch"]
    if kernels._cxx_compiler() is not None:
        names.append("compiled")
    if triton_backend.import_for_interpreter():
        names.append("triton")
    return names


BACKENDS = _backends()


@pytest.fixture
def backend_env(monkeypatch):
    """Triton runs on CPU tensors in its interpreter; the other backends ignore the variable."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")


def _grads(loss, *tensors):
    return torch.autograd.grad(loss, tensors, allow_unused=True)


def _logits(n=6, k=K, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, k, generator=g, dtype=D) * 2).requires_grad_()


# --- 1. every target ignored, reduction="mean": NaN loss as torch, and torch's zero gradients -------------


def _torch_all_ignored(z, y, **kw):
    loss = F.cross_entropy(z, y, **kw)
    return loss, _grads(loss, z)[0]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("eps,weighted", [(0.0, False), (0.1, False), (0.1, True)])
def test_all_ignored_mean_fused_gives_nan_loss_and_zero_gradients(backend_env, backend, eps, weighted):
    z = _logits()
    y = torch.full((6,), -100)
    w = torch.rand(K, dtype=D) + 0.5 if weighted else None
    expected, expected_grad = _torch_all_ignored(z, y, weight=w, label_smoothing=eps)
    loss = ls.fused_cross_entropy(z, y, w, label_smoothing=eps, backend=backend)
    (grad,) = _grads(loss, z)
    assert torch.isnan(loss) and torch.isnan(expected)
    assert torch.equal(grad, expected_grad) and not grad.abs().sum()


@pytest.mark.parametrize("convention", ["uniform", "others"])
def test_all_ignored_mean_with_a_prior_gives_nan_loss_and_zero_gradients(convention):
    z = _logits()
    y = torch.full((6,), -100)
    prior = torch.arange(1.0, K + 1, dtype=D) / 15
    expected, expected_grad = _torch_all_ignored(z, y, label_smoothing=0.1)
    for fn in (ls.cross_entropy, ls.fused_cross_entropy):
        loss = fn(z, y, label_smoothing=0.1, convention=convention, prior=prior)
        (grad,) = _grads(loss, z)
        assert torch.isnan(loss), fn.__name__
        assert torch.equal(grad, expected_grad), fn.__name__


def test_all_ignored_mean_linear_and_vocab_parallel_give_nan_loss_and_zero_gradients():
    h = torch.randn(6, 3, dtype=D, requires_grad=True)
    W = torch.randn(K, 3, dtype=D, requires_grad=True)
    b = torch.randn(K, dtype=D, requires_grad=True)
    y = torch.full((6,), -100)
    expected = F.cross_entropy(F.linear(h, W, b), y, label_smoothing=0.1)
    expected_grads = _grads(expected, h, W, b)
    for name, loss in [
        ("linear", ls.linear_cross_entropy(h, W, y, linear_bias=b, label_smoothing=0.1)),
        ("vocab-parallel linear", vocab_parallel_linear_cross_entropy(h, W, y, local_bias=b, label_smoothing=0.1)),
    ]:
        assert torch.isnan(loss), name
        for got, want in zip(_grads(loss, h, W, b), expected_grads):
            assert torch.equal(got, want), name
    z = _logits()
    expected, expected_grad = _torch_all_ignored(z, y, label_smoothing=0.1)
    loss = vocab_parallel_cross_entropy(z, y, label_smoothing=0.1)
    assert torch.isnan(loss)
    assert torch.equal(_grads(loss, z)[0], expected_grad)


# --- 2. fused_cross_entropy computes no gradient for targets, weights, or a second derivative: it says so --


def test_fused_refuses_a_probability_target_that_requires_grad():
    z = _logits()
    t = torch.softmax(torch.randn(6, K, dtype=D), -1).requires_grad_()
    with pytest.raises(ValueError, match=r"`target` not to require grad for fused_cross_entropy"):
        ls.fused_cross_entropy(z, t, label_smoothing=0.1)
    ls.fused_cross_entropy(z, t.detach(), label_smoothing=0.1)  # detached: fine
    with torch.no_grad():
        ls.fused_cross_entropy(z, t, label_smoothing=0.1)  # no gradient wanted: fine


@pytest.mark.parametrize("name", ["weight", "prior"])
def test_fused_and_linear_refuse_a_weight_or_prior_that_requires_grad(name):
    z, y = _logits(), torch.tensor([0, 1, 2, 3, 4, 0])
    value = (torch.rand(K, dtype=D) + 0.5) if name == "weight" else torch.full((K,), 1 / K, dtype=D)
    value.requires_grad_()
    with pytest.raises(ValueError, match=rf"`{name}` not to require grad for fused_cross_entropy"):
        ls.fused_cross_entropy(z, y, **{name: value})
    h, W = torch.randn(6, 3, dtype=D), torch.randn(K, 3, dtype=D, requires_grad=True)
    with pytest.raises(ValueError, match=rf"`{name}` not to require grad for linear_cross_entropy"):
        ls.linear_cross_entropy(h, W, y, **{name: value})
    with pytest.raises(ValueError, match=rf"`{name}` not to require grad for the vocab-parallel losses"):
        vocab_parallel_cross_entropy(z, y, **{name: value})


def test_fused_and_linear_refuse_second_derivatives():
    z, y = _logits(), torch.tensor([0, 1, 2, 3, 4, 0])
    loss = ls.fused_cross_entropy(z, y, label_smoothing=0.1)
    with pytest.raises(RuntimeError, match="fused_cross_entropy has no second derivative.*create_graph=True"):
        torch.autograd.grad(loss, z, create_graph=True)
    h, W = torch.randn(6, 3, dtype=D, requires_grad=True), torch.randn(K, 3, dtype=D)
    loss = ls.linear_cross_entropy(h, W, y, label_smoothing=0.1)
    with pytest.raises(RuntimeError, match="linear_cross_entropy has no second derivative"):
        torch.autograd.grad(loss, h, create_graph=True)
    # without create_graph the gradient is still there, and is torch's
    loss = ls.fused_cross_entropy(z, y, label_smoothing=0.1)
    torch.testing.assert_close(_grads(loss, z)[0], _grads(F.cross_entropy(z, y, label_smoothing=0.1), z)[0])


# --- 3. probability targets whose rows do not sum to 1: torch's t(1 − ε) + ε/K on every path ---------------


def _unnormalised_targets(seed=1):
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(6, K, generator=g, dtype=D)
    t[0] *= 0.3  # sums below 1
    t[1] *= 2.0  # above 1
    t[2] = 0.0  # all zero: torch's loss is ε/K·Σ −log p (0 at ε = 0)
    t[3] = torch.nn.functional.one_hot(torch.tensor(2), K).to(D)  # a one-hot row
    t[4] /= t[4].sum()  # sums to 1
    return t


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_probability_targets_follow_torch_whatever_their_sum(backend_env, backend, eps, weighted, reduction):
    z = _logits()
    t = _unnormalised_targets().requires_grad_()
    w = torch.rand(K, dtype=D) + 0.5 if weighted else None
    upstream = torch.linspace(0.5, 2.0, 6, dtype=D) if reduction == "none" else torch.tensor(1.0, dtype=D)
    expected = F.cross_entropy(z, t, w, reduction=reduction, label_smoothing=eps)
    uniform = torch.full((K,), 1 / K, dtype=D)
    for name, kw in [("default", {}), ("explicit uniform prior", dict(prior=uniform))]:
        ours = ls.cross_entropy(z, t, w, reduction=reduction, label_smoothing=eps, **kw)
        grad_z, grad_t = torch.autograd.grad(ours, (z, t), upstream)
        torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12, msg=name)
        torch.testing.assert_close(grad_z, torch.autograd.grad(expected, z, upstream, retain_graph=True)[0],
                                   rtol=1e-12, atol=1e-12, msg=name)  # fmt: skip
        torch.testing.assert_close(grad_t, torch.autograd.grad(expected, t, upstream, retain_graph=True)[0],
                                   rtol=1e-12, atol=1e-12, msg=name)  # fmt: skip
        fused = ls.fused_cross_entropy(z, t.detach(), w, reduction=reduction, label_smoothing=eps, backend=backend,
                                       **kw)  # fmt: skip
        (grad_z,) = torch.autograd.grad(fused, z, upstream)
        torch.testing.assert_close(fused, expected, rtol=1e-12, atol=1e-12, msg=name)
        torch.testing.assert_close(grad_z, torch.autograd.grad(expected, z, upstream, retain_graph=True)[0],
                                   rtol=1e-12, atol=1e-12, msg=name)  # fmt: skip


@pytest.mark.parametrize("prior_kind", [None, "uniform"])
def test_probability_targets_with_others_follow_torch_at_the_equivalent_epsilon(prior_kind):
    """ "others" with ε on the uniform prior is torch's "uniform" ε·K/(K − 1), rows of any sum included."""
    z, t = _logits(), _unnormalised_targets().requires_grad_()
    prior = None if prior_kind is None else torch.full((K,), 1 / K, dtype=D)
    eps = 0.2
    expected = F.cross_entropy(z, t, label_smoothing=eps * K / (K - 1))
    for fn in (ls.cross_entropy, ls.fused_cross_entropy):
        target = t if fn is ls.cross_entropy else t.detach()
        ours = fn(z, target, label_smoothing=eps, convention="others", prior=prior)
        torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(_grads(ours, z)[0], torch.autograd.grad(expected, z, retain_graph=True)[0])
    ours = ls.cross_entropy(z, t, label_smoothing=eps, convention="others", prior=prior)
    torch.testing.assert_close(_grads(ours, t)[0], torch.autograd.grad(expected, t, retain_graph=True)[0])


def _reference_soft_rows(t, eps, convention, prior):
    """The documented extension (docs/theory.md), from the reference's one-hot targets:
    q(t) = Σ_j t_j q(e_j) + (1 − Σ_j t_j)·(Σ_j π_j s_j)·π, with s_j read off q(e_j)_j = 1 − s_j + s_j π_j."""
    pi = prior.tolist()
    Kc = len(pi)
    onehots = [ref.soft_target_row(j, Kc, eps, convention, pi) for j in range(Kc)]
    s = [(1.0 - onehots[j][j]) / (1.0 - pi[j]) for j in range(Kc)]
    spread = sum(p * sj for p, sj in zip(pi, s))
    rows = []
    for row in t.tolist():
        total = sum(row)
        rows.append(
            [sum(row[j] * onehots[j][k] for j in range(Kc)) + (1.0 - total) * spread * pi[k] for k in range(Kc)]
        )
    return torch.tensor(rows, dtype=D)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("convention", ["uniform", "others"])
def test_probability_targets_with_a_skewed_prior_follow_the_documented_extension(backend_env, backend, convention):
    z, t = _logits(), _unnormalised_targets()
    prior = torch.arange(1.0, K + 1, dtype=D)
    prior /= prior.sum()
    q = _reference_soft_rows(t, 0.3, convention, prior)
    expected = -(q * torch.log_softmax(z.detach(), -1)).sum(-1)
    expected_grad = q.sum(-1, keepdim=True) * torch.softmax(z.detach(), -1) - q  # per row, reduction="sum"
    for fn, kw in [(ls.cross_entropy, {}), (ls.fused_cross_entropy, dict(backend=backend))]:
        ours = fn(z, t, reduction="none", label_smoothing=0.3, convention=convention, prior=prior, **kw)
        torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(_grads(ours.sum(), z)[0], expected_grad, rtol=1e-12, atol=1e-12)
    # one-hot rows are exactly the class-index target
    onehot = F.one_hot(torch.tensor([0, 3, 4]), K).to(D)
    torch.testing.assert_close(
        ls.cross_entropy(z[:3], onehot, label_smoothing=0.3, convention=convention, prior=prior, reduction="none"),
        ls.cross_entropy(z[:3], torch.tensor([0, 3, 4]), label_smoothing=0.3, convention=convention, prior=prior,
                         reduction="none"),
    )  # fmt: skip


# --- 4. decompose, and every loss, with K = 1 and convention="others" ---------------------------------------


@pytest.mark.parametrize("eps", [0.0, 0.3])
def test_one_class_with_others_is_torch_zero_loss_everywhere(eps):
    z = torch.randn(4, 1, dtype=D, requires_grad=True)
    y = torch.zeros(4, dtype=torch.long)
    expected = F.cross_entropy(z, y, label_smoothing=eps)
    expected_grad = _grads(expected, z)[0]
    d = ls.decompose(z, y, eps, convention="others")
    assert d.epsilon == 0.0  # no other class to share ε: the target stays e_y
    torch.testing.assert_close(d.total, expected)
    h, W = torch.randn(4, 3, dtype=D, requires_grad=True), torch.randn(1, 3, dtype=D)
    for name, fn in [
        ("cross_entropy", lambda: ls.cross_entropy(z, y, label_smoothing=eps, convention="others")),
        ("fused", lambda: ls.fused_cross_entropy(z, y, label_smoothing=eps, convention="others")),
        ("vocab-parallel", lambda: vocab_parallel_cross_entropy(z, y, label_smoothing=eps, convention="others")),
    ]:
        loss = fn()
        torch.testing.assert_close(loss, expected, msg=name)
        torch.testing.assert_close(_grads(loss, z)[0], expected_grad, msg=name)
    loss = ls.linear_cross_entropy(h, W, y, label_smoothing=eps, convention="others")
    assert loss.item() == 0.0 and not _grads(loss, h)[0].abs().sum()


# --- 5. global_mean_denominator: class indices checked -----------------------------------------------------


def test_global_mean_denominator_refuses_negative_and_too_large_targets():
    with pytest.raises(ValueError, match=r"`target`.*>= 0 or ignore_index=-100, but got -1"):
        global_mean_denominator(torch.tensor([0, -1]))
    w = torch.tensor([0.5, 1.0, 2.0])
    with pytest.raises(ValueError, match=r"`target`.*\[0, 3\) or ignore_index=-100, but got -1"):
        global_mean_denominator(torch.tensor([0, -1]), weight=w)  # no silent weight[-1]
    with pytest.raises(ValueError, match=r"`target`.*\[0, 3\) or ignore_index=-100, but got 3"):
        global_mean_denominator(torch.tensor([0, 3]), weight=w)  # no raw IndexError
    assert global_mean_denominator(torch.tensor([0, -100, 2])).item() == 2.0
    assert global_mean_denominator(torch.tensor([0, 7, 2]), ignore_index=7, weight=w).item() == 2.5


# --- crashes: index dtypes, Python lists, hidden size 0 ------------------------------------------------------

INDEX_DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64]


def _index_paths(backend):
    """Every function that takes class indices, as fn(target) -> loss."""
    g = torch.Generator().manual_seed(3)
    z = torch.randn(6, K, generator=g, dtype=D)
    h, W = torch.randn(6, 3, generator=g, dtype=D), torch.randn(K, 3, generator=g, dtype=D)
    prior = torch.arange(1.0, K + 1, dtype=D) / 15
    return {
        "cross_entropy": lambda y: ls.cross_entropy(z, y, label_smoothing=0.1),
        "cross_entropy prior": lambda y: ls.cross_entropy(z, y, label_smoothing=0.1, prior=prior),
        "cross_entropy others": lambda y: ls.cross_entropy(z, y, label_smoothing=0.1, convention="others"),
        "fused": lambda y: ls.fused_cross_entropy(z, y, label_smoothing=0.1, backend=backend),
        "fused prior": lambda y: ls.fused_cross_entropy(z, y, label_smoothing=0.1, prior=prior, backend=backend),
        "linear": lambda y: ls.linear_cross_entropy(h, W, y, label_smoothing=0.1),
        "vocab-parallel": lambda y: vocab_parallel_cross_entropy(z, y, label_smoothing=0.1),
        "vocab-parallel linear": lambda y: vocab_parallel_linear_cross_entropy(h, W, y, label_smoothing=0.1),
        "decompose": lambda y: ls.decompose(z, y, 0.1).total,
        "target_distribution": lambda y: ls.target_distribution(y, K, 0.1),
        "global_mean_denominator": lambda y: global_mean_denominator(y, weight=prior),
        "ConfidencePenaltyLoss": lambda y: ls.ConfidencePenaltyLoss(beta=0.5)(z, y),
    }


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", INDEX_DTYPES[:-1])
def test_every_integer_index_dtype_gives_the_int64_result_on_every_path(backend_env, backend, dtype):
    y = torch.tensor([0, 4, 2, 2, 1, 3])
    for name, fn in _index_paths(backend).items():
        torch.testing.assert_close(fn(y.to(dtype)), fn(y), rtol=0, atol=0, msg=name)
    ignored = torch.tensor([0, -100, 2, 2, -100, 3])  # every signed dtype holds -100
    if dtype != torch.uint8:
        for name, fn in _index_paths(backend).items():
            if name not in ("decompose", "target_distribution"):  # these take no ignore_index
                torch.testing.assert_close(fn(ignored.to(dtype)), fn(ignored), rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bool_targets_are_refused_on_every_path_with_one_message(backend_env, backend):
    y = torch.tensor([True, False, True, True, False, True])
    for fn in _index_paths(backend).values():
        with pytest.raises(TypeError, match=r"Expected argument `target` to hold integer class indices.*torch\.bool"):
            fn(y)


@pytest.mark.parametrize(
    "fn,argument",
    [
        (lambda: ls.cross_entropy([[1.0, 2.0]], torch.tensor([0])), "input"),
        (lambda: ls.cross_entropy([[1.0, 2.0]], torch.tensor([0]), prior=torch.tensor([0.5, 0.5])), "input"),
        (lambda: ls.cross_entropy(torch.zeros(1, 2), [0]), "target"),
        (lambda: ls.cross_entropy(torch.zeros(1, 2), torch.tensor([0]), weight=[1.0, 1.0]), "weight"),
        (lambda: ls.cross_entropy(torch.zeros(1, 2), torch.tensor([0]), prior=[0.5, 0.5]), "prior"),
        (lambda: ls.fused_cross_entropy([[1.0, 2.0]], torch.tensor([0])), "input"),
        (lambda: ls.fused_cross_entropy(torch.zeros(1, 2), [0]), "target"),
        (lambda: ls.linear_cross_entropy([[1.0]], torch.zeros(2, 1), torch.tensor([0])), "input"),
        (lambda: ls.linear_cross_entropy(torch.zeros(1, 1), [[0.0], [1.0]], torch.tensor([0])), "linear_weight"),
        (lambda: ls.linear_cross_entropy(torch.zeros(1, 1), torch.zeros(2, 1), [0]), "target"),
        (lambda: vocab_parallel_cross_entropy([[1.0, 2.0]], torch.tensor([0])), "local_logits"),
        (lambda: vocab_parallel_cross_entropy(torch.zeros(1, 2), [0]), "target"),
        (lambda: ls.decompose([[1.0, 2.0]], torch.tensor([0]), 0.1), "input"),
        (lambda: ls.confidence_penalty([[1.0, 2.0]], 0.1), "input"),
        (lambda: ls.binary_cross_entropy_with_logits(torch.zeros(2), torch.ones(2), weight=[1.0, 1.0]), "weight"),
        (lambda: ls.target_distribution([0, 1], 3, 0.1), "target"),
        (lambda: global_mean_denominator([0, 1]), "target"),
    ],
)
def test_python_lists_are_refused_naming_the_argument(fn, argument):
    with pytest.raises(TypeError, match=rf"`{argument}`.*list"):
        fn()


@pytest.mark.parametrize("bias", [False, True])
def test_linear_with_hidden_size_zero_is_torch_log_v(bias):
    h = torch.zeros(4, 0, dtype=D, requires_grad=True)
    W = torch.zeros(K, 0, dtype=D, requires_grad=True)
    b = torch.randn(K, dtype=D, requires_grad=True) if bias else None
    y = torch.tensor([0, 1, 4, -100])
    expected = F.cross_entropy(F.linear(h, W, b), y, label_smoothing=0.1)
    ours = ls.linear_cross_entropy(h, W, y, linear_bias=b, label_smoothing=0.1)
    torch.testing.assert_close(ours, expected)
    if not bias:
        torch.testing.assert_close(ours.item(), torch.log(torch.tensor(float(K), dtype=D)).item())
    leaves = (h, W) + ((b,) if bias else ())
    for got, want in zip(_grads(ours, *leaves), _grads(expected, *leaves)):
        torch.testing.assert_close(got, want)
