"""Every public loss inside ``torch.compile(step, fullgraph=True)``: forward and backward, equal to eager.

Each step is compiled once per shape and dtype: three batches of new values run through one compiled frame
(counted by Dynamo's CompileCounterWithBackend), with values and gradients equal to the eager step's.
Most cases use the "aot_eager" backend, which traces the whole forward and backward graphs as Inductor
would (fullgraph: any graph break or host sync raises) without compiling C++; one case per loss family
runs the default Inductor backend. Checks that need the data (class-index ranges, the prior's values)
are assertions inside the graph there: bad values still raise.
"""

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

import labelsmooth as L
from labelsmooth import kernels
from labelsmooth.kernels import _cxx_compiler, select_backend

N, K, D = 12, 7, 5
DT = torch.float64


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _batch(seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(N, K, generator=g, dtype=DT) * 3
    y = torch.randint(0, K, (N,), generator=g)
    y[::5] = -100
    h = torch.randn(N, D, generator=g, dtype=DT)
    return dict(z=z, y=y, h=h, soft=torch.softmax(torch.randn(N, K, generator=g, dtype=DT), 1))


G = torch.Generator().manual_seed(99)
PRIOR = torch.softmax(torch.randn(K, generator=G, dtype=DT), 0)
WEIGHT = torch.rand(K, generator=G, dtype=DT) + 0.5
HEAD_W = torch.randn(K, D, generator=G, dtype=DT)
HEAD_B = torch.randn(K, generator=G, dtype=DT)


# name -> step(z or h, W, b, batch) -> loss; z/h, W and b get gradients
def _ce(**kw):
    return lambda z, W, b, d: L.cross_entropy(z, d["y"], **kw)


def _fused(**kw):
    # z * 1: an activation (the in-place variant overwrites it)
    return lambda z, W, b, d: L.fused_cross_entropy(z * 1, d["y"], **kw)


def _linear(**kw):
    return lambda h, W, b, d: L.linear_cross_entropy(h, W, d["y"], linear_bias=b, **kw)


def _first(fn):
    return lambda *a: fn(*a)[0]


_ce_module = L.CrossEntropyLoss(WEIGHT, label_smoothing=0.1, prior=PRIOR, z_loss=1e-2)
_lin_module = L.LinearCrossEntropyLoss(label_smoothing=0.1, convention="others", softcap=4.0, chunk_size=5)
_cp_module = L.ConfidencePenaltyLoss(beta=0.3, threshold=1.0)
_bce_module = L.BCEWithLogitsLoss(label_smoothing=0.1)
_liger = L.LigerCompatibleFusedLinearCrossEntropyLoss(WEIGHT, lse_square_scale=1e-2, label_smoothing=0.1, softcap=5.0)

STEPS = {
    "cross_entropy": _ce(label_smoothing=0.1),
    "cross_entropy others weight": _ce(weight=WEIGHT, label_smoothing=0.1, convention="others"),
    "cross_entropy prior": _ce(label_smoothing=0.2, prior=PRIOR),
    "cross_entropy z_loss softcap none": lambda z, W, b, d: L.cross_entropy(
        z, d["y"], reduction="none", label_smoothing=0.1, z_loss=1e-2, softcap=3.0
    ).sum(),
    "cross_entropy probabilities": lambda z, W, b, d: L.cross_entropy(z, d["soft"], label_smoothing=0.1),
    "fused torch": _fused(label_smoothing=0.1, backend="torch"),
    "fused torch prior weight chunks": _fused(
        weight=WEIGHT, label_smoothing=0.1, prior=PRIOR, backend="torch", chunk_size=5
    ),
    "fused torch z_loss softcap": _first(
        _fused(label_smoothing=0.1, backend="torch", z_loss=1e-2, softcap=3.0, return_z_loss=True)
    ),
    "fused compiled": _fused(label_smoothing=0.1, backend="compiled"),
    "fused compiled others sum": _fused(label_smoothing=0.1, convention="others", reduction="sum", backend="compiled"),
    "fused auto in place": _fused(label_smoothing=0.1, inplace=True),
    "fused auto none": lambda z, W, b, d: (
        L.fused_cross_entropy(z * 1, d["y"], reduction="none", label_smoothing=0.1) * torch.arange(N)
    ).sum(),
    "fused probabilities": lambda z, W, b, d: L.fused_cross_entropy(z * 1, d["soft"], label_smoothing=0.1),
    "linear": _linear(label_smoothing=0.1),
    "linear prior weight z_loss": _linear(label_smoothing=0.1, prior=PRIOR, weight=WEIGHT, z_loss=1e-2, chunk_size=5),
    "linear softcap none": lambda h, W, b, d: (
        L.linear_cross_entropy(h, W, d["y"], linear_bias=b, reduction="none", label_smoothing=0.1, softcap=3.0)
        * torch.arange(N)
    ).sum(),
    "binary_cross_entropy_with_logits": lambda z, W, b, d: L.binary_cross_entropy_with_logits(
        z, (d["soft"] > 0.2).to(DT), label_smoothing=0.1
    ),
    "confidence_penalty": lambda z, W, b, d: L.confidence_penalty(z, 0.5, threshold=1.5),
    "CrossEntropyLoss": lambda z, W, b, d: _ce_module(z, d["y"]),
    "LinearCrossEntropyLoss": lambda h, W, b, d: _lin_module(h, W, d["y"], b),
    "ConfidencePenaltyLoss": lambda z, W, b, d: _cp_module(z, d["y"]),
    "BCEWithLogitsLoss": lambda z, W, b, d: _bce_module(z, (d["soft"] > 0.2).to(DT)),
    "LigerCompatibleFusedLinearCrossEntropyLoss": lambda h, W, b, d: _liger(W, h, d["y"], b),
}
LINEAR = {"linear", "linear prior weight z_loss", "linear softcap none", "LinearCrossEntropyLoss"}
LINEAR.add("LigerCompatibleFusedLinearCrossEntropyLoss")


def _run(step, name, batch):
    x = (batch["h"] if name in LINEAR else batch["z"]).clone().requires_grad_()
    W, b = HEAD_W.clone().requires_grad_(), HEAD_B.clone().requires_grad_()
    loss = step(x, W, b, batch)
    loss.backward()
    grads = [x.grad] + ([W.grad, b.grad] if name in LINEAR else [])
    return loss.detach(), grads


def _check_compiled_equals_eager(name, backend):
    counter = CompileCounterWithBackend(backend)
    compiled = torch.compile(STEPS[name], fullgraph=True, backend=counter)
    for seed in range(3):  # new values, the same shapes: one compiled frame
        batch = _batch(seed)
        want, want_grads = _run(STEPS[name], name, batch)
        got, got_grads = _run(compiled, name, batch)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
        for g, w in zip(got_grads, want_grads):
            torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
    assert counter.frame_count == 1


@pytest.mark.parametrize("name", list(STEPS))
def test_fullgraph_compiled_step_equals_eager_and_compiles_once(name):
    _check_compiled_equals_eager(name, "aot_eager")


needs_compiler = pytest.mark.skipif(_cxx_compiler() is None, reason="Inductor needs a C++ compiler on CPUs")


@needs_compiler
@pytest.mark.parametrize("name", ["fused auto none", "LigerCompatibleFusedLinearCrossEntropyLoss"])
def test_inductor_compiled_step_equals_eager(name):
    _check_compiled_equals_eager(name, "inductor")


def test_auto_keeps_the_plain_backend_for_small_cpu_inputs_in_eager_mode_and_traces_the_compiled_one_under_compile(
    monkeypatch,
):
    z = torch.zeros(4, 3)
    assert select_backend("auto", z) is kernels.torch_backend  # large inputs: tests/test_auto_backend.py
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)  # what Dynamo reports while tracing
    assert select_backend("auto", z) is kernels.compiled_backend


