"""Our losses under torch.compile against torch's, and our eager default against torch.compile(F.cross_entropy).

Three groups, each paired in one process: the variants alternate, in a new (seeded) random order every
repeat, and each repeat's time is the median of 3 calls in a row after an untimed one of the same
variant (the first call after another variant ran up to 1.9x slower at 65,536 × 100, and a fixed
rotation put the same variant after the reference in most repeats: docs/performance.md). float32 on
the CPU, ε = 0.1 (torch's convention), N = 4,096 tokens, K = 32,000 classes:

- ``step``: a small model's training step, compiled with ``torch.compile(forward, fullgraph=True)``:
  h = tanh(x A), logits = h Wᵀ, loss (the compiled forward), then backward into A and W (its graph
  compiled by AOTAutograd with the forward). The loss is torch's
  ``F.cross_entropy(label_smoothing=0.1)``, ours (``cross_entropy``, ``fused_cross_entropy`` or
  ``linear_cross_entropy``, which never builds the logits), all compiled with the default Inductor backend.
- ``loss``: the loss alone on given logits (a leaf (N, K) requiring grad), forward + backward, eager:
  ``F.cross_entropy``, ``torch.compile(F.cross_entropy)`` (the one-liner) and ``fused_cross_entropy``
  (its default backend, and each CPU backend).
- ``sizes``: the ``loss`` group's eager variants across shapes (``--shapes N×K ...``): the one-liner,
  the plain backend, and the compiled backend with chunks of 2^21 (its default until session 7), 2^23
  and 2^25 logits (its default since);
  plus each variant's first call in this process (compilation included) and the default's choice.
  Dynamo's caches are cleared before each shape, so that each is measured as in a process that sees
  only it (after a second shape, automatic dynamic shapes compile kernels generic in the sizes that
  changed, the one-liner's too); ``--keep-compiled`` keeps them, as a process that meets several shapes.

Reported: the median time per variant, the median over repeats of the paired ratio to the reference
(torch compiled for ``step``, ``torch.compile(F.cross_entropy)`` for ``loss``) with its quartiles, and the peak
of bytes allocated during one step (torch.profiler's allocation records replayed in time order:
benchmarks/_memory.py, shared with bench_hf_patch.py; the same measure as tests/integrations/_memory.py).

    PYTHONPATH=src python benchmarks/bench_compile.py [--reps 9] [--threads 2] [--group step loss sizes]
        [--shapes 4096x32000 2048x128000 ...] [--keep-compiled]
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time

import torch
import torch.nn.functional as F

import labelsmooth
from _memory import peak_bytes

N, K, D, H = 4096, 32000, 64, 64
EPS = 0.1
CALLS = 3  # timed calls in a row per variant and repeat; their median is the repeat's time


def step_variants() -> tuple[dict, str]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, H, generator=g)
    y = torch.randint(0, K, (N,), generator=g)
    A = (torch.randn(H, D, generator=g) / H**0.5).requires_grad_()
    W = (torch.randn(K, D, generator=g) / D**0.5).requires_grad_()

    def make(loss_of):
        def forward(x, y, A, W):
            return loss_of(torch.tanh(x @ A), W, y)

        compiled = torch.compile(forward, fullgraph=True)  # its backward graph is compiled with it (AOTAutograd)

        def run():
            A.grad = W.grad = None
            loss = compiled(x, y, A, W)
            loss.backward()
            return loss.detach()

        return run

    variants = {
        "torch F.cross_entropy, compiled": make(lambda h, W, y: F.cross_entropy(h @ W.T, y, label_smoothing=EPS)),
        "ours cross_entropy, compiled": make(
            lambda h, W, y: labelsmooth.cross_entropy(h @ W.T, y, label_smoothing=EPS)
        ),
        "ours fused_cross_entropy, compiled": make(
            lambda h, W, y: labelsmooth.fused_cross_entropy(h @ W.T, y, label_smoothing=EPS)
        ),
        "ours linear_cross_entropy, compiled": make(
            lambda h, W, y: labelsmooth.linear_cross_entropy(h, W, y, label_smoothing=EPS)
        ),
    }
    return variants, "torch F.cross_entropy, compiled"


def eager_problem(n: int, k: int, seed: int):
    """(make, one_liner) for the loss alone on leaf logits (n, k): make(fn) is a step of fn(z, y), forward
    and backward; one_liner is ``torch.compile(F.cross_entropy)``."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, generator=g).requires_grad_()
    y = torch.randint(0, k, (n,), generator=g)

    def make(fn):
        def run():
            loss = fn(z, y)
            (grad,) = torch.autograd.grad(loss, z)
            return grad  # alive until the peak is read

        return run

    return make, torch.compile(F.cross_entropy)


