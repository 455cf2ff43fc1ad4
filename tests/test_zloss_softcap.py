"""z-loss (λ·lse², PaLM) and logit softcapping (c·tanh(z/c), Gemma 2) against the float64 oracle.

Each implemented path (the reference cross_entropy, fused_cross_entropy with backend="torch",
linear_cross_entropy, the modules, the vocab-parallel losses on one process) gives the values and
gradients of tests/reference.py, written from the formulas. The Triton kernel's cases are in
tests/test_triton_zloss_softcap.py (Triton's interpreter), the multi-process ones in tests/test_distributed.py.
"""

import math

import pytest
import torch

import labelsmooth
from labelsmooth import cross_entropy, fused_cross_entropy
from tests import reference as R

K = 7
N = 11


def _case(seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(N, K, generator=g, dtype=torch.float64) * 4).to(dtype)
    y = torch.randint(0, K, (N,), generator=g)
    y[::4] = -100
    w = (torch.rand(K, generator=g, dtype=torch.float64) + 0.5).to(dtype)
    prior = torch.rand(K, generator=g, dtype=torch.float64) + 0.1
    return z, y, w, (prior / prior.sum()).to(dtype)


def _value_and_grad(fn, z, y, upstream, **kw):
    z = z.clone().requires_grad_()
    loss = fn(z, y, **kw)
    loss.backward(upstream if upstream is not None else torch.ones_like(loss))
    return loss.detach(), z.grad


def _fused(chunk):
    return lambda z, y, **kw: fused_cross_entropy(z, y, backend="torch", chunk_size=chunk, **kw)


PATHS = {"reference": cross_entropy, "fused": _fused(None), "fused-chunk3": _fused(3)}

TERMS = [(0.0, None), (0.03, None), (0.0, 2.5), (0.05, 3.0), (1e-4, 30.0)]


def _check(path, reduction, convention, use_prior, use_weight, z_loss, softcap, dtype, eps=0.2):
    z, y, w, prior = _case(0, dtype)
    kw = dict(
        reduction=reduction, label_smoothing=eps, convention=convention,
        prior=prior if use_prior else None, weight=w if use_weight else None,
    )  # fmt: skip
    upstream = torch.linspace(0.5, 2.0, N, dtype=dtype) if reduction == "none" else None
    out, grad = _value_and_grad(PATHS[path], z, y, upstream, z_loss=z_loss, softcap=softcap, **kw)
    ref_kw = dict(
        eps=eps, convention=convention, prior=kw["prior"], weight=kw["weight"], reduction=reduction,
        z_loss=z_loss, softcap=softcap,
    )  # fmt: skip
    ref = R.cross_entropy(z, y, **ref_kw)
    ref_grad = R.cross_entropy_grad(z, y, upstream=upstream, **ref_kw)
    tol = dict(rtol=1e-9, atol=1e-11) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), ref, **tol)
    torch.testing.assert_close(grad.double(), ref_grad, **tol)


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("convention", ["uniform", "others"])
@pytest.mark.parametrize("use_prior", [False, True])
@pytest.mark.parametrize("use_weight", [False, True])
@pytest.mark.parametrize("z_loss, softcap", TERMS)
def test_values_and_gradients_match_the_oracle_float64(
    path, reduction, convention, use_prior, use_weight, z_loss, softcap
):
    _check(path, reduction, convention, use_prior, use_weight, z_loss, softcap, torch.float64)


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("z_loss, softcap", TERMS[1:])
def test_values_and_gradients_match_the_oracle_float32(path, reduction, z_loss, softcap):
    _check(path, reduction, "others", True, True, z_loss, softcap, torch.float32)


