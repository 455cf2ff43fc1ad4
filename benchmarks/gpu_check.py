"""GPU check of the Triton paths: correctness on CUDA against float64, then time and peak memory.

One command, on a machine with an NVIDIA GPU (docs/performance.md, "GPU (Triton)"), made to finish in
about 8 minutes on an H200 (``--budget-s`` stops starting new sections after 420 s and says so):

    PYTHONPATH=src python benchmarks/gpu_check.py --out benchmarks/results/gpu_check.md

1. Correctness, in float32 and bfloat16, at shapes that are no multiple of a tile:
   a. the Triton kernels (``labelsmooth.kernels.triton_backend``) and ``labelsmooth.fused_cross_entropy``
      with the torch and triton backends (``--with-compiled`` adds "compiled"), in and out of place,
      against ``labelsmooth.cross_entropy`` with autograd, across both conventions, a prior, class
      weights, ignore_index and every reduction;
   b. the z-loss and the softcap in ``fused_cross_entropy(backend="triton")`` (with ``return_z_loss``),
      and the GPU linear head ``linear_cross_entropy(backend="triton")`` (loss and the gradients of input,
      weight and bias), against a dense float64 reference written here from the formulas
      (:func:`dense_reference`), with smoothing, a prior, weights, ignore_index, z-loss and softcap.
2. Time and memory, median forward+backward time over ``--reps`` repetitions after ``--warmup`` (CUDA
   events) and the peak memory allocated beyond the inputs (``torch.cuda.max_memory_allocated``):
   a. the linear head in bfloat16 at B·T = 8,192 rows, hidden 4,096, V = 131,072 (defaults): torch
      (``F.linear`` + ``F.cross_entropy``), ours (triton and torch paths) and Liger-Kernel's
      ``LigerFusedLinearCrossEntropyLoss``, with ε = 0.1 alone and with z-loss and softcap;
   b. the cross-entropy on bfloat16 logits at 8,192 rows and V = 32,768 and 131,072: torch's
      ``F.cross_entropy(label_smoothing=0.1)``, ours (each backend, in and out of place; with the new
      terms) and Liger-Kernel's ``LigerCrossEntropyLoss``.
   Liger's rows say "not installed" (and everything else is measured) when liger_kernel does not import.

It prints a markdown report naming the GPU, with tables ready for docs/performance.md, and writes it to
``--out``. Without a CUDA device it exits at once with status 2 and measures nothing. Exit status 1 means
a correctness check failed. The correctness functions take a device and a shape, so the tests run them
on CPU tensors in Triton's interpreter (tests/test_triton.py, tests/test_linear_triton.py).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import inspect
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

EPS = 0.1  # label smoothing ε of every benchmark row (uniform convention: what torch and Liger compute)
IGNORE = -100
DEFAULT_ROWS = 8192  # B·T
DEFAULT_VOCAB = (32768, 131072)
DEFAULT_HIDDEN = 4096  # the linear head: B·T = DEFAULT_ROWS rows of hidden states
DEFAULT_LINEAR_VOCAB = 131072
FUSED_BACKENDS = ("torch", "triton")
COMPILED = "compiled"  # torch.compile's own (Inductor-made Triton) kernel: --with-compiled (it compiles per shape)
Z_LOSS, SOFTCAP = 1e-4, 30.0  # the terms of the timed rows (Liger: lse_square_scale, softcap)
CHECK_TERMS = ((0.05, None), (0.0, 3.0), (0.05, 3.0))  # (z_loss, softcap) of the correctness checks: both bite
TOLERANCE = {  # (rtol, atol) for losses and for gradients
    torch.float32: dict(loss=(1e-5, 1e-6), grad=(1e-5, 1e-7)),
    # the reference runs in float32 on the very bfloat16 values; the kernels compute in float32 and round
    # the gradient (and a bfloat16 loss) once: relative error below one bfloat16 ulp, 2^-7 (compiled
    # Triton rounds to nearest, within 2^-9; Triton's CPU interpreter truncates, within 2^-7)
    torch.bfloat16: dict(loss=(2.0**-7, 1e-5), grad=(2.0**-7, 1e-6)),
}


# --- correctness --------------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    dtype: torch.dtype
    loss_err: float
    grad_err: float
    ok: bool


def reference(z: torch.Tensor, y: torch.Tensor, opts: dict, reduction: str) -> tuple[torch.Tensor, torch.Tensor]:
    import labelsmooth as ls

    z = z.detach().float().requires_grad_(True)  # float32 on the logits' exact values
    loss = ls.cross_entropy(z, y, ignore_index=IGNORE, reduction=reduction, label_smoothing=EPS, **opts)
    loss.backward(torch.ones_like(loss))
    return loss.detach().float(), z.grad.float()


def compare(name, dtype, loss, grad, ref_loss, ref_grad) -> Check:
    (lr, la), (gr, ga) = TOLERANCE[dtype]["loss"], TOLERANCE[dtype]["grad"]
    loss, grad = loss.detach().float(), grad.float()
    ok = bool(torch.allclose(loss, ref_loss, rtol=lr, atol=la) and torch.allclose(grad, ref_grad, rtol=gr, atol=ga))
    return Check(name, dtype, (loss - ref_loss).abs().max().item(), (grad - ref_grad).abs().max().item(), ok)


def check_problems(device: str, dtype: torch.dtype, M: int, K: int):
    """Small problems of odd sizes (default M = 300 rows, K = 5,003 classes), every option the kernels fold in."""
    g = torch.Generator(device="cpu").manual_seed(0)
    z = (torch.randn(M, K, generator=g) * 3).to(device=device, dtype=dtype)
    y = torch.randint(0, K, (M,), generator=g)
    y[::7] = IGNORE
    y = y.to(device)
    prior = torch.arange(1, K + 1, dtype=torch.float32)
    weight = torch.rand(K, generator=g) + 0.5
    for convention in ("uniform", "others"):
        for opts in ({}, {"prior": (prior / prior.sum()).to(device)}, {"weight": weight.to(device)}):
            yield f"{convention}{''.join(', ' + k for k in opts)}", z, y, {"convention": convention, **opts}


CHECK_SHAPE = (300, 5003)  # no multiple of any tile width


def check_kernels(device: str, shape: tuple[int, int] = CHECK_SHAPE) -> list[Check]:
    from labelsmooth.kernels import triton_backend
    from labelsmooth.targets import index_target_coefficients

    checks = []
    for dtype in (torch.float32, torch.bfloat16):
        for label, z, y, opts in check_problems(device, dtype, *shape):
            for reduction in ("mean", "sum", "none"):
                ref_loss, ref_grad = reference(z, y, opts, reduction)
                c = index_target_coefficients(
                    y, z.shape[1], EPS, ignore_index=IGNORE, convention=opts["convention"],
                    prior=opts.get("prior"), weight=opts.get("weight"),
                )  # fmt: skip
                scale = (1.0 / c.row_weight.sum()) * torch.ones_like(c.row_weight) if reduction == "mean" else None
                scale = torch.ones_like(c.row_weight) if scale is None else scale
                for inplace in (False, True):
                    name = f"kernels {label}, {reduction}{', in place' if inplace else ''}"
                    try:
                        row_loss, grad = triton_backend.loss_and_grad(z.clone(), c, scale, inplace=inplace)
                    except Exception as e:  # report it with the rest, do not stop
                        checks.append(Check(f"{name}: {type(e).__name__}: {e}"[:300], dtype, math.nan, math.nan, False))
                        continue
                    loss = {"mean": (row_loss * scale).sum(), "sum": row_loss.sum(), "none": row_loss}[reduction]
                    checks.append(compare(name, dtype, loss, grad, ref_loss, ref_grad))
    return checks


def fused_function() -> Callable | None:
    """``labelsmooth.fused_cross_entropy`` when this checkout has it with ``backend`` and ``inplace``."""
    import labelsmooth as ls

    fn = getattr(ls, "fused_cross_entropy", None)
    if fn is None:
        return None
    params = inspect.signature(fn).parameters
    return fn if "backend" in params and "inplace" in params else None


def check_fused(
    device: str, fused: Callable, shape: tuple[int, int] = CHECK_SHAPE, backends: tuple[str, ...] = FUSED_BACKENDS
) -> list[Check]:
    checks = []
    for dtype in (torch.float32, torch.bfloat16):
        for label, z, y, opts in check_problems(device, dtype, *shape):
            for reduction in ("mean", "none"):
                ref_loss, ref_grad = reference(z, y, opts, reduction)
                for backend in backends:
                    for inplace in (False, True):
                        name = f"fused {backend} {label}, {reduction}{', in place' if inplace else ''}"
                        zz = z.clone().requires_grad_(True) * 1.0  # an activation: in place needs a non-leaf
                        try:
                            loss = fused(zz, y, ignore_index=IGNORE, reduction=reduction, label_smoothing=EPS,
                                         backend=backend, inplace=inplace, **opts)  # fmt: skip
                            (grad,) = torch.autograd.grad(loss, zz, torch.ones_like(loss))
                        except Exception as e:  # report it with the rest, do not stop
                            checks.append(Check(f"{name}: {type(e).__name__}: {e}", dtype, math.nan, math.nan, False))
                            continue
                        checks.append(compare(name, dtype, loss, grad, ref_loss, ref_grad))
    return checks


# --- z-loss, softcap and the linear head, against a dense float64 reference ----------------------------


def dense_reference(
    z: torch.Tensor, y: torch.Tensor, *, eps: float, convention: str = "uniform", prior=None, weight=None,
    reduction: str = "mean", z_loss: float = 0.0, softcap: float | None = None,
) -> torch.Tensor:  # fmt: skip
    """The loss in float64 from the formulas of docs/theory.md (§1, §6, §9), dense, with autograd.

    x = c·tanh(z/c) (or z); q_i = (1 − ε)e_y + επ ("uniform") or 1 − ε on y and επ_k/(1 − π_y) elsewhere
    ("others"); ℓ_i = −Σ_k w_k q_ik log softmax(x_i)_k + λ·lse(x_i)² on kept rows; "mean" divides by
    Σ w_{y_i} over the kept rows.
    """
    K = z.shape[1]
    x = z if softcap is None else softcap * torch.tanh(z / softcap)
    keep = y != IGNORE
    ys = torch.where(keep, y, 0)
    pi = torch.full((K,), 1.0 / K, dtype=z.dtype, device=z.device) if prior is None else prior.to(z)
    onehot = F.one_hot(ys, K).to(z.dtype)
    if convention == "uniform":
        q = (1.0 - eps) * onehot + eps * pi
    else:
        others = eps * pi / (1.0 - pi[ys]).unsqueeze(1)
        q = torch.where(onehot.bool(), 1.0 - eps, others)
    w = torch.ones(K, dtype=z.dtype, device=z.device) if weight is None else weight.to(z)
    lse = torch.logsumexp(x, 1)
    row = -(w * q * (x - lse.unsqueeze(1))).sum(1) + z_loss * lse.square()
    row = torch.where(keep, row, 0.0)
    if reduction == "none":
        return row
    return row.sum() if reduction == "sum" else row.sum() / w[ys][keep].sum()


def _rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    """max |a − ref| / max |ref| (the error in units of the largest entry)."""
    return ((a.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()


# relative to the largest entry; bfloat16: the loss and each gradient entry are rounded once (2^-8), the
# linear head also rounds its logits to bfloat16 before the kernel and accumulates the weight's gradient
# in bfloat16 over the chunks: a few bfloat16 ulps
TERMS_TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2.0**-6}
LINEAR_TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2.0**-5}


def _term_problems(device: str, dtype: torch.dtype, M: int, K: int):
    g = torch.Generator(device="cpu").manual_seed(1)
    z = (torch.randn(M, K, generator=g, dtype=torch.float64) * 3).to(dtype)
    y = torch.randint(0, K, (M,), generator=g)
    y[::7] = IGNORE
    prior = torch.rand(K, generator=g, dtype=torch.float64) + 0.1
    weight = torch.rand(K, generator=g, dtype=torch.float64) + 0.5
    yield "uniform", z.to(device), y.to(device), dict(convention="uniform")
    yield (
        "others, prior, weight",
        z.to(device),
        y.to(device),
        dict(convention="others", prior=(prior / prior.sum()).to(device), weight=weight.to(device)),
    )


def check_fused_terms(device: str, fused: Callable, shape: tuple[int, int] = CHECK_SHAPE) -> list[Check]:
    """fused_cross_entropy(backend="triton") with z-loss and/or softcap (and return_z_loss) vs float64."""
    checks = []
    for dtype in (torch.float32, torch.bfloat16):
        tol = TERMS_TOLERANCE[dtype]
        for label, z, y, opts in _term_problems(device, dtype, *shape):
            for z_loss, softcap in CHECK_TERMS:
                for reduction in ("mean", "none"):
                    z64 = z.double().requires_grad_(True)
                    ref_kw = dict(eps=EPS, reduction=reduction, z_loss=z_loss, softcap=softcap, **opts)
                    ref = dense_reference(z64, y, **ref_kw)
                    (ref_grad,) = torch.autograd.grad(ref.sum(), z64)
                    ref_z = ref.detach() - dense_reference(z.double(), y, **{**ref_kw, "z_loss": 0.0})
                    for inplace in (False, True):
                        name = f"terms z_loss={z_loss} softcap={softcap} {label}, {reduction}" + (
                            ", in place" if inplace else ""
                        )
                        zz = z.clone().requires_grad_(True) * 1.0
                        try:
                            loss, z_part = fused(zz, y, ignore_index=IGNORE, reduction=reduction, label_smoothing=EPS,
                                                 backend="triton", inplace=inplace, z_loss=z_loss, softcap=softcap,
                                                 return_z_loss=True, **opts)  # fmt: skip
                            (grad,) = torch.autograd.grad(loss, zz, torch.ones_like(loss))
                        except Exception as e:  # report it with the rest, do not stop
                            checks.append(
                                Check(f"{name}: {type(e).__name__}: {e}"[:300], dtype, math.nan, math.nan, False)
                            )
                            continue
                        loss_err = max(_rel(loss.detach(), ref.detach()), _rel(z_part, ref_z) if z_loss else 0.0)
                        grad_err = _rel(grad, ref_grad)
                        checks.append(Check(name, dtype, loss_err, grad_err, loss_err <= tol and grad_err <= tol))
    return checks


LINEAR_CHECK_SHAPE = (300, 128, 5003)  # rows, hidden, vocabulary; chunks of 64 rows (an uneven last one)


def check_linear(device: str, shape: tuple[int, int, int] = LINEAR_CHECK_SHAPE, chunk_size: int = 64) -> list[Check]:
    """linear_cross_entropy(backend="triton") against the dense float64 reference on h Wᵀ + b: the loss
    and the gradients of input, weight and bias (the error: the largest of the three, relative)."""
    import labelsmooth as ls

    M, D, V = shape
    g = torch.Generator(device="cpu").manual_seed(2)
    h64 = torch.randn(M, D, generator=g, dtype=torch.float64)
    W64 = torch.randn(V, D, generator=g, dtype=torch.float64) * (3.0 / math.sqrt(D))
    b64 = torch.randn(V, generator=g, dtype=torch.float64)
    y = torch.randint(0, V, (M,), generator=g)
    y[::7] = IGNORE
    prior = torch.rand(V, generator=g, dtype=torch.float64) + 0.1
    weight = torch.rand(V, generator=g, dtype=torch.float64) + 0.5
    y = y.to(device)
    option_sets = [
        ("uniform", dict(convention="uniform")),
        (
            "others, prior, weight",
            dict(convention="others", prior=(prior / prior.sum()).to(device), weight=weight.to(device)),
        ),  # fmt: skip
    ]
    checks = []
    for dtype in (torch.float32, torch.bfloat16):
        tol = LINEAR_TOLERANCE[dtype]
        h, W, b = (t.to(device=device, dtype=dtype) for t in (h64, W64, b64))
        for label, opts in option_sets:
            for z_loss, softcap in ((0.0, None),) + CHECK_TERMS[2:]:
                for reduction in ("mean", "none"):
                    name = f"linear head z_loss={z_loss} softcap={softcap} {label}, {reduction}"
                    ref_params = [t.double().requires_grad_(True) for t in (h, W, b)]
                    ref = dense_reference(
                        F.linear(*ref_params), y, eps=EPS, reduction=reduction, z_loss=z_loss, softcap=softcap, **opts
                    )
                    ref_grads = torch.autograd.grad(ref.sum(), ref_params)
                    params = [t.clone().requires_grad_(True) for t in (h, W, b)]
                    try:
                        loss = ls.linear_cross_entropy(
                            params[0], params[1], y, linear_bias=params[2], reduction=reduction,
                            ignore_index=IGNORE, label_smoothing=EPS, z_loss=z_loss, softcap=softcap,
                            chunk_size=chunk_size, backend="triton", **opts,
                        )  # fmt: skip
                        grads = torch.autograd.grad(loss.sum(), params)
                    except Exception as e:  # report it with the rest, do not stop
                        checks.append(Check(f"{name}: {type(e).__name__}: {e}"[:300], dtype, math.nan, math.nan, False))
                        continue
                    loss_err = _rel(loss.detach(), ref.detach())
                    grad_err = max(_rel(a, r) for a, r in zip(grads, ref_grads))
                    checks.append(Check(name, dtype, loss_err, grad_err, loss_err <= tol and grad_err <= tol))
    return checks


# --- time and memory ------------------------------------------------------------------------------------


@dataclass
class Measurement:
    vocab: int
    method: str
    median_ms: float | None  # None: not run (reason in note)
    peak_mib: float | None
    note: str = ""


def methods(
    fused: Callable | None, liger_loss: Callable | None, liger_status: str, backends: tuple[str, ...] = FUSED_BACKENDS,
    liger_terms: Callable | None = None,
) -> dict[str, Callable | str]:  # fmt: skip
    """name -> fn(z, y) returning a scalar loss, or a string saying why the method is absent."""
    out: dict[str, Callable | str] = {
        "torch F.cross_entropy": lambda z, y: F.cross_entropy(z, y, label_smoothing=EPS),
    }
    for backend in backends:
        for inplace in (False, True):
            name = f"labelsmooth fused, {backend}{', in place' if inplace else ''}"
            if fused is None:
                out[name] = "labelsmooth.fused_cross_entropy(backend=, inplace=) is not in this checkout"
            else:
                out[name] = lambda z, y, b=backend, i=inplace: fused(z, y, label_smoothing=EPS, backend=b, inplace=i)
    out["Liger LigerCrossEntropyLoss"] = liger_loss if liger_loss is not None else "liger_kernel: " + liger_status
    terms = f"z_loss={Z_LOSS:g}, softcap={SOFTCAP:g}"
    if fused is not None:
        out[f"labelsmooth fused, triton, in place, {terms}"] = lambda z, y: fused(
            z, y, label_smoothing=EPS, backend="triton", inplace=True, z_loss=Z_LOSS, softcap=SOFTCAP
        )
    out[f"Liger LigerCrossEntropyLoss, {terms}"] = (
        liger_terms if liger_terms is not None else "liger_kernel: " + liger_status
    )
    return out


def time_and_peak(step: Callable, inputs: Callable[[], tuple], reps: int, warmup: int) -> tuple[float, float]:
    """Median milliseconds of ``step(*inputs())`` and the largest peak of memory allocated beyond what was
    live before it. ``inputs()`` runs before the timed region, once per repetition; what ``step`` returns
    stays alive until the peak is read. The first ``warmup`` repetitions are not counted."""
    times, peaks = [], []
    for i in range(warmup + reps):
        args = inputs()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        kept = step(*args)
        end.record()
        torch.cuda.synchronize()
        if i >= warmup:
            times.append(start.elapsed_time(end))
            peaks.append((torch.cuda.max_memory_allocated() - before) / 2**20)
        del args, kept
    return statistics.median(times), max(peaks)


def measure(fn: Callable, base: torch.Tensor, y: torch.Tensor, reps: int, warmup: int) -> tuple[float, float]:
    """Median forward+backward milliseconds and the largest peak of memory allocated beyond the inputs.

    Each repetition gets a fresh copy of the logits (made outside the timed region), because the in-place
    methods overwrite them with the gradient. The logits are an activation (a non-leaf, as in a model)
    and the backward pass stops at their gradient, which is counted in the peak.
    """

    def step(z):
        loss = fn(z, y)
        return loss, torch.autograd.grad(loss, z)  # backward down to the logits' gradient, which stays alive

    def fresh_logits():
        return (base.clone().requires_grad_(True) * 1.0,)  # an activation, as in a model (in place needs one)

    return time_and_peak(step, fresh_logits, reps, warmup)


def measure_each(vocab: int, fns: dict[str, Callable | str], deadline: float, measure_one: Callable, *args):
    """One Measurement per method of ``fns``: ``measure_one(fn, *args)`` gives (ms, MiB); a string in
    ``fns`` says why a method is absent; past ``deadline``, a failure or out of memory, a note says why."""
    results = []
    for name, fn in fns.items():
        if isinstance(fn, str):
            results.append(Measurement(vocab, name, None, None, fn))
            continue
        if time.monotonic() > deadline:
            results.append(Measurement(vocab, name, None, None, "skipped: --budget-s reached"))
            continue
        try:
            ms, mib = measure_one(fn, *args)
            results.append(Measurement(vocab, name, ms, mib))
        except torch.cuda.OutOfMemoryError:
            results.append(Measurement(vocab, name, None, None, "out of memory"))
        except Exception as e:  # one broken method must not stop the others
            results.append(Measurement(vocab, name, None, None, f"{type(e).__name__}: {e}"[:120]))
        torch.cuda.empty_cache()
    return results


def benchmark(rows, vocabs, reps, warmup, fns: dict[str, Callable | str], deadline: float) -> list[Measurement]:
    results = []
    g = torch.Generator(device="cuda").manual_seed(0)
    for V in vocabs:
        base = torch.randn(rows, V, device="cuda", dtype=torch.bfloat16, generator=g)
        y = torch.randint(0, V, (rows,), device="cuda", generator=g)
        results += measure_each(V, fns, deadline, measure, base, y, reps, warmup)
        del base, y
        torch.cuda.empty_cache()
    return results


def liger() -> tuple[Callable | None, str]:
    """(the liger_kernel.transformers module, its version) or (None, why it is absent)."""
    try:
        module = importlib.import_module("liger_kernel.transformers")
        version = importlib.import_module("importlib.metadata").version("liger-kernel")
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] == "liger_kernel":
            return None, "not installed"
        return None, f"not importable ({e})"
    except Exception as e:  # a broken install must not stop the other measurements
        return None, f"not importable ({type(e).__name__}: {e})"
    return module, version


def _first(out):
    """Liger's losses return a tensor, a (loss, z_loss) tuple or an output object, by version."""
    if isinstance(out, tuple):
        return out[0]
    return getattr(out, "loss", out)


