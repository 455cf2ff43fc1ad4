"""Tile width and warps of the Triton kernel, measured on a GPU (the defaults in triton_backend come from here).

    PYTHONPATH=src python benchmarks/triton_tune.py --out benchmarks/results/triton_tune.md

For bfloat16 logits of ``--rows`` rows and each V in ``--vocab``, in place, ε = 0.1 (uniform): the median
time (CUDA events, ``--reps`` after 3 warm-ups) of ``triton_backend.loss_and_grad`` alone (coefficients
made beforehand) for every tile width and warp count, next to Liger-Kernel's ``LigerCrossEntropyLoss``
forward+backward when liger_kernel is importable. Prints a markdown table; exits 2 without CUDA.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

BLOCKS = (2048, 4096, 8192, 16384, 32768)
WARPS = (4, 8, 16, 32)


def time_ms(fn, reps: int) -> float:
    times = []
    for i in range(3 + reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        if i >= 3:
            times.append(start.elapsed_time(end))
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--rows", type=int, default=8192)
    parser.add_argument("--vocab", type=int, nargs="+", default=[32768, 131072])
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("triton_tune: no CUDA device; nothing measured", file=sys.stderr)
        return 2
    from labelsmooth.kernels import triton_backend
    from labelsmooth.targets import index_target_coefficients

    try:
        from liger_kernel.transformers import LigerCrossEntropyLoss

        liger = LigerCrossEntropyLoss(label_smoothing=0.1)
    except Exception as e:  # measured without it, and said so
        liger, why = None, f"{type(e).__name__}: {e}"
    lines = [f"GPU: {torch.cuda.get_device_name()}, bfloat16, {args.rows:,} rows, in place, ε = 0.1", ""]
    lines += ["| V | block | warps | kernel ms | / Liger fwd+bwd |", "|---:|---:|---:|---:|---:|"]
    g = torch.Generator(device="cuda").manual_seed(0)
    for V in args.vocab:
        z0 = torch.randn(args.rows, V, device="cuda", dtype=torch.bfloat16, generator=g)
        y = torch.randint(0, V, (args.rows,), device="cuda", generator=g)
        z = z0.clone()
        liger_ms = None
        if liger is not None:

            def liger_step(z0=z0, y=y):
                liger(z0.detach().requires_grad_(True), y).backward()

            liger_ms = time_ms(liger_step, args.reps)
            lines.append(f"| {V:,} | Liger | – | {liger_ms:.3f} | 1.00 |")
        c = index_target_coefficients(y, V, 0.1)
        scale = torch.full((args.rows,), 1.0 / args.rows, device="cuda")
        for block in BLOCKS:
            if block > 1 << (V - 1).bit_length():  # wider than the row
                continue
            for warps in WARPS:
                try:
                    ms = time_ms(
                        lambda z=z, c=c, s=scale, b=block, w=warps: triton_backend.loss_and_grad(
                            z, c, s, inplace=True, block_size=b, num_warps=w
                        ),
                        args.reps,
                    )
                except Exception as e:
                    lines.append(f"| {V:,} | {block} | {warps} | {type(e).__name__} | |")
                    continue
                ratio = f"{ms / liger_ms:.2f}" if liger_ms else "–"
                lines.append(f"| {V:,} | {block} | {warps} | {ms:.3f} | {ratio} |")
        del z0, z
        torch.cuda.empty_cache()
    if liger is None:
        lines.append(f"\nLiger not measured: {why}")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