@pytest.mark.parametrize("path", list(PATHS))
def test_without_smoothing(path):
    _check(path, "mean", "uniform", False, False, 0.02, 4.0, torch.float64, eps=0.0)


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("kw", [dict(), dict(label_smoothing=0.1), dict(label_smoothing=0.1, convention="others")])
def test_defaults_are_bit_identical_to_the_plain_call(path, kw):
    z, y, w, prior = _case(1, torch.float32)
    for extra in (dict(weight=w), dict(prior=prior), dict()):
        plain, plain_grad = _value_and_grad(PATHS[path], z, y, None, **kw, **extra)
        off, off_grad = _value_and_grad(PATHS[path], z, y, None, z_loss=0.0, softcap=None, **kw, **extra)
        assert torch.equal(plain, off) and torch.equal(plain_grad, off_grad)


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_return_z_loss_gives_the_z_loss_part(path, reduction):
    z, y, w, _ = _case(2)
    loss, z_part = PATHS[path](z, y, weight=w, reduction=reduction, label_smoothing=0.1, z_loss=0.04, softcap=5.0,
                               return_z_loss=True)  # fmt: skip
    plain = R.cross_entropy(z, y, eps=0.1, weight=w, reduction=reduction, softcap=5.0)
    with_z = R.cross_entropy(z, y, eps=0.1, weight=w, reduction=reduction, softcap=5.0, z_loss=0.04)
    torch.testing.assert_close(loss, with_z, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(z_part, with_z - plain, rtol=1e-9, atol=1e-12)
    kept = y != -100
    lse = torch.logsumexp(5.0 * torch.tanh(z / 5.0), 1)
    if reduction == "sum":
        torch.testing.assert_close(z_part, 0.04 * lse[kept].square().sum(), rtol=1e-10, atol=0)
    _, zero = PATHS[path](z, y, reduction=reduction, return_z_loss=True)
    assert torch.all(zero == 0)


@pytest.mark.parametrize("path", list(PATHS))
def test_probability_targets(path):
    g = torch.Generator().manual_seed(3)
    z = torch.randn(5, K, generator=g, dtype=torch.float64) * 3
    q = torch.softmax(torch.randn(5, K, generator=g, dtype=torch.float64), 1)
    zc = 2.0 * torch.tanh(z / 2.0)
    lse = torch.logsumexp(zc, 1)
    expected = (-(q * torch.log_softmax(zc, 1)).sum(1) + 0.1 * lse.square()).mean()  # ε = 0
    out, grad = _value_and_grad(PATHS[path], z, q, None, z_loss=0.1, softcap=2.0)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)
    p = torch.softmax(zc, 1)
    expected_grad = (p - q + 0.2 * lse.unsqueeze(1) * p) * (1 - torch.tanh(z / 2.0).square()) / 5
    torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-12)


def test_the_z_loss_pulls_the_log_partition_towards_zero():
    z = torch.full((1, K), 3.0, dtype=torch.float64, requires_grad=True)
    cross_entropy(z, torch.tensor([0]), z_loss=1.0).backward()
    lse = 3.0 + math.log(K)
    # every logit's gradient gains 2·λ·lse·p_k > 0: a step down lowers lse
    plain = torch.softmax(z.detach(), 1) - torch.nn.functional.one_hot(torch.tensor([0]), K)
    torch.testing.assert_close(z.grad - plain, torch.full((1, K), 2 * lse / K, dtype=torch.float64))


BAD = [
    (dict(z_loss=-0.1), ValueError, "`z_loss`.*-0.1"),
    (dict(z_loss=float("nan")), ValueError, "`z_loss`.*nan"),
    (dict(z_loss=float("inf")), ValueError, "`z_loss`.*inf"),
    (dict(z_loss="0.1"), TypeError, "`z_loss`.*str"),
    (dict(softcap=0.0), ValueError, "`softcap`.*0.0"),
    (dict(softcap=-1.0), ValueError, "`softcap`.*-1.0"),
    (dict(softcap=float("nan")), ValueError, "`softcap`.*nan"),
    (dict(softcap=float("inf")), ValueError, "`softcap`.*inf"),
    (dict(softcap=True), TypeError, "`softcap`.*bool"),
    (dict(return_z_loss=1), TypeError, "`return_z_loss`"),
]


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("kw, error, match", BAD)
def test_bad_values_are_refused_by_name(path, kw, error, match):
    z, y, _, _ = _case(4)
    with pytest.raises(error, match=match):
        PATHS[path](z, y, **kw)