def liger_losses(module) -> dict[str, Callable | str | None]:
    """Liger's cross-entropy and fused linear cross-entropy, plain (ε) and with z-loss and softcap; a string
    says why one is absent (an older version without the keyword)."""
    out: dict[str, Callable | str | None] = {}
    for key, cls_name, wrap in (
        ("ce", "LigerCrossEntropyLoss", lambda m: lambda z, y: _first(m(z, y))),
        ("flce", "LigerFusedLinearCrossEntropyLoss", lambda m: lambda h, W, y: _first(m(W, h, y))),
    ):
        cls = getattr(module, cls_name, None) if module is not None else None
        for suffix, kw in (("", {}), ("_terms", dict(lse_square_scale=Z_LOSS, softcap=SOFTCAP))):
            if cls is None:
                out[key + suffix] = None if module is None else f"{cls_name} is not in this liger-kernel"
                continue
            try:
                out[key + suffix] = wrap(cls(label_smoothing=EPS, **kw))
            except TypeError as e:
                out[key + suffix] = f"{cls_name}({', '.join(kw)}): {e}"[:120]
    return out


# --- the linear head: time and memory -------------------------------------------------------------------


def linear_methods(liger_flce, liger_flce_terms, liger_status: str) -> dict[str, Callable | str]:
    """name -> fn(h, W, y) returning a scalar loss (bfloat16 h (M, D) and W (V, D)), or why it is absent."""
    import labelsmooth as ls

    terms = f"z_loss={Z_LOSS:g}, softcap={SOFTCAP:g}"

    def ours(backend, **kw):
        return lambda h, W, y: ls.linear_cross_entropy(h, W, y, label_smoothing=EPS, backend=backend, **kw)

    def absent(fn):
        return fn if callable(fn) else (fn or "liger_kernel: " + liger_status)

    return {
        "torch F.linear + F.cross_entropy": lambda h, W, y: F.cross_entropy(F.linear(h, W), y, label_smoothing=EPS),
        "labelsmooth linear, triton": ours("triton"),
        # the default chunk (2^25 logits: 256 rows at V = 131,072) is not tuned yet: two larger ones
        "labelsmooth linear, triton, chunk_size=1024": ours("triton", chunk_size=1024),
        "labelsmooth linear, triton, chunk_size=2048": ours("triton", chunk_size=2048),
        "labelsmooth linear, torch path": ours("torch"),
        "Liger LigerFusedLinearCrossEntropyLoss": absent(liger_flce),
        f"labelsmooth linear, triton, {terms}": ours("triton", z_loss=Z_LOSS, softcap=SOFTCAP),
        f"Liger LigerFusedLinearCrossEntropyLoss, {terms}": absent(liger_flce_terms),
    }


