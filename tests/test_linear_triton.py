"""linear_cross_entropy(backend="triton"): the GPU linear head, run on CPU tensors in Triton's interpreter.

Each chunk's logits come from a matrix product in the input's dtype, the fused Triton kernel overwrites
them with their gradient, and two more products give the input's and the weight's gradients. The loss
and the gradients of input, weight and bias are checked against the float64 oracle of tests/reference.py
on the materialised logits z = h Wᵀ + b (G = ∂L/∂z; ∂L/∂h = G W, ∂L/∂W = Gᵀ h, ∂L/∂b = Σ_rows G).
"""

from __future__ import annotations

import pytest
import torch

import labelsmooth as ls
from tests import reference as R
from tests._triton import require_interpreter

require_interpreter(__file__)
pytestmark = pytest.mark.usefixtures("triton_interpreter")


IGNORE = -100
N, K, D = 11, 37, 5  # 11 rows in chunks of 4: an uneven last chunk
TERMS = [(0.0, None), (0.03, None), (0.0, 2.5), (0.05, 3.0)]


def problem(seed: int, dtype=torch.float64, lead=(N,)):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(*lead, D, generator=g, dtype=torch.float64)
    W = torch.randn(K, D, generator=g, dtype=torch.float64) * 1.5
    b = torch.randn(K, generator=g, dtype=torch.float64)
    y = torch.randint(0, K, lead, generator=g)
    y.view(-1)[::4] = IGNORE
    w = torch.rand(K, generator=g, dtype=torch.float64) + 0.5
    prior = torch.rand(K, generator=g, dtype=torch.float64) + 0.1
    return [t.to(dtype) for t in (h, W, b)], y, w.to(dtype), (prior / prior.sum()).to(dtype)


def run(h, W, b, y, *, upstream=None, backend="triton", **kw):
    """Loss, (z-loss part) and the three gradients of Σ upstream·loss."""
    params = [t.clone().requires_grad_() for t in (h, W, b)]
    out = ls.linear_cross_entropy(params[0], params[1], y, linear_bias=params[2], backend=backend, **kw)
    loss = out[0] if isinstance(out, tuple) else out
    loss.backward(torch.ones_like(loss) if upstream is None else upstream)
    return out, [p.grad for p in params]


def oracle(h, W, b, y, *, upstream=None, **ref_kw):
    z = h.double().reshape(-1, D) @ W.double().T + b.double()
    up = None if upstream is None else upstream.double().reshape(-1)
    G = R.cross_entropy_grad(z, y.reshape(-1), upstream=up, **ref_kw)
    loss = R.cross_entropy(z, y.reshape(-1), **ref_kw)
    return loss, [(G @ W.double()).reshape(h.shape), G.T @ h.double().reshape(-1, D), G.sum(0)]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("convention", ["uniform", "others"])
