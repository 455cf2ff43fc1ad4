"""Benchmark: fused label-smoothed cross-entropy and linear head against PyTorch (CPU, float32, 2 threads).

    python benchmarks/bench_fused.py [--reps 5] [--quick]

Each case runs in its own process (``--case NAME``), so allocator state and caches never leak between
cases. In the child: one warm-up step (which also compiles the ``backend="compiled"`` kernels), then ``reps`` timed forward+backward steps (median reported;
gradients are reset and inputs rebuilt outside the timed region). Memory: after the timed steps the child
frees everything it can (``gc.collect`` and glibc ``malloc_trim(0)``, which returns freed heap pages to the
OS), reads VmRSS, resets the kernel's peak-RSS counter (``echo 5 > /proc/self/clear_refs``), runs one
more step and reads VmHWM. "Extra peak" = VmHWM − VmRSS before the step: the most resident memory the
step (forward, backward and the gradients it leaves in ``.grad``) ever held beyond what existed before.
This is exact (the kernel tracks the high-water mark; no sampling), Linux-only.

Results (a table of ratios) are printed and written to benchmarks/results/ as JSON and markdown.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
THREADS = 2
CE = dict(N=4096, K=32000)
LIN = dict(N=4096, D=512, V=65536)

CASES = {
    # name: (group, description)
    "torch_ce": ("ce", "torch F.cross_entropy(label_smoothing=0.1)"),
    "fused": ("ce", "fused_cross_entropy ε=0.1"),
    "fused_inplace": ("ce", "fused_cross_entropy ε=0.1 inplace=True"),
    "fused_eps0": ("ce", "fused_cross_entropy ε=0"),
    "compiled": ("ce", "fused_cross_entropy ε=0.1, backend='compiled'"),
    "compiled_inplace": ("ce", "fused_cross_entropy ε=0.1 inplace=True, backend='compiled'"),
    "compiled_eps0": ("ce", "fused_cross_entropy ε=0, backend='compiled'"),
    "torch_linear_ce": ("lin", "torch linear + F.cross_entropy(label_smoothing=0.1)"),
    "torch_chunked": ("lin", "torch F.linear_cross_entropy(options=LinearCrossEntropyOptions()), ε=0"),
    "linear": ("lin", "linear_cross_entropy ε=0.1"),
    "linear_eps0": ("lin", "linear_cross_entropy ε=0"),
}


def _status(key: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _make_case(name: str):
    """Returns (prepare, step): prepare() builds fresh inputs (untimed), step(inputs) runs fwd+bwd.

    The cross-entropy cases take the gradient w.r.t. the logits with torch.autograd.grad (it is returned
    and kept alive, so it counts in the peak); the linear cases call backward() into the leaves' .grad.
    """
    import torch
    import torch.nn.functional as F

    import labelsmooth

    g = torch.Generator().manual_seed(0)
    if CASES[name][0] == "ce":
        N, K = CE["N"], CE["K"]
        base = torch.randn(N, K, generator=g)
        y = torch.randint(0, K, (N,), generator=g)
        leaf = base.clone().requires_grad_()

        backend = "compiled" if name.startswith("compiled") else "auto"
        if name.endswith("_inplace"):

            def prepare():
                leaf.grad = None
                return leaf.clone()  # a non-leaf activation, overwritten by its gradient

            def step(z):
                loss = labelsmooth.fused_cross_entropy(z, y, label_smoothing=0.1, inplace=True, backend=backend)
                return torch.autograd.grad(loss, z)

            return prepare, step

        def prepare():
            leaf.grad = None
            return leaf

        if name == "torch_ce":
            return prepare, lambda z: torch.autograd.grad(F.cross_entropy(z, y, label_smoothing=0.1), z)
        eps = 0.0 if name.endswith("_eps0") else 0.1
        return prepare, lambda z: torch.autograd.grad(
            labelsmooth.fused_cross_entropy(z, y, label_smoothing=eps, backend=backend), z
        )

    N, D, V = LIN["N"], LIN["D"], LIN["V"]
    h = (torch.randn(N, D, generator=g) / D**0.5).requires_grad_()
    W = torch.randn(V, D, generator=g).requires_grad_()
    y = torch.randint(0, V, (N,), generator=g)

    def prepare():
        h.grad = None
        W.grad = None
        return None

    if name == "torch_linear_ce":
        return prepare, lambda _: F.cross_entropy(F.linear(h, W), y, label_smoothing=0.1).backward()
    if name == "torch_chunked":
        opts = torch.nn.LinearCrossEntropyOptions()
        return prepare, lambda _: F.linear_cross_entropy(h, W, y, options=opts).backward()
    eps = 0.0 if name == "linear_eps0" else 0.1
    return prepare, lambda _: labelsmooth.linear_cross_entropy(h, W, y, label_smoothing=eps).backward()


def run_child(name: str, reps: int) -> dict:
    import torch

    torch.set_num_threads(THREADS)
    prepare, step = _make_case(name)
    step(prepare())  # warm-up
    times = []
    for _ in range(reps):
        x = prepare()
        t0 = time.perf_counter()
        step(x)
        times.append(time.perf_counter() - t0)
        del x
    x = prepare()
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    rss_before = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    kept = step(x)  # the gradient it returns stays alive until the peak is read
    extra = _status("VmHWM") - rss_before
    del kept
    return {"case": name, "times_s": times, "median_s": statistics.median(times), "extra_peak_bytes": extra}


def machine() -> dict:
    import torch

    model = "unknown"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": model, "threads": THREADS, "torch": torch.__version__, "python": platform.python_version()}


def table(results: dict) -> tuple[list[list[str]], dict]:
    """Rows of the markdown table and the ratios, for the groups that ran."""
    r = results
    base = {"ce": ("torch_ce", "× logits"), "lin": ("torch_linear_ce", "× unfused")}
    rows, ratios = [], {}
    for name, (group, desc) in CASES.items():
        if name not in r:
            continue
        t, mem = r[name]["median_s"], r[name]["extra_peak_bytes"]
        ref, mlabel = base[group]
        tr = t / r[ref]["median_s"]
        mr = mem / (CE["N"] * CE["K"] * 4 if group == "ce" else r[ref]["extra_peak_bytes"])
        ratios[name] = {"time_vs_torch": tr, "mem_ratio": mr, "mem_unit": mlabel}
        rows.append([name, desc, f"{t:.3f}", f"{tr:.2f}", f"{mem / 2**20:.0f}", f"{mr:.3f} {mlabel}"])
    for label, smoothed, plain in [("fused", "fused", "fused_eps0"), ("fused compiled", "compiled", "compiled_eps0"),
                                   ("linear", "linear", "linear_eps0")]:  # fmt: skip
        if smoothed in r:
            ratios[f"smoothing_overhead {label}"] = r[smoothed]["median_s"] / r[plain]["median_s"] - 1
    if "linear" in r:
        ratios["linear_vs_torch_chunked"] = r["linear"]["median_s"] / r["torch_chunked"]["median_s"]
    return rows, ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=list(CASES), help="(internal) run one case in this process")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per case (>= 5)")
    parser.add_argument("--group", choices=["ce", "lin"], help="run only the cross-entropy or the linear cases")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_child(args.case, args.reps)))
        return
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS))
    results = {}
    for name in [n for n, (group, _) in CASES.items() if args.group in (None, group)]:
        proc = subprocess.run(
            [sys.executable, __file__, "--case", name, "--reps", str(args.reps)],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"{name:16s} {results[name]['median_s']:.3f} s  {results[name]['extra_peak_bytes'] / 2**20:.0f} MiB",
            flush=True,
        )
    rows, ratios = table(results)
    header = ["case", "what", "median s", "time / torch", "extra peak MiB", "extra peak ratio"]
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]
    md.append("")
    overheads = ", ".join(f"{k.split(' ', 1)[1]} {v:+.1%}" for k, v in ratios.items() if k.startswith("smoothing"))
    md.append(f"smoothing overhead vs ε=0: {overheads}")
    if "linear_vs_torch_chunked" in ratios:
        md.append(f"linear / torch chunked (ε=0) time: {ratios['linear_vs_torch_chunked']:.2f}")
    print("\n".join(md))
    info = machine()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    config = {
        "ce": CE,
        "linear": LIN,
        "group": args.group,
        "reps": args.reps,
        "dtype": "float32",
        "machine": info,
        "utc": stamp,
    }
    (out / f"bench_fused-{stamp}.json").write_text(
        json.dumps({"config": config, "results": results, "ratios": ratios}, indent=1)
    )
    (out / f"bench_fused-{stamp}.md").write_text(
        f"# bench_fused {stamp}\n\n{json.dumps(config)}\n\n" + "\n".join(md) + "\n"
    )


if __name__ == "__main__":
    main()