def measure_linear(fn: Callable, h: torch.Tensor, W: torch.Tensor, y: torch.Tensor, reps: int, warmup: int):
    """Median forward+backward milliseconds and the largest peak of memory allocated beyond h, W and y
    (leaves that require grad, as a model's last hidden states and head); the gradients of h and W stay
    alive to the end and count in the peak."""

    def step():
        loss = fn(h, W, y)
        return loss, torch.autograd.grad(loss, (h, W))

    return time_and_peak(step, lambda: (), reps, warmup)


def benchmark_linear(rows, hidden, vocab, reps, warmup, fns, deadline) -> list[Measurement]:
    g = torch.Generator(device="cuda").manual_seed(0)
    h = torch.randn(rows, hidden, device="cuda", dtype=torch.bfloat16, generator=g).requires_grad_(True)
    W = torch.randn(vocab, hidden, device="cuda", dtype=torch.bfloat16, generator=g) / math.sqrt(hidden)
    W.requires_grad_(True)
    y = torch.randint(0, vocab, (rows,), device="cuda", generator=g)
    results = measure_each(vocab, fns, deadline, measure_linear, h, W, y, reps, warmup)
    del h, W, y
    torch.cuda.empty_cache()
    return results


# --- report -----------------------------------------------------------------------------------------------