@pytest.mark.parametrize("z_loss, softcap", TERMS[1:])
def test_fused_in_place_and_without_gradient(z_loss, softcap):
    z, y, w, prior = _case(5)
    kw = dict(weight=w, prior=prior, label_smoothing=0.1, z_loss=z_loss, softcap=softcap)
    ref = R.cross_entropy(z, y, eps=0.1, weight=w, prior=prior, z_loss=z_loss, softcap=softcap)
    ref_grad = R.cross_entropy_grad(z, y, eps=0.1, weight=w, prior=prior, z_loss=z_loss, softcap=softcap)
    leaf = z.clone().requires_grad_()
    activation = leaf * 1.0
    loss = fused_cross_entropy(activation, y, inplace=True, chunk_size=4, **kw)
    loss.backward()
    torch.testing.assert_close(loss.detach(), ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(leaf.grad, ref_grad, rtol=1e-9, atol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(fused_cross_entropy(z, y, chunk_size=4, **kw), ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fused_half_inputs_are_computed_in_float32(dtype):
    z, y, w, _ = _case(6)
    z = z.to(dtype)
    out, grad = _value_and_grad(_fused(3), z, y, None, weight=w, label_smoothing=0.1, z_loss=0.02, softcap=4.0)
    ref = R.cross_entropy(z, y, eps=0.1, weight=w, z_loss=0.02, softcap=4.0)
    ref_grad = R.cross_entropy_grad(z, y, eps=0.1, weight=w, z_loss=0.02, softcap=4.0)
    assert out.dtype == dtype and grad.dtype == dtype
    torch.testing.assert_close(out.double(), ref, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=2e-2, atol=2e-3)


def test_fused_auto_takes_the_torch_backend_for_the_new_terms():
    z, y, _, _ = _case(7)
    auto = fused_cross_entropy(z, y, z_loss=0.1, softcap=3.0)
    torch.testing.assert_close(auto, fused_cross_entropy(z, y, z_loss=0.1, softcap=3.0, backend="torch"))


def _head(seed, dtype, D=5):
    g = torch.Generator().manual_seed(seed)
    h = (torch.randn(N, D, generator=g, dtype=torch.float64)).to(dtype)
    W = (torch.randn(K, D, generator=g, dtype=torch.float64) * 1.5).to(dtype)
    bias = (torch.randn(K, generator=g, dtype=torch.float64)).to(dtype)
    return h, W, bias


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("convention", ["uniform", "others"])
@pytest.mark.parametrize("use_prior, use_weight", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("z_loss, softcap", TERMS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_linear_head_matches_the_oracle(reduction, convention, use_prior, use_weight, z_loss, softcap, dtype):
    _, y, w, prior = _case(9, dtype)
    h, W, bias = _head(9, dtype)
    kw = dict(
        reduction=reduction, label_smoothing=0.2, convention=convention,
        prior=prior if use_prior else None, weight=w if use_weight else None,
    )  # fmt: skip
    upstream = torch.linspace(0.5, 2.0, N, dtype=dtype) if reduction == "none" else None
    params = [t.clone().requires_grad_() for t in (h, W, bias)]
    loss = labelsmooth.linear_cross_entropy(
        params[0], params[1], y, linear_bias=params[2], chunk_size=4, z_loss=z_loss, softcap=softcap, **kw
    )
    loss.backward(upstream if upstream is not None else torch.ones_like(loss))
    z = h.double() @ W.double().T + bias.double()
    ref_kw = dict(
        eps=0.2, convention=convention, prior=kw["prior"], weight=kw["weight"], reduction=reduction,
        z_loss=z_loss, softcap=softcap,
    )  # fmt: skip
    G = R.cross_entropy_grad(z, y, upstream=upstream, **ref_kw)
    tol = dict(rtol=1e-9, atol=1e-11) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    assert loss.dtype == dtype
    torch.testing.assert_close(loss.detach().double(), R.cross_entropy(z, y, **ref_kw), **tol)
    torch.testing.assert_close(params[0].grad.double(), G @ W.double(), **tol)
    torch.testing.assert_close(params[1].grad.double(), G.T @ h.double(), **tol)
    torch.testing.assert_close(params[2].grad.double(), G.sum(0), **tol)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_linear_head_return_z_loss(reduction):
    _, y, w, _ = _case(10)
    h, W, bias = _head(10, torch.float64)
    loss, z_part = labelsmooth.linear_cross_entropy(
        h, W, y, linear_bias=bias, weight=w, reduction=reduction, label_smoothing=0.1, z_loss=0.03, softcap=6.0,
        return_z_loss=True, chunk_size=3,
    )  # fmt: skip
    z = h @ W.T + bias
    plain = R.cross_entropy(z, y, eps=0.1, weight=w, reduction=reduction, softcap=6.0)
    with_z = R.cross_entropy(z, y, eps=0.1, weight=w, reduction=reduction, softcap=6.0, z_loss=0.03)
    torch.testing.assert_close(loss, with_z, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(z_part, with_z - plain, rtol=1e-9, atol=1e-12)


def test_linear_head_defaults_are_bit_identical():
    _, y, w, prior = _case(11, torch.float32)
    h, W, bias = _head(11, torch.float32)
    results = []
    for extra in (dict(), dict(z_loss=0.0, softcap=None)):
        params = [t.clone().requires_grad_() for t in (h, W, bias)]
        loss = labelsmooth.linear_cross_entropy(
            params[0], params[1], y, linear_bias=params[2], weight=w, prior=prior, label_smoothing=0.1, **extra
        )
        loss.backward()
        results.append([loss.detach()] + [p.grad for p in params])
    assert all(torch.equal(a, b) for a, b in zip(*results))


@pytest.mark.parametrize("kw, error, match", BAD)
def test_linear_head_bad_values_are_refused_by_name(kw, error, match):
    _, y, _, _ = _case(12)
    h, W, _ = _head(12, torch.float64)
    with pytest.raises(error, match=match):
        labelsmooth.linear_cross_entropy(h, W, y, **kw)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_modules_take_and_pass_the_terms(reduction):
    z, y, w, prior = _case(13)
    kw = dict(weight=w, reduction=reduction, label_smoothing=0.1, prior=prior, z_loss=0.02, softcap=4.0)
    module = labelsmooth.CrossEntropyLoss(**kw)
    assert "z_loss=0.02" in repr(module) and "softcap=4.0" in repr(module)
    ref_kw = dict(eps=0.1, weight=w, prior=prior, reduction=reduction, z_loss=0.02, softcap=4.0)
    torch.testing.assert_close(module(z, y), R.cross_entropy(z, y, **ref_kw), rtol=1e-10, atol=1e-12)
    loss, z_part = labelsmooth.CrossEntropyLoss(**kw, return_z_loss=True)(z, y)
    torch.testing.assert_close(
        z_part, R.cross_entropy(z, y, **ref_kw) - R.cross_entropy(z, y, **{**ref_kw, "z_loss": 0.0})
    )
    h, W, bias = _head(13, torch.float64)
    head = labelsmooth.LinearCrossEntropyLoss(**kw, chunk_size=3)
    ref = R.cross_entropy(h @ W.T + bias, y, **ref_kw)
    torch.testing.assert_close(head(h, W, y, bias), ref, rtol=1e-10, atol=1e-12)
    loss, z_part = labelsmooth.LinearCrossEntropyLoss(**kw, return_z_loss=True)(h, W, y, bias)
    torch.testing.assert_close(loss, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("module", [labelsmooth.CrossEntropyLoss, labelsmooth.LinearCrossEntropyLoss])
@pytest.mark.parametrize("kw, error, match", BAD)
def test_modules_refuse_bad_values_at_construction(module, kw, error, match):
    with pytest.raises(error, match=match):
        module(**kw)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("z_loss, softcap", TERMS[1:])
def test_vocab_parallel_losses_on_one_process_match_the_oracle(reduction, z_loss, softcap):
    """World size 1 (no process group); tests/test_distributed.py splits the classes over 2 and 3 ranks."""
    from labelsmooth.distributed import vocab_parallel_cross_entropy, vocab_parallel_linear_cross_entropy

    z, y, w, prior = _case(14)
    h, W, bias = _head(14, torch.float64)
    kw = dict(weight=w, prior=prior, reduction=reduction, label_smoothing=0.2, convention="others")
    ref_kw = dict(eps=0.2, weight=w, prior=prior, convention="others", reduction=reduction, softcap=softcap)
    upstream = torch.linspace(0.5, 2.0, N, dtype=torch.float64) if reduction == "none" else None
    out, grad = _value_and_grad(vocab_parallel_cross_entropy, z, y, upstream, z_loss=z_loss, softcap=softcap, **kw)
    torch.testing.assert_close(out, R.cross_entropy(z, y, z_loss=z_loss, **ref_kw), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, R.cross_entropy_grad(z, y, z_loss=z_loss, upstream=upstream, **ref_kw),
                               rtol=1e-9, atol=1e-12)  # fmt: skip
    _, z_part = vocab_parallel_cross_entropy(z, y, z_loss=z_loss, softcap=softcap, return_z_loss=True, **kw)
    expected = R.cross_entropy(z, y, z_loss=z_loss, **ref_kw) - R.cross_entropy(z, y, **ref_kw)
    torch.testing.assert_close(z_part, expected, rtol=1e-9, atol=1e-12)

    params = [t.clone().requires_grad_() for t in (h, W, bias)]
    loss, z_part = vocab_parallel_linear_cross_entropy(
        params[0], params[1], y, local_bias=params[2], chunk_size=4, z_loss=z_loss, softcap=softcap,
        return_z_loss=True, **kw,
    )  # fmt: skip
    loss.backward(torch.ones_like(loss) if upstream is None else upstream)
    logits = h @ W.T + bias
    G = R.cross_entropy_grad(logits, y, z_loss=z_loss, upstream=upstream, **ref_kw)
    torch.testing.assert_close(loss.detach(), R.cross_entropy(logits, y, z_loss=z_loss, **ref_kw), rtol=1e-10,
                               atol=1e-12)  # fmt: skip
    torch.testing.assert_close(z_part, R.cross_entropy(logits, y, z_loss=z_loss, **ref_kw)
                               - R.cross_entropy(logits, y, **ref_kw), rtol=1e-9, atol=1e-12)  # fmt: skip
    for param, expected in zip(params, (G @ W, G.T @ h, G.sum(0))):
        torch.testing.assert_close(param.grad, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kw, error, match", BAD)
def test_vocab_parallel_losses_refuse_bad_values_by_name(kw, error, match):
    from labelsmooth.distributed import vocab_parallel_cross_entropy, vocab_parallel_linear_cross_entropy

    z, y, _, _ = _case(14)
    h, W, _ = _head(14, torch.float64)
    with pytest.raises(error, match=match):
        vocab_parallel_cross_entropy(z, y, **kw)
    with pytest.raises(error, match=match):
        vocab_parallel_linear_cross_entropy(h, W, y, **kw)


@pytest.mark.parametrize("path", list(PATHS))
def test_spatial_inputs_match_the_flattened_oracle(path):
    g = torch.Generator().manual_seed(15)
    z = torch.randn(3, K, 4, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, K, (3, 4), generator=g)
    y[0, 0] = -100
    out, grad = _value_and_grad(PATHS[path], z, y, None, label_smoothing=0.1, z_loss=0.05, softcap=2.0)
    flat_z, flat_y = z.movedim(1, -1).reshape(-1, K), y.reshape(-1)
    kw = dict(eps=0.1, z_loss=0.05, softcap=2.0)
    torch.testing.assert_close(out, R.cross_entropy(flat_z, flat_y, **kw), rtol=1e-10, atol=1e-12)
    ref_grad = R.cross_entropy_grad(flat_z, flat_y, **kw).reshape(3, 4, K).movedim(-1, 1)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("path", list(PATHS))
def test_a_mean_over_only_ignored_targets_is_nan_with_zero_gradient(path):
    z, _, _, _ = _case(16)
    y = torch.full((N,), -100)
    out, grad = _value_and_grad(PATHS[path], z, y, None, z_loss=0.1, softcap=3.0)
    assert torch.isnan(out) and torch.all(grad == 0)


needs_compiler = pytest.mark.skipif(
    labelsmooth.kernels._cxx_compiler() is None, reason="torch.compile needs a C++ compiler"
)


@needs_compiler
@pytest.mark.parametrize(
    "reduction, z_loss, softcap", [("mean", 0.05, 3.0), ("none", 0.05, 3.0), ("sum", 0.0, 3.0), ("mean", 0.05, None)]
)
def test_compiled_backend_matches_the_oracle(reduction, z_loss, softcap):
    _check_compiled = _fused_backend("compiled", 4)
    z, y, w, prior = _case(17)
    kw = dict(reduction=reduction, label_smoothing=0.2, convention="others", prior=prior, weight=w)
    upstream = torch.linspace(0.5, 2.0, N, dtype=torch.float64) if reduction == "none" else None
    out, grad = _value_and_grad(_check_compiled, z, y, upstream, z_loss=z_loss, softcap=softcap, **kw)
    ref_kw = dict(eps=0.2, convention="others", prior=prior, weight=w, reduction=reduction)
    ref_kw.update(z_loss=z_loss, softcap=softcap)
    torch.testing.assert_close(out, R.cross_entropy(z, y, **ref_kw), rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(grad, R.cross_entropy_grad(z, y, upstream=upstream, **ref_kw), rtol=1e-9, atol=1e-11)
    if reduction == "mean":
        loss, z_part = _check_compiled(z, y, z_loss=z_loss, softcap=softcap, return_z_loss=True, **kw)
        expected = R.cross_entropy(z, y, **ref_kw) - R.cross_entropy(z, y, **{**ref_kw, "z_loss": 0.0})
        torch.testing.assert_close(z_part, expected, rtol=1e-9, atol=1e-12)


def _fused_backend(backend, chunk):
    return lambda z, y, **kw: fused_cross_entropy(z, y, backend=backend, chunk_size=chunk, **kw)


@needs_compiler
def test_compiled_backend_in_place():
    z, y, w, _ = _case(18)
    kw = dict(weight=w, label_smoothing=0.1, z_loss=0.05, softcap=3.0)
    leaf = z.clone().requires_grad_()
    loss = fused_cross_entropy(leaf * 1.0, y, inplace=True, chunk_size=4, backend="compiled", **kw)
    loss.backward()
    ref_kw = dict(eps=0.1, weight=w, z_loss=0.05, softcap=3.0)
    torch.testing.assert_close(loss.detach(), R.cross_entropy(z, y, **ref_kw), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(leaf.grad, R.cross_entropy_grad(z, y, **ref_kw), rtol=1e-9, atol=1e-12)
