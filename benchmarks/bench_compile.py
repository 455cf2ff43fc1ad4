"""Our losses under torch.compile against torch's, and our eager default against torch.compile(F.cross_entropy).

Two groups, each paired in one process (the variants alternate step by step, the order rotated every
repeat), float32 on the CPU, ε = 0.1 (torch's convention), N = 4,096 tokens, K = 32,000 classes:

- ``step``: a small model's training step, compiled with ``torch.compile(forward, fullgraph=True)``:
  h = tanh(x A), logits = h Wᵀ, loss (the compiled forward), then backward into A and W (its graph
  compiled by AOTAutograd with the forward). The loss is torch's
  ``F.cross_entropy(label_smoothing=0.1)``, ours (``cross_entropy``, ``fused_cross_entropy`` or
  ``linear_cross_entropy``, which never builds the logits), all compiled with the default Inductor backend.
- ``loss``: the loss alone on given logits (a leaf (N, K) requiring grad), forward + backward, eager:
  ``F.cross_entropy``, ``torch.compile(F.cross_entropy)`` (the one-liner) and ``fused_cross_entropy``
  (its default backend, and each CPU backend).

Reported: the median time per variant, the median over repeats of the paired ratio to the reference
(torch compiled for ``step``, ``torch.compile(F.cross_entropy)`` for ``loss``) with its quartiles, and the peak
of bytes allocated during one step (torch.profiler's allocation records replayed in time order:
benchmarks/_memory.py, shared with bench_hf_patch.py; the same measure as tests/integrations/_memory.py).

    PYTHONPATH=src python benchmarks/bench_compile.py [--reps 9] [--threads 2] [--group step loss]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F

import labelsmooth
from _memory import peak_bytes

N, K, D, H = 4096, 32000, 64, 64
EPS = 0.1


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


def loss_variants() -> tuple[dict, str]:
    g = torch.Generator().manual_seed(1)
    z = torch.randn(N, K, generator=g).requires_grad_()
    y = torch.randint(0, K, (N,), generator=g)
    one_liner = torch.compile(F.cross_entropy)

    def make(fn):
        def run():
            loss = fn(z, y)
            (grad,) = torch.autograd.grad(loss, z)
            return grad  # alive until the peak is read

        return run

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


def measure(variants: dict, reference: str, reps: int) -> list[dict]:
    names = list(variants)
    for name in names:  # warm-up, compiles included
        variants[name]()
        variants[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            t0 = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - t0)
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
    parser.add_argument("--group", nargs="+", default=["step", "loss"], choices=["step", "loss"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{platform.platform()}, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} threads, N = {N}, K = {K}, float32, ε = {EPS}, {args.reps} paired repeats")  # fmt: skip
    groups = {"step": step_variants, "loss": loss_variants}
    for group in args.group:
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


if __name__ == "__main__":
    main()