def fmt(x: float | None, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _liger_row(rows: list[Measurement], name: str) -> Measurement | None:
    """The Liger row to compare ``name`` with: the one with the same terms (z-loss, softcap) or none."""
    terms = f"z_loss={Z_LOSS:g}, softcap={SOFTCAP:g}"
    for r in rows:
        if r.method.startswith("Liger") and (terms in r.method) == (terms in name):
            return r
    return None


def table(results: list[Measurement], first: str) -> list[str]:
    """A markdown table: time and memory, and their ratios to the first row (torch) and to Liger's."""
    lines = [
        "| V | method | time (ms) | peak extra memory (MiB) | time / torch | memory / torch | time / Liger | "
        "memory / Liger | note |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for V in sorted({r.vocab for r in results}):
        rows = [r for r in results if r.vocab == V]
        base = next((r for r in rows if r.method == first), rows[0])
        for r in rows:
            lig = _liger_row(rows, r.method)
            lig_t, lig_m = (lig.median_ms, lig.peak_mib) if lig is not None else (None, None)
            lines.append(
                f"| {V:,} | {r.method} | {fmt(r.median_ms, '.2f')} | {fmt(r.peak_mib, ',.0f')} | "
                f"{fmt(_ratio(r.median_ms, base.median_ms), '.2f')} | {fmt(_ratio(r.peak_mib, base.peak_mib), '.2f')} | "
                f"{fmt(_ratio(r.median_ms, lig_t), '.2f')} | {fmt(_ratio(r.peak_mib, lig_m), '.2f')} | {r.note} |"
            )
    return lines


GROUPS = (("kernels", "kernels"), ("fused", "fused"), ("terms", "z-loss/softcap"), ("linear head", "linear head"))


def report(args, checks: list[Check], results: list[Measurement], linear: list[Measurement], liger_version: str,
           elapsed: dict[str, float]) -> str:  # fmt: skip
    import triton

    lines = [
        f"GPU: {torch.cuda.get_device_name()} · torch {torch.__version__} (CUDA {torch.version.cuda}) · "
        f"triton {triton.__version__} · liger-kernel {liger_version} · Python {platform.python_version()} · "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `{' '.join([os.path.basename(sys.executable)] + sys.argv)}`",
        "",
        f"Correctness: {sum(c.ok for c in checks)} of {len(checks)} checks pass (kernels and fused: against "
        "labelsmooth.cross_entropy with autograd in float32; z-loss/softcap and the linear head: against a dense "
        "float64 reference, errors relative to the largest entry).",
        "",
    ]
    failed = [c for c in checks if not c.ok]
    if failed:
        lines += ["| failed check | dtype | max loss error | max grad error |", "|---|---|---|---|"]
        lines += [f"| {c.name} | {c.dtype} | {c.loss_err:.3g} | {c.grad_err:.3g} |" for c in failed]
        lines.append("")
    for prefix, label in GROUPS:
        group = [c for c in checks if c.name.startswith(prefix)]
        for dtype in (torch.float32, torch.bfloat16):
            sub = [c for c in group if c.dtype == dtype]
            if sub:
                le = max(c.loss_err for c in sub)
                ge = max(c.grad_err for c in sub)
                lines.append(
                    f"- {label}, {dtype}: {sum(c.ok for c in sub)}/{len(sub)} pass; largest loss error {le:.3g}, "
                    f"largest gradient error {ge:.3g}"
                )
    if linear:
        lines += [
            "",
            f"Linear head, forward+backward (gradients of h and W), bfloat16, {args.rows:,} rows × hidden "
            f"{args.hidden:,}, ε = {EPS}, median of {args.linear_reps} after {args.warmup} warm-up; memory: peak "
            "allocated beyond h, W and the targets (the two gradients included).",
            "",
        ]
        lines += table(linear, "torch F.linear + F.cross_entropy")
    if results:
        lines += [
            "",
            f"Cross-entropy, forward+backward, bfloat16 logits, {args.rows:,} rows, ε = {EPS}, median of {args.reps} "
            f"after {args.warmup} warm-up; memory: peak allocated beyond the logits and targets.",
            "",
        ]
        lines += table(results, "torch F.cross_entropy")
    lines += ["", "Seconds per section: " + ", ".join(f"{k} {v:.0f}" for k, v in elapsed.items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="file to write the markdown report to")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="B·T, rows of logits (default 8192)")
    parser.add_argument("--vocab", type=int, nargs="+", default=list(DEFAULT_VOCAB), help="V values of the CE rows")
    parser.add_argument("--hidden", type=int, default=DEFAULT_HIDDEN, help="hidden size of the linear head")
    parser.add_argument("--linear-vocab", type=int, default=DEFAULT_LINEAR_VOCAB, help="V of the linear head")
    parser.add_argument("--reps", type=int, default=20, help="timed repetitions of the CE rows (>= 10)")
    parser.add_argument("--linear-reps", type=int, default=10, help="timed repetitions of the linear head (>= 5)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed repetitions first")
    parser.add_argument("--check-only", action="store_true", help="correctness checks only, no timing")
    parser.add_argument("--with-compiled", action="store_true", help="also check and time backend='compiled'")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="start no new measurement after this many seconds (default 420)")  # fmt: skip
    args = parser.parse_args(argv)
    for limit in ("recompile_limit", "cache_size_limit"):  # the compiled backend meets many shapes and dtypes here
        if hasattr(torch._dynamo.config, limit):
            setattr(torch._dynamo.config, limit, 64)
    if not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA device (torch.cuda.is_available() is False): nothing was checked or measured, "
            f"and {args.out} was not written. Run this on a machine with an NVIDIA GPU.",
            file=sys.stderr,
        )
        return 2
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("gpu_check: unset TRITON_INTERPRET: this script checks and times the compiled kernels", file=sys.stderr)
        return 2
    if args.reps < 10 or args.linear_reps < 5:
        parser.error(f"--reps must be >= 10 and --linear-reps >= 5, got {args.reps} and {args.linear_reps}")
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 checks against float64: no TF32 products
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "src"))
    deadline = started + args.budget_s
    backends = FUSED_BACKENDS + ((COMPILED,) if args.with_compiled else ())
    fused = fused_function()
    module, liger_version = liger()
    lig = liger_losses(module)
    elapsed: dict[str, float] = {}

    def section(name: str, fn: Callable):
        t0 = time.monotonic()
        print(f"gpu_check: {name} ({t0 - started:.0f} s in)...", file=sys.stderr, flush=True)
        out = fn()
        elapsed[name] = time.monotonic() - t0
        return out

    print(f"gpu_check on {torch.cuda.get_device_name()}", file=sys.stderr, flush=True)
    checks = section("kernel checks", lambda: check_kernels("cuda"))
    if fused is not None:
        checks += section("fused checks", lambda: check_fused("cuda", fused, backends=backends))
        checks += section("z-loss/softcap checks", lambda: check_fused_terms("cuda", fused))
    checks += section("linear head checks", lambda: check_linear("cuda"))
    results, linear = [], []
    if not args.check_only:
        fns = linear_methods(lig.get("flce"), lig.get("flce_terms"), liger_version)
        linear = section("linear head timing", lambda: benchmark_linear(
            args.rows, args.hidden, args.linear_vocab, args.linear_reps, args.warmup, fns, deadline))  # fmt: skip
        ce = methods(fused, lig.get("ce"), liger_version, backends, lig.get("ce_terms"))
        results = section("CE timing", lambda: benchmark(args.rows, args.vocab, args.reps, args.warmup, ce, deadline))
    text = report(args, checks, results, linear, liger_version, elapsed)
    if fused is None:
        text += "\nlabelsmooth.fused_cross_entropy(backend=, inplace=) is not in this checkout: only the kernels were checked.\n"
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