def loss_variants() -> tuple[dict, str]:
    make, one_liner = eager_problem(N, K, seed=1)
    variants = {
        "torch F.cross_entropy, eager": make(lambda z, y: F.cross_entropy(z, y, label_smoothing=EPS)),
        "torch.compile(F.cross_entropy)": make(lambda z, y: one_liner(z, y, label_smoothing=EPS)),
        "ours fused_cross_entropy (default)": make(
            lambda z, y: labelsmooth.fused_cross_entropy(z, y, label_smoothing=EPS)
        ),
        "ours fused_cross_entropy backend='torch'": make(
            lambda z, y: labelsmooth.fused_cross_entropy(z, y, label_smoothing=EPS, backend="torch")
        ),
        "ours fused_cross_entropy backend='compiled'": make(
            lambda z, y: labelsmooth.fused_cross_entropy(z, y, label_smoothing=EPS, backend="compiled")
        ),
    }
    return variants, "torch.compile(F.cross_entropy)"


SHAPES = ["128x1000", "1024x1000", "16384x1000", "65536x100", "512x32000", "4096x32000", "2048x128000"]


def size_variants(n: int, k: int) -> tuple[dict, str]:
    make, one_liner = eager_problem(n, k, seed=2)

    def ours(**kw):
        return make(lambda z, y: labelsmooth.fused_cross_entropy(z, y, label_smoothing=EPS, **kw))

    variants = {
        "torch.compile(F.cross_entropy)": make(lambda z, y: one_liner(z, y, label_smoothing=EPS)),
        "ours default": ours(),
        "ours torch": ours(backend="torch"),
        **{
            f"ours compiled, 2^{e} logits": ours(backend="compiled", chunk_size=max(1, min(n, (1 << e) // k)))
            for e in (21, 23, 25)
        },
    }
    return variants, "torch.compile(F.cross_entropy)"


def measure(variants: dict, reference: str, reps: int, first: dict | None = None) -> list[dict]:
    names = list(variants)
    for name in names:  # warm-up, compiles included
        t0 = time.perf_counter()
        variants[name]()
        if first is not None:
            first[name] = time.perf_counter() - t0
        variants[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        order = random.Random(rep).sample(names, len(names))  # no variant always follows the same one
        for name in order:
            variants[name]()  # untimed: the call after another variant's may pay for its allocator state
            block = []
            for _ in range(CALLS):
                t0 = time.perf_counter()
                variants[name]()
                block.append(time.perf_counter() - t0)
            times[name].append(statistics.median(block))
    rows = []
    for name in names:
        ratios = [a / b for a, b in zip(times[name], times[reference])]
        q1, med, q3 = statistics.quantiles(ratios, n=4) if reps > 1 else (ratios[0],) * 3
        rows.append(
            dict(
                name=name,
                median_ms=statistics.median(times[name]) * 1e3,
                ratio=med,
                q1=q1,
                q3=q3,
                peak_mib=peak_bytes(variants[name]) / 2**20,
            )  # fmt: skip
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--group", nargs="+", default=["step", "loss"], choices=["step", "loss", "sizes"])
    parser.add_argument("--shapes", nargs="+", default=SHAPES, help="N×K of the sizes group, as 4096x32000")
    parser.add_argument(
        "--keep-compiled", action="store_true", help="sizes group: keep Dynamo's caches from one shape to the next"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{platform.platform()}, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} threads, N = {N}, K = {K}, float32, ε = {EPS}, {args.reps} paired repeats")  # fmt: skip
    groups = {"step": step_variants, "loss": loss_variants}
    for group in args.group:
        if group == "sizes":
            sizes(args.shapes, args.reps, keep_compiled=args.keep_compiled)
            continue
        variants, reference = groups[group]()
        if group == "step":
            print(f"\nstep: h = tanh(x A) (x: {N}×{H}, A: {H}×{D}), logits = h Wᵀ (W: {K}×{D}), loss, backward")
        else:
            print(f"\nloss: the loss alone on leaf logits {N}×{K}, forward + backward (torch.autograd.grad)")
        print(f"| variant | median ms | ratio to {reference} [quartiles] | peak MiB |")
        print("|---|---:|---|---:|")
        for r in measure(variants, reference, args.reps):
            print(
                f"| {r['name']} | {r['median_ms']:.1f} | {r['ratio']:.2f} [{r['q1']:.2f}, {r['q3']:.2f}] | "
                f"{r['peak_mib']:.0f} |"
            )


def sizes(shapes: list[str], reps: int, keep_compiled: bool = False) -> None:
    print("\nsizes: the loss alone on leaf logits N×K, forward + backward; ratio to torch.compile(F.cross_entropy)")
    print("| N × K | variant | median ms | ratio [quartiles] | first call ms | peak MiB |")
    print("|---|---|---:|---|---:|---:|")
    for shape in shapes:
        n, k = (int(v) for v in shape.lower().replace("×", "x").split("x"))
        if not keep_compiled:
            torch._dynamo.reset()
        variants, reference = size_variants(n, k)
        first: dict[str, float] = {}
        picked = labelsmooth.kernels.select_backend("auto", torch.empty(n, k)).__name__.rsplit(".", 1)[-1]
        for r in measure(variants, reference, reps, first):
            name = r["name"] + (f" (= {picked})" if r["name"] == "ours default" else "")
            print(
                f"| {n:,} × {k:,} | {name} | {r['median_ms']:.2f} | {r['ratio']:.2f} [{r['q1']:.2f}, {r['q3']:.2f}] | "
                f"{first[r['name']] * 1e3:.0f} | {r['peak_mib']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
