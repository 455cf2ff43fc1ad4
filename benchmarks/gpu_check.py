"""GPU check of the Triton kernels: correctness on CUDA, then forward+backward time and peak memory.

One command, on a machine with an NVIDIA GPU (docs/performance.md, "GPU (Triton)"):

    PYTHONPATH=src python benchmarks/gpu_check.py --out benchmarks/results/gpu_check.md

1. Correctness, in float32 and bfloat16: the Triton kernels (``labelsmooth.kernels.triton_backend``) and,
   where this checkout has it, ``labelsmooth.fused_cross_entropy`` with each backend, in and out of place,
   against ``labelsmooth.cross_entropy`` with autograd (values and gradients), across both conventions,
   a prior, class weights, ignore_index and every reduction, at shapes that are no multiple of a tile.
2. Time and memory, in bfloat16 at B·T = 8,192 rows and V = 32,768 and 131,072 (defaults): median
   forward+backward time over ``--reps`` repetitions after ``--warmup`` (CUDA events), and peak memory
   allocated beyond what was allocated before the call (the logits included in neither), for torch's
   ``F.cross_entropy(label_smoothing=0.1)``, labelsmooth (each backend, in and out of place) and
   Liger-Kernel's ``LigerCrossEntropyLoss`` (skipped, and said so, when liger_kernel is not installed).

It prints a markdown report naming the GPU and writes it to ``--out``. Without a CUDA device it exits at
once with status 2 and measures nothing. Exit status 1 means a correctness check failed.
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
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

EPS = 0.1  # label smoothing ε of every benchmark row (uniform convention: what torch and Liger compute)
IGNORE = -100
DEFAULT_ROWS = 8192  # B·T
DEFAULT_VOCAB = (32768, 131072)
FUSED_BACKENDS = ("torch", "triton", "compiled")  # "compiled": torch.compile's own (Inductor-made Triton) kernel
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


def check_fused(device: str, fused: Callable, shape: tuple[int, int] = CHECK_SHAPE) -> list[Check]:
    checks = []
    for dtype in (torch.float32, torch.bfloat16):
        for label, z, y, opts in check_problems(device, dtype, *shape):
            for reduction in ("mean", "none"):
                ref_loss, ref_grad = reference(z, y, opts, reduction)
                for backend in FUSED_BACKENDS:
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


# --- time and memory ------------------------------------------------------------------------------------


@dataclass
class Measurement:
    vocab: int
    method: str
    median_ms: float | None  # None: not run (reason in note)
    peak_mib: float | None
    note: str = ""


def methods(fused: Callable | None, liger_loss: Callable | None, liger_status: str) -> dict[str, Callable | str]:
    """name -> fn(z, y) returning a scalar loss, or a string saying why the method is absent."""
    out: dict[str, Callable | str] = {
        "torch F.cross_entropy": lambda z, y: F.cross_entropy(z, y, label_smoothing=EPS),
    }
    for backend in FUSED_BACKENDS:
        for inplace in (False, True):
            name = f"labelsmooth fused, {backend}{', in place' if inplace else ''}"
            if fused is None:
                out[name] = "labelsmooth.fused_cross_entropy(backend=, inplace=) is not in this checkout"
            else:
                out[name] = lambda z, y, b=backend, i=inplace: fused(z, y, label_smoothing=EPS, backend=b, inplace=i)
    out["Liger LigerCrossEntropyLoss"] = liger_loss if liger_loss is not None else "liger_kernel: " + liger_status
    return out


def measure(fn: Callable, base: torch.Tensor, y: torch.Tensor, reps: int, warmup: int) -> tuple[float, float]:
    """Median forward+backward milliseconds and the largest peak of memory allocated beyond the inputs.

    Each repetition gets a fresh copy of the logits (made outside the timed region), because the in-place
    methods overwrite them with the gradient. The logits are an activation (a non-leaf, as in a model)
    and the backward pass stops at their gradient, which is counted in the peak.
    """
    times, peaks = [], []
    for i in range(warmup + reps):
        z = base.clone().requires_grad_(True) * 1.0  # an activation, as in a model (in place needs one)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        loss = fn(z, y)
        (grad,) = torch.autograd.grad(loss, z)  # backward down to the logits' gradient, which stays alive
        end.record()
        torch.cuda.synchronize()
        if i >= warmup:
            times.append(start.elapsed_time(end))
            peaks.append((torch.cuda.max_memory_allocated() - before) / 2**20)
        del z, loss, grad
    return statistics.median(times), max(peaks)


def benchmark(rows, vocabs, reps, warmup, fused, liger_loss, liger_status) -> list[Measurement]:
    results = []
    g = torch.Generator(device="cuda").manual_seed(0)
    for V in vocabs:
        base = torch.randn(rows, V, device="cuda", dtype=torch.bfloat16, generator=g)
        y = torch.randint(0, V, (rows,), device="cuda", generator=g)
        for name, fn in methods(fused, liger_loss, liger_status).items():
            if isinstance(fn, str):
                results.append(Measurement(V, name, None, None, fn))
                continue
            try:
                ms, mib = measure(fn, base, y, reps, warmup)
                results.append(Measurement(V, name, ms, mib))
            except torch.cuda.OutOfMemoryError:
                results.append(Measurement(V, name, None, None, "out of memory"))
            except Exception as e:  # one broken method must not stop the others
                results.append(Measurement(V, name, None, None, f"{type(e).__name__}: {e}"[:120]))
            torch.cuda.empty_cache()
        del base, y
        torch.cuda.empty_cache()
    return results


def liger() -> tuple[Callable | None, str]:
    try:
        module = importlib.import_module("liger_kernel.transformers")
        version = importlib.import_module("importlib.metadata").version("liger-kernel")
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] == "liger_kernel":
            return None, "not installed"
        return None, f"not importable ({e})"
    except Exception as e:  # a broken install must not stop the other measurements
        return None, f"not importable ({type(e).__name__}: {e})"
    loss = module.LigerCrossEntropyLoss(label_smoothing=EPS)
    return (lambda z, y: loss(z, y)), version


# --- report -----------------------------------------------------------------------------------------------


def fmt(x: float | None, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def report(args, checks: list[Check], results: list[Measurement], liger_version: str) -> str:
    import triton

    lines = [
        f"GPU: {torch.cuda.get_device_name()} · torch {torch.__version__} (CUDA {torch.version.cuda}) · "
        f"triton {triton.__version__} · liger-kernel {liger_version} · Python {platform.python_version()} · "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `{' '.join([os.path.basename(sys.executable)] + sys.argv)}`",
        "",
        f"Correctness (against labelsmooth.cross_entropy with autograd): {sum(c.ok for c in checks)} of "
        f"{len(checks)} checks pass.",
        "",
    ]
    failed = [c for c in checks if not c.ok]
    if failed:
        lines += ["| failed check | dtype | max loss error | max grad error |", "|---|---|---|---|"]
        lines += [f"| {c.name} | {c.dtype} | {c.loss_err:.3g} | {c.grad_err:.3g} |" for c in failed]
        lines.append("")
    worst = {}
    for c in checks:
        w = worst.setdefault(c.dtype, [0.0, 0.0])
        w[0], w[1] = max(w[0], c.loss_err), max(w[1], c.grad_err)
    for dtype, (le, ge) in worst.items():
        lines.append(f"- {dtype}: largest loss error {le:.3g}, largest gradient error {ge:.3g}")
    if results:
        lines += [
            "",
            f"Forward+backward, bfloat16 logits, {args.rows:,} rows, ε = {EPS}, median of {args.reps} after "
            f"{args.warmup} warm-up; memory: peak allocated beyond the logits and targets.",
            "",
            "| V | method | time (ms) | peak extra memory (MiB) | time / torch | memory / torch | note |",
            "|---:|---|---:|---:|---:|---:|---|",
        ]
        for V in sorted({r.vocab for r in results}):
            rows = [r for r in results if r.vocab == V]
            torch_row = rows[0]
            for r in rows:
                t = r.median_ms / torch_row.median_ms if r.median_ms and torch_row.median_ms else None
                m = r.peak_mib / torch_row.peak_mib if r.peak_mib is not None and torch_row.peak_mib else None
                lines.append(
                    f"| {V:,} | {r.method} | {fmt(r.median_ms, '.2f')} | {fmt(r.peak_mib, ',.0f')} | "
                    f"{fmt(t, '.2f')} | {fmt(m, '.2f')} | {r.note} |"
                )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="file to write the markdown report to")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="B·T, rows of logits (default 8192)")
    parser.add_argument("--vocab", type=int, nargs="+", default=list(DEFAULT_VOCAB), help="V values")
    parser.add_argument("--reps", type=int, default=20, help="timed repetitions (>= 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed repetitions first")
    parser.add_argument("--check-only", action="store_true", help="correctness checks only, no timing")
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
    if args.reps < 10:
        parser.error(f"--reps must be >= 10, got {args.reps}")
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "src"))
    fused = fused_function()
    liger_loss, liger_version = liger()
    print(f"gpu_check on {torch.cuda.get_device_name()}: correctness...", file=sys.stderr, flush=True)
    checks = check_kernels("cuda") + (check_fused("cuda", fused) if fused is not None else [])
    results = []
    if not args.check_only:
        print("gpu_check: timing...", file=sys.stderr, flush=True)
        results = benchmark(args.rows, args.vocab, args.reps, args.warmup, fused, liger_loss, liger_version)
    text = report(args, checks, results, liger_version)
    if fused is None:
        text += "\nlabelsmooth.fused_cross_entropy(backend=, inplace=) is not in this checkout: only the kernels were checked.\n"
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