@pytest.mark.parametrize("use_prior, use_weight", [(False, False), (True, True)])
@pytest.mark.parametrize("z_loss, softcap", TERMS)
def test_matches_the_float64_oracle(reduction, convention, use_prior, use_weight, z_loss, softcap):
    (h, W, b), y, w, prior = problem(0)
    kw = dict(
        reduction=reduction, label_smoothing=0.2, convention=convention, prior=prior if use_prior else None,
        weight=w if use_weight else None, ignore_index=IGNORE, z_loss=z_loss, softcap=softcap,
    )  # fmt: skip
    upstream = torch.linspace(0.5, 2.0, N, dtype=torch.float64) if reduction == "none" else None
    loss, grads = run(h, W, b, y, upstream=upstream, chunk_size=4, **kw)
    ref_kw = dict(
        eps=0.2, convention=convention, prior=kw["prior"], weight=kw["weight"], reduction=reduction,
        z_loss=z_loss, softcap=softcap,
    )  # fmt: skip
    expected, expected_grads = oracle(h, W, b, y, upstream=upstream, **ref_kw)
    assert loss.dtype == torch.float64
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-10, atol=1e-12)
    for name, grad, exp in zip(("input", "weight", "bias"), grads, expected_grads):
        torch.testing.assert_close(grad, exp, rtol=1e-9, atol=1e-12, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("convention", ["uniform", "others"])
@pytest.mark.parametrize("z_loss, softcap", TERMS)
def test_float32_without_weights_or_prior_takes_the_scalar_kernel(convention, z_loss, softcap):
    (h, W, b), y, _, _ = problem(1, torch.float32)
    (loss, z_part), grads = run(h, W, b, y, label_smoothing=0.1, convention=convention, z_loss=z_loss,
                                softcap=softcap, return_z_loss=True)  # fmt: skip
    ref_kw = dict(eps=0.1, convention=convention, reduction="mean", softcap=softcap)
    expected, expected_grads = oracle(h, W, b, y, z_loss=z_loss, **ref_kw)
    assert loss.dtype == z_part.dtype == torch.float32
    torch.testing.assert_close(loss.detach().double(), expected, rtol=1e-5, atol=1e-6)
    plain = R.cross_entropy(h.double() @ W.double().T + b.double(), y, **ref_kw)
    torch.testing.assert_close(z_part.double(), expected - plain, rtol=1e-5, atol=1e-6)
    for grad, exp in zip(grads, expected_grads):
        torch.testing.assert_close(grad.double(), exp, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_return_z_loss_and_a_nd_input(reduction):
    (h, W, b), y, w, prior = problem(2, lead=(3, 4))
    upstream = torch.rand(3, 4, dtype=torch.float64) + 0.5 if reduction == "none" else None
    kw = dict(weight=w, prior=prior, reduction=reduction, label_smoothing=0.1, z_loss=0.04, softcap=4.0)
    (loss, z_part), grads = run(h, W, b, y, upstream=upstream, return_z_loss=True, chunk_size=5, **kw)
    ref_kw = dict(eps=0.1, weight=w, prior=prior, reduction=reduction, softcap=4.0)
    expected, expected_grads = oracle(h, W, b, y, upstream=upstream, z_loss=0.04, **ref_kw)
    plain, _ = oracle(h, W, b, y, **ref_kw)
    shape = (3, 4) if reduction == "none" else ()
    torch.testing.assert_close(loss.detach(), expected.reshape(shape), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(z_part, (expected - plain).reshape(shape), rtol=1e-9, atol=1e-12)
    for grad, exp in zip(grads, expected_grads):
        torch.testing.assert_close(grad, exp, rtol=1e-9, atol=1e-12)


def test_bfloat16_products_stay_in_bfloat16():
    """Products in bfloat16, the kernel in float32: each logit and each gradient entry is rounded to
    bfloat16 once (relative 2^-8; the interpreter truncates: 2^-7), and the weight's gradient is
    accumulated in bfloat16 over the 3 chunks. Tolerances: a few bfloat16 ulps of each quantity."""
    (h, W, b), y, w, prior = problem(3)  # weights and prior stay float64 (a bfloat16 prior does not sum to 1)
    h, W, b = (t.to(torch.bfloat16) for t in (h, W, b))
    kw = dict(weight=w, prior=prior, label_smoothing=0.1, convention="others", z_loss=0.01, softcap=5.0)
    loss, grads = run(h, W, b, y, chunk_size=4, **kw)
    assert loss.dtype == torch.bfloat16 and all(g.dtype == torch.bfloat16 for g in grads)
    ref_kw = dict(eps=0.1, weight=w, prior=prior, convention="others", reduction="mean", z_loss=0.01, softcap=5.0)
    expected, expected_grads = oracle(h, W, b, y, **ref_kw)
    torch.testing.assert_close(loss.double(), expected, rtol=2.0**-6, atol=0.0)
    for grad, exp in zip(grads, expected_grads):
        torch.testing.assert_close(grad.double(), exp, rtol=2.0**-5, atol=2.0**-5 * float(exp.abs().max()))


def test_without_a_gradient_only_the_loss_is_computed():
    (h, W, b), y, w, _ = problem(4)
    kw = dict(weight=w, label_smoothing=0.2, z_loss=0.02, softcap=3.0, ignore_index=IGNORE)
    expected, _ = oracle(h, W, b, y, eps=0.2, weight=w, reduction="mean", z_loss=0.02, softcap=3.0)
    with torch.no_grad():
        loss = ls.linear_cross_entropy(h, W, y, linear_bias=b, backend="triton", chunk_size=3, **kw)
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)


def test_a_mean_over_only_ignored_targets_is_nan_with_zero_gradients():
    (h, W, b), _, _, _ = problem(5)
    loss, grads = run(h, W, b, torch.full((N,), IGNORE), label_smoothing=0.1, z_loss=0.1, softcap=3.0)
    assert torch.isnan(loss) and all(bool((g == 0).all()) for g in grads)


def test_auto_keeps_the_torch_path_for_cpu_tensors():
    (h, W, b), y, w, prior = problem(6, torch.float32)
    kw = dict(weight=w, prior=prior, label_smoothing=0.1, z_loss=0.01, chunk_size=4)
    auto, auto_grads = run(h, W, b, y, backend="auto", **kw)
    plain, plain_grads = run(h, W, b, y, backend="torch", **kw)
    assert torch.equal(auto, plain) and all(torch.equal(a, p) for a, p in zip(auto_grads, plain_grads))


def test_triton_on_cpu_tensors_without_the_interpreter_is_refused(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET")
    (h, W, b), y, _, _ = problem(7)
    with pytest.raises(ValueError, match="`backend` to be 'triton' only for CUDA tensors"):
        ls.linear_cross_entropy(h, W, y, backend="triton")


# --- the prepared GPU script's new checks (benchmarks/gpu_check.py), run here on CPU tensors -------------


@pytest.mark.slow
def test_gpu_script_term_and_linear_head_checks_pass_in_the_interpreter():
    """The script's z-loss/softcap and linear-head checks at small shapes: its own code is exercised, and
    its float64 dense reference agrees with ours (a wrong reference or a wrong path fails a check)."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    gpu_check = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = gpu_check  # dataclasses look their module up there
    try:
        spec.loader.exec_module(gpu_check)
        terms = gpu_check.check_fused_terms("cpu", ls.fused_cross_entropy, shape=(9, 37))
        linear = gpu_check.check_linear("cpu", shape=(9, 8, 37), chunk_size=4)
        # the reference itself, against the oracle of tests/reference.py
        z, y = torch.randn(5, 6, dtype=torch.float64) * 3, torch.tensor([0, IGNORE, 5, 2, 2])
        kw = dict(eps=0.1, convention="others", weight=torch.rand(6, dtype=torch.float64) + 0.5, reduction="none")
        torch.testing.assert_close(
            gpu_check.dense_reference(z, y, z_loss=0.05, softcap=3.0, **kw),
            R.cross_entropy(z, y, z_loss=0.05, softcap=3.0, **kw),
        )
    finally:
        del sys.modules["gpu_check"]
    # 2 dtypes × 2 option sets × 3 term sets × 2 reductions × in and out of place; 2 × 2 × 2 × 2
    assert (len(terms), len(linear)) == (48, 16)
    assert [c.name for c in terms + linear if not c.ok] == []
