"""Smoothing's cost in the fused loss: ε = 0.1 against ε = 0, paired, in one process (CPU, float32).

bench_fused.py times each case in its own process, which is right for memory but leaves the ε = 0 and
ε = 0.1 medians minutes apart on a shared machine, and the out-of-place steps spend much of their time in
page faults on the fresh gradient buffer. Here both run in the same process, alternating step by step
(order flipped every repeat), and the overhead is the median over repeats of the paired ratio.

    PYTHONPATH=src python benchmarks/bench_smoothing_overhead.py [--reps 15] [--backends torch compiled]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import labelsmooth

THREADS = 2
N, K = 4096, 32000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--backends", nargs="+", default=["torch", "compiled"])
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    g = torch.Generator().manual_seed(0)
    leaf = torch.randn(N, K, generator=g).requires_grad_()
    y = torch.randint(0, K, (N,), generator=g)
    print(f"{platform.platform()}, torch {torch.__version__}, {THREADS} threads, N = {N}, K = {K}, float32")
    print("median ms over repeats; overhead: median of the paired ratio ε=0.1 / ε=0, [25th, 75th percentile]")
    for backend in args.backends:
        for inplace in (False, True):

            def step(eps: float, inplace: bool = inplace, backend: str = backend) -> float:
                z = leaf.clone() if inplace else leaf  # in place: a fresh activation for the kernel to overwrite
                t0 = time.perf_counter()
                loss = labelsmooth.fused_cross_entropy(z, y, label_smoothing=eps, inplace=inplace, backend=backend)
                torch.autograd.grad(loss, z)
                return time.perf_counter() - t0

            step(0.0), step(0.1)  # warm-up (and compilation for backend="compiled")
            times: dict[float, list[float]] = {0.0: [], 0.1: []}
            for rep in range(args.reps):
                for eps in (0.0, 0.1) if rep % 2 else (0.1, 0.0):
                    times[eps].append(step(eps))
            ratios = [a / b for a, b in zip(times[0.1], times[0.0])]
            q1, med, q3 = statistics.quantiles(ratios, n=4)
            label = f"{backend}, {'in place' if inplace else 'out of place'}"
            plain, smooth = (statistics.median(times[e]) * 1e3 for e in (0.0, 0.1))
            print(
                f"{label:<24} ε=0 {plain:7.1f}  ε=0.1 {smooth:7.1f}  overhead {med - 1:+.1%} [{q1 - 1:+.1%}, {q3 - 1:+.1%}]"
            )


if __name__ == "__main__":
    main()
