"""Where the time of one fused_cross_entropy call goes on a GPU: host-side time and the CUDA kernels.

    PYTHONPATH=src python benchmarks/gpu_profile.py --out benchmarks/results/gpu_profile.txt

bfloat16 logits (8,192 × V), ε = 0.1, in place, forward+backward. Prints the host (CPU) time of the
call without synchronising, the median wall time with synchronisation, and torch.profiler's table of
the kernels and operators of a few steps. Exits 2 without CUDA.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch


def stage_times(base: torch.Tensor, y: torch.Tensor) -> list[str]:
    """Host microseconds of each step of fused_cross_entropy's forward (no sync in between), GPU idle first."""
    from labelsmooth import _validation as V
    from labelsmooth.kernels import select_backend
    from labelsmooth.targets import index_target_coefficients

    K = base.shape[1]
    names = [
        "validate",
        "select backend",
        "coefficients",
        "mean scale",
        "kernel launch",
        "target check (sync)",
        "reduce",
    ]
    rows = []
    for i in range(25):
        z = base.clone()
        torch.cuda.synchronize()
        t = [time.perf_counter()]
        args = V.check_cross_entropy_args(z, y, None, -100, "mean", 0.1, "uniform", None, check_range=False)
        t.append(time.perf_counter())
        kernel = select_backend("auto", args.logits)
        t.append(time.perf_counter())
        c = index_target_coefficients(args.target, K, 0.1)
        t.append(time.perf_counter())
        den = c.row_weight.sum()
        scale = torch.as_tensor(1.0 / den, dtype=torch.float32, device=z.device).expand(z.shape[0])
        t.append(time.perf_counter())
        row, _ = kernel.loss_and_grad(z, c, scale, inplace=True)
        t.append(time.perf_counter())
        V.check_target_range(args.target, K, -100)
        t.append(time.perf_counter())
        (row.sum() / den).to(z.dtype)
        t.append(time.perf_counter())
        torch.cuda.synchronize()
        if i >= 5:
            rows.append([b - a for a, b in zip(t, t[1:])])
    out = ["host microseconds per stage (median of 20; the sync waits for the kernel):"]
    out += [f"  {n}: {1e6 * statistics.median(r[k] for r in rows):.0f}" for k, n in enumerate(names)]
    try:
        from liger_kernel.transformers import LigerCrossEntropyLoss

        liger = LigerCrossEntropyLoss(label_smoothing=0.1)
        hosts = []
        for _ in range(25):
            z = base.clone().requires_grad_(True) * 1.0
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            loss = liger(z, y)
            hosts.append(time.perf_counter() - t0)
            torch.autograd.grad(loss, z)
            torch.cuda.synchronize()
        out.append(f"  Liger forward call, host: {1e6 * statistics.median(hosts[5:]):.0f}")
    except Exception as e:  # measured without it
        out.append(f"  Liger not measured: {type(e).__name__}: {e}")
    return out + [""]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--rows", type=int, default=8192)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_profile: no CUDA device; nothing measured", file=sys.stderr)
        return 2
    import labelsmooth as ls

    base = torch.randn(args.rows, args.vocab, device="cuda", dtype=torch.bfloat16)
    y = torch.randint(0, args.vocab, (args.rows,), device="cuda")

    def step():
        z = base.clone().requires_grad_(True) * 1.0
        t0 = time.perf_counter()
        loss = ls.fused_cross_entropy(z, y, label_smoothing=0.1, inplace=True)
        t1 = time.perf_counter()
        (g,) = torch.autograd.grad(loss, z)
        t2 = time.perf_counter()
        torch.cuda.synchronize()
        return t1 - t0, t2 - t1, time.perf_counter() - t0

    for _ in range(5):
        step()
    rows = [step() for _ in range(20)]
    lines = [
        f"GPU {torch.cuda.get_device_name()}, {args.rows}x{args.vocab} bf16, in place",
        "host ms forward call (no sync): %.3f" % (1e3 * statistics.median(r[0] for r in rows)),
        "host ms backward call (no sync): %.3f" % (1e3 * statistics.median(r[1] for r in rows)),
        "wall ms forward+backward, synchronised: %.3f" % (1e3 * statistics.median(r[2] for r in rows)),
        "",
    ]
    lines += stage_times(base, y)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            step()
    lines.append(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=25))
    lines.append(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    text = "\n".join(lines)
    print(text)
    with open(args.out, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