def test_target_range_is_asserted_inside_the_graph():
    y = _batch(0)["y"].clone()
    y[1] = K
    z = _batch(0)["z"].requires_grad_()
    for fn in (
        lambda z, y: L.cross_entropy(z, y, prior=PRIOR),
        lambda z, y: L.fused_cross_entropy(z * 1, y, label_smoothing=0.1),
        lambda z, y: L.linear_cross_entropy(z, HEAD_W[:, :K].T.contiguous(), y),
    ):
        torch._dynamo.reset()
        with pytest.raises(RuntimeError, match="Expected argument `target` to hold class indices in"):
            torch.compile(fn, fullgraph=True, backend="aot_eager")(z, y)


def test_prior_values_are_asserted_inside_the_graph():
    z, y = _batch(0)["z"], _batch(0)["y"]
    step = torch.compile(lambda z, y, p: L.cross_entropy(z, y, label_smoothing=0.1, prior=p), fullgraph=True,
                         backend="aot_eager")  # fmt: skip
    torch.testing.assert_close(step(z, y, PRIOR), L.cross_entropy(z, y, label_smoothing=0.1, prior=PRIOR))
    with pytest.raises(RuntimeError, match="Expected argument `prior` to sum to 1"):
        step(z, y, PRIOR * 2)
    with pytest.raises(RuntimeError, match="Expected argument `prior` to be non-negative"):
        step(z, y, PRIOR - PRIOR.mean())


@needs_compiler
def test_compiled_linear_head_frees_each_chunk_as_in_eager_mode():
    # Inside a compiled step the chunk loop is one opaque node (linear._linear_head), so each chunk's
    # (64, V) logits are freed before the next: the step holds far less than the full (N, V) logits.
    from tests.integrations._memory import peak_allocated_bytes

    g = torch.Generator().manual_seed(0)
    N, V, D = 1024, 8192, 16
    h = torch.randn(N, D, generator=g).requires_grad_()
    W = (torch.randn(V, D, generator=g) / 4).requires_grad_()
    y = torch.randint(0, V, (N,), generator=g)

    def step(h, W, y):
        return L.linear_cross_entropy(h * 1, W, y, label_smoothing=0.1, chunk_size=64)

    compiled = torch.compile(step, fullgraph=True)

    def run(fn):
        h.grad = W.grad = None
        loss = fn(h, W, y)
        loss.backward()
        return loss.detach(), h.grad.clone(), W.grad.clone()

    want = run(step)
    got = run(compiled)  # compiles
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    logits_bytes = N * V * 4
    assert peak_allocated_bytes(lambda: run(compiled)) < logits_bytes / 4
