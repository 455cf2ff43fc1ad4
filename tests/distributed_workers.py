"""Multi-process workers for tests/test_distributed.py, and the script behind the numbers in docs/distributed.md.

Each world size is started once (``spawn``: torch.multiprocessing, start method "spawn", gloo over the
loopback interface, file rendezvous); every rank runs all of its cases, collects failures instead of
stopping at the first, and writes them to a JSON file that the test reads back. A rank that crashes,
raises or hangs is reported with its log and Python stack. Everything is float64.

This module also holds the *faulty* per-partition smoothing of Megatron-LM's vocab-parallel cross-entropy
(NVIDIA/Megatron-LM issues #737, #7464), for measurement only; it is not, and must not be, in the library.

Run ``PYTHONPATH=src python -m tests.distributed_workers`` from the repository root to print the table of
docs/distributed.md.
"""

from __future__ import annotations

import faulthandler
import json
import os
import socket
import sys
import time
import traceback
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.multiprocessing.spawn import ProcessException

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-9  # absolute and relative, float64
CONVENTIONS = ("uniform", "others")
REDUCTIONS = ("none", "mean", "sum")
# Unequal class slices per world size: rank r holds classes [offsets[r], offsets[r+1]).
SLICES = {1: [7], 2: [2, 5], 3: [3, 1, 4]}
# The faulty variant divides by V_r − 1, so it cannot even run with a one-class slice: no size 1 here.
PER_PARTITION_SLICES = {1: [7], 2: [2, 5], 3: [3, 2, 4]}


# --------------------------------------------------------------------------------------------------
# Process handling


RANK_TIMEOUT_S = 300  # a rank still running after this dumps its Python stack to its log and exits


def _loopback_interface() -> str | None:
    names = {name for _, name in socket.if_nameindex()} if hasattr(socket, "if_nameindex") else set()
    return next((n for n in ("lo", "lo0") if n in names), None)


def rank_logs(out_dir: str | Path, world_size: int) -> str:
    """Every rank's log: its progress, a Python traceback, or faulthandler's stack dump on a crash or hang."""
    parts = []
    for r in range(world_size):
        path = Path(out_dir) / f"rank{r}.log"
        text = path.read_text(errors="replace").strip() if path.exists() else "(no log: the rank never started)"
        parts.append(f"----- rank {r} ({path}) -----\n{text}")
    return "\n".join(parts)


def spawn(fn, world_size: int, out_dir: str, *args) -> None:
    """Run ``fn(rank, world_size, out_dir, *args)`` on ``world_size`` fresh processes joined by gloo.

    The rendezvous is a file in ``out_dir`` (no TCP port to pick, so nothing to collide with other tests
    or processes); gloo talks over the loopback interface. Each rank writes ``out_dir/rank{r}.log``; if a
    rank fails (exception, signal, or hang past ``RANK_TIMEOUT_S``) this raises a RuntimeError holding
    every rank's log, in which a crashed rank has its Python stack (faulthandler) instead of a bare signal.
    """
    rendezvous = Path(out_dir) / "rendezvous"
    if rendezvous.exists():
        raise FileExistsError(f"{rendezvous} exists: give every spawn a fresh out_dir")
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    if "GLOO_SOCKET_IFNAME" not in os.environ and _loopback_interface():
        env["GLOO_SOCKET_IFNAME"] = _loopback_interface()
    # the children import this checkout's labelsmooth and this module (as tests.distributed_workers)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        ctx = mp.start_processes(
            _rank_main, args=(fn, world_size, out_dir, args), nprocs=world_size, join=False, start_method="spawn"
        )
        deadline = time.monotonic() + RANK_TIMEOUT_S + 60
        while not ctx.join(timeout=1.0):
            if time.monotonic() > deadline:  # the ranks' own watchdogs failed too: stop them
                for proc in ctx.processes:
                    proc.kill()
                raise TimeoutError(f"ranks still running after {RANK_TIMEOUT_S + 60} s")
    except (ProcessException, TimeoutError) as error:
        raise RuntimeError(
            f"{fn.__name__} failed at world size {world_size}: {error}\n{rank_logs(out_dir, world_size)}"
        ) from error
    finally:  # leave the test process's environment as it was
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _rank_main(rank: int, fn, world_size: int, out_dir: str, args: tuple) -> None:
    """One rank: log, start gloo, run ``fn``, tear down, and leave without interpreter finalization."""
    log = open(Path(out_dir) / f"rank{rank}.log", "w", buffering=1)  # noqa: SIM115 (open until os._exit)
    # a fatal signal (SIGABRT, SIGSEGV) or a hang dumps every thread's Python stack into the log
    faulthandler.enable(file=log, all_threads=True)
    faulthandler.dump_traceback_later(RANK_TIMEOUT_S, exit=True, file=log)
    try:
        sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
        torch.set_num_threads(1)
        dist.init_process_group(
            "gloo", init_method=(Path(out_dir) / "rendezvous").resolve().as_uri(), rank=rank,
            world_size=world_size, timeout=timedelta(seconds=RANK_TIMEOUT_S),
        )  # fmt: skip
        print(f"rank {rank}: process group up, running {fn.__name__}", file=log)
        fn(rank, world_size, out_dir, *args)
        print(f"rank {rank}: {fn.__name__} returned; barrier, destroy_process_group", file=log)
        dist.barrier()  # every rank's collectives are complete
        dist.destroy_process_group()
    except BaseException:
        log.write(traceback.format_exc())  # torch.multiprocessing also hands it to the parent
        raise
    faulthandler.cancel_dump_traceback_later()
    print(f"rank {rank}: done", file=log)
    log.close()
    sys.stdout.flush()
    sys.stderr.flush()
    # DistributedDataParallel keeps a reference to the process group that destroy_process_group cannot drop,
    # so gloo's threads outlive it. Finalizing the interpreter with them alive can abort the process
    # ("terminate called without an active exception", SIGABRT) when one of them touches a Python object;
    # everything is written and every collective has finished, so leave now.
    os._exit(0)


def _offsets(sizes: list[int]) -> list[int]:
    out = [0]
    for s in sizes:
        out.append(out[-1] + s)
    return out


def _write(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=1))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach() - b.detach()).abs().max()) if a.numel() else 0.0


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a.detach(), b.detach(), rtol=TOL, atol=TOL)


class _Checks:
    """A rank's comparisons against a reference: ``check(name, ours, ref)`` counts one, and keeps a failure
    line when the two differ in shape or beyond TOL; ``results()`` is what the rank writes for the test."""

    def __init__(self, rank: int):
        self.rank, self.checked, self.failures = rank, 0, []

    def __call__(self, name: str, ours: torch.Tensor, ref: torch.Tensor) -> None:
        self.checked += 1
        if not _close(ours, ref):
            diff = _max_diff(ours, ref) if ours.shape == ref.shape else "shape"
            self.failures.append(f"rank {self.rank}: {name}: max |diff| = {diff}")

    def results(self, **extra) -> dict:
        return {"checked": self.checked, "failures": self.failures, **extra}


def failing_worker(rank: int, world_size: int, out_dir: str, how: str) -> None:
    """For the harness's own tests: the last rank raises or aborts (``how``) inside a named function."""
    dist.barrier()
    if rank == world_size - 1:
        _fail_here(how)


def _fail_here(how: str) -> None:
    if how == "raise":
        raise ValueError("rank failed on purpose")
    os.abort()  # what a C++ std::terminate does: SIGABRT, no Python exception


# --------------------------------------------------------------------------------------------------
# The faulty per-partition variant (Megatron-LM's label-smoothing branch), for measurement only


def per_partition_cross_entropy(local_logits: torch.Tensor, target: torch.Tensor, label_smoothing: float, start: int):
    """Megatron-LM's vocab-parallel smoothed loss per row and the gradient of its sum w.r.t. the slice.

    Written from megatron/core/tensor_parallel/cross_entropy.py (convention "others": ε·V/(V−1) turns it
    into the uniform ε). The row max, sum of exponentials and target logit are all-reduced correctly; the
    bug is that ``vocab_size`` is the *partition* size V_r and ``mean_log_probs`` a mean over the slice:

        loss_r = (1 − s_r)(lse − z_y) − s_r · mean_{k in slice}(z_k − lse),  s_r = ε V_r / (V_r − 1)
        grad_r = softmax − (1 − s_r) e_y − s_r / V_r

    ``local_logits`` (N, V_r) hold classes [start, start + V_r). Returns (row losses (N,), gradient
    (N, V_r)); the losses differ between ranks when the world size is > 1.
    """
    V_r = local_logits.shape[-1]
    row_max = local_logits.amax(-1)
    dist.all_reduce(row_max, op=dist.ReduceOp.MAX)
    shifted = local_logits - row_max.unsqueeze(-1)
    sum_exp = shifted.exp().sum(-1)
    local = target - start
    owned = (local >= 0) & (local < V_r)
    z_y = torch.where(owned, shifted.gather(1, local.clamp(0, V_r - 1).unsqueeze(1)).squeeze(1), 0.0)
    packed = torch.stack([sum_exp, z_y])
    dist.all_reduce(packed, op=dist.ReduceOp.SUM)
    log_sum = packed[0].log()
    nll = log_sum - packed[1]
    log_probs = shifted - log_sum.unsqueeze(-1)
    s = label_smoothing * V_r / (V_r - 1)
    loss = (1.0 - s) * nll - s * log_probs.mean(-1)
    grad = log_probs.exp()
    grad[owned, local[owned]] -= 1.0 - s
    grad -= s / V_r
    return loss, grad


def per_partition_measurement(
    sizes: list[int], *, rows: int, scale: float, eps: float, logits: str = "iid", seed: int = 0
) -> dict:
    """Run the faulty variant and ours on this rank's slice; return what the rank sees (collective call).

    ``logits="iid"``: z = scale·N(0, 1), uniform targets. ``logits="zipf"``: a frequency-ordered
    vocabulary as in language models: z_k = scale·N(0, 1) − log(k + 1) and targets drawn ∝ 1/(k + 1).
    """
    from labelsmooth import cross_entropy
    from labelsmooth.distributed import vocab_parallel_cross_entropy

    rank = dist.get_rank()
    offsets = _offsets(sizes)
    K = offsets[-1]
    g = torch.Generator().manual_seed(seed)
    full = scale * torch.randn(rows, K, generator=g, dtype=torch.float64)
    if logits == "zipf":
        log_freq = -torch.arange(1, K + 1, dtype=torch.float64).log()
        full = full + log_freq
        y = torch.multinomial(log_freq.exp(), rows, replacement=True, generator=g)
    else:
        y = torch.randint(0, K, (rows,), generator=g)
    s, e = offsets[rank], offsets[rank + 1]

    exact_full = full.clone().requires_grad_()
    exact_rows = cross_entropy(exact_full, y, reduction="none", label_smoothing=eps, convention="others")
    exact_rows.sum().backward()
    exact_rows, exact_grad = exact_rows.detach(), exact_full.grad[:, s:e]

    faulty_rows, faulty_grad = per_partition_cross_entropy(full[:, s:e].clone(), y, eps, s)

    ours_local = full[:, s:e].clone().requires_grad_()
    ours_rows = vocab_parallel_cross_entropy(ours_local, y, label_smoothing=eps, convention="others", reduction="none")
    ours_rows.sum().backward()
    ours_rows = ours_rows.detach()

    # gradient errors over the whole (N, K) gradient: sums of squares and maxima all-reduced
    sq = torch.stack([
        ((faulty_grad - exact_grad) ** 2).sum(), ((ours_local.grad - exact_grad) ** 2).sum(), (exact_grad**2).sum()
    ])  # fmt: skip
    dist.all_reduce(sq, op=dist.ReduceOp.SUM)
    mx = torch.stack([(faulty_grad - exact_grad).abs().max(), (ours_local.grad - exact_grad).abs().max()])
    dist.all_reduce(mx, op=dist.ReduceOp.MAX)
    # the target the faulty gradient implies, q = softmax − grad, summed over all K classes (exact: 1)
    row_sums = torch.stack([faulty_grad.sum(1), ours_local.grad.sum(1)])
    dist.all_reduce(row_sums, op=dist.ReduceOp.SUM)
    return {
        "rank": rank,
        "slice": [s, e],
        "exact_loss": float(exact_rows.mean()),
        "faulty_loss": float(faulty_rows.mean()),
        "ours_loss": float(ours_rows.mean()),
        "faulty_row_max_abs_err": _max_diff(faulty_rows, exact_rows),
        "ours_row_max_abs_err": _max_diff(ours_rows, exact_rows),
        "faulty_grad_rel_err": float(sq[0].sqrt() / sq[2].sqrt()),
        "ours_grad_rel_err": float(sq[1].sqrt() / sq[2].sqrt()),
        "faulty_grad_max_abs_err": float(mx[0]),
        "ours_grad_max_abs_err": float(mx[1]),
        "faulty_target_mass": float((1.0 - row_sums[0]).mean()),
        "ours_target_mass": float((1.0 - row_sums[1]).mean()),
    }


# --------------------------------------------------------------------------------------------------
# Exactness: every case against the single-process labelsmooth.cross_entropy


def _case_data(K: int, seed: int, *, rows: int = 9, extra_dim: int | None = None):
    g = torch.Generator().manual_seed(seed)
    shape = (rows, K) if extra_dim is None else (rows, K, extra_dim)
    full = 3.0 * torch.randn(shape, generator=g, dtype=torch.float64)
    y = torch.randint(0, K, (rows,) if extra_dim is None else (rows, extra_dim), generator=g)
    y[torch.rand(y.shape, generator=g) < 0.25] = -100  # ignored targets
    y.view(-1)[0] = K - 1  # the last class (last rank's slice) always appears
    prior = torch.softmax(torch.randn(K, generator=g, dtype=torch.float64), 0)
    weight = 0.5 + torch.rand(K, generator=g, dtype=torch.float64)
    return full, y, prior, weight


def exactness_worker(rank: int, world_size: int, out_dir: str) -> None:
    import labelsmooth
    from labelsmooth.distributed import vocab_parallel_cross_entropy, vocab_parallel_linear_cross_entropy

    offsets = _offsets(SLICES[world_size])
    K, s, e = offsets[-1], offsets[rank], offsets[rank + 1]
    check, case_id = _Checks(rank), 0

    for convention in CONVENTIONS:
        for use_prior in (False, True):
            for use_weight in (False, True):
                for eps in (0.0, 0.3):
                    for reduction in REDUCTIONS:
                        for extra_dim in (None, 2):
                            case_id += 1
                            full, y, prior, weight = _case_data(K, case_id, extra_dim=extra_dim)
                            opts = dict(
                                label_smoothing=eps, convention=convention, reduction=reduction,
                                prior=prior if use_prior else None, weight=weight if use_weight else None,
                            )  # fmt: skip
                            name = f"CE {opts | {'prior': use_prior, 'weight': use_weight, 'extra_dim': extra_dim}}"
                            local = full[:, s:e].clone().requires_grad_()
                            # every other case passes the offsets; the rest derive them by all-gather
                            ours = vocab_parallel_cross_entropy(
                                local, y, class_offsets=offsets if case_id % 2 else None, **opts
                            )
                            ref_full = full.clone().requires_grad_()
                            ref = labelsmooth.cross_entropy(ref_full, y, **opts)
                            upstream = torch.randn(
                                ref.shape, generator=torch.Generator().manual_seed(case_id), dtype=torch.float64
                            )
                            (ours * upstream).sum().backward()
                            (ref * upstream).sum().backward()
                            check(name + " loss", ours, ref)
                            check(name + " grad", local.grad, ref_full.grad[:, s:e])

    # the linear head split by rows; 9 rows in chunks of 4 (uneven last chunk) or in one chunk
    for convention in CONVENTIONS:
        for use_prior in (False, True):
            for reduction in REDUCTIONS:
                for use_bias in (False, True):
                    case_id += 1
                    _, y, prior, weight = _case_data(K, case_id)
                    g = torch.Generator().manual_seed(10_000 + case_id)
                    h = torch.randn(9, 4, generator=g, dtype=torch.float64)
                    W = torch.randn(K, 4, generator=g, dtype=torch.float64)
                    b = torch.randn(K, generator=g, dtype=torch.float64)
                    opts = dict(
                        label_smoothing=0.2, convention=convention, reduction=reduction,
                        prior=prior if use_prior else None, weight=weight if case_id % 2 else None,
                    )  # fmt: skip
                    name = f"linear CE {opts | {'prior': use_prior, 'bias': use_bias}}"
                    h_ours, W_ours = h.clone().requires_grad_(), W[s:e].clone().requires_grad_()
                    b_ours = b[s:e].clone().requires_grad_() if use_bias else None
                    ours = vocab_parallel_linear_cross_entropy(
                        h_ours, W_ours, y, local_bias=b_ours, chunk_size=4 if case_id % 3 else None, **opts
                    )
                    h_ref, W_ref, b_ref = (t.clone().requires_grad_() for t in (h, W, b))
                    ref = labelsmooth.cross_entropy(F.linear(h_ref, W_ref, b_ref if use_bias else None), y, **opts)
                    upstream = torch.randn(ref.shape, generator=g, dtype=torch.float64)
                    (ours * upstream).sum().backward()
                    (ref * upstream).sum().backward()
                    check(name + " loss", ours, ref)
                    check(name + " input grad (all-reduced)", h_ours.grad, h_ref.grad)
                    check(name + " weight grad", W_ours.grad, W_ref.grad[s:e])
                    if use_bias:
                        check(name + " bias grad", b_ours.grad, b_ref.grad[s:e])

    per_partition = per_partition_measurement(PER_PARTITION_SLICES[world_size], rows=9, scale=3.0, eps=0.1)
    _write(Path(out_dir) / f"rank{rank}.json", check.results(per_partition=per_partition))


# --------------------------------------------------------------------------------------------------
# z-loss and softcapping: every case against the float64 oracle of tests/reference.py on the full logits

TERMS = ((0.05, None), (0.0, 2.5), (0.05, 3.0))  # (z_loss, softcap)


def terms_worker(rank: int, world_size: int, out_dir: str) -> None:
    """The vocab-parallel losses with a z-loss and/or a softcap, values, z-loss parts and gradients."""
    from labelsmooth.distributed import vocab_parallel_cross_entropy, vocab_parallel_linear_cross_entropy
    from tests import reference as R

    offsets = _offsets(SLICES[world_size])
    K, s, e = offsets[-1], offsets[rank], offsets[rank + 1]
    check, case_id = _Checks(rank), 0

    for z_loss, softcap in TERMS:
        for convention in CONVENTIONS:
            for use_prior, use_weight in ((False, False), (True, True)):
                for reduction in REDUCTIONS:
                    case_id += 1
                    full, y, prior, weight = _case_data(K, 500 + case_id)
                    opts = dict(
                        label_smoothing=0.3, convention=convention, reduction=reduction,
                        prior=prior if use_prior else None, weight=weight if use_weight else None,
                    )  # fmt: skip
                    ref_kw = dict(
                        eps=0.3, convention=convention, prior=opts["prior"], weight=opts["weight"],
                        reduction=reduction, softcap=softcap,
                    )  # fmt: skip
                    name = f"CE z_loss={z_loss} softcap={softcap} {convention} prior/weight={use_prior} {reduction}"
                    upstream = torch.randn(full.shape[0] if reduction == "none" else (), dtype=torch.float64,
                                           generator=torch.Generator().manual_seed(case_id))  # fmt: skip
                    local = full[:, s:e].clone().requires_grad_()
                    ours, z_part = vocab_parallel_cross_entropy(
                        local, y, z_loss=z_loss, softcap=softcap, return_z_loss=True, **opts
                    )
                    (ours * upstream).sum().backward()
                    expected = R.cross_entropy(full, y, z_loss=z_loss, **ref_kw)
                    check(name + " loss", ours, expected)
                    check(name + " z-loss part", z_part, expected - R.cross_entropy(full, y, **ref_kw))
                    G = _oracle_grad(full, y, upstream, z_loss=z_loss, **ref_kw)
                    check(name + " grad", local.grad, G[:, s:e])

                    # the linear head: 9 rows in chunks of 4 (an uneven last chunk)
                    g = torch.Generator().manual_seed(20_000 + case_id)
                    h = torch.randn(9, 4, generator=g, dtype=torch.float64)
                    W = torch.randn(K, 4, generator=g, dtype=torch.float64)
                    b = torch.randn(K, generator=g, dtype=torch.float64)
                    h_ours, W_ours = h.clone().requires_grad_(), W[s:e].clone().requires_grad_()
                    b_ours = b[s:e].clone().requires_grad_()
                    ours = vocab_parallel_linear_cross_entropy(
                        h_ours, W_ours, y, local_bias=b_ours, chunk_size=4, z_loss=z_loss, softcap=softcap, **opts
                    )
                    (ours * upstream).sum().backward()
                    logits = h @ W.T + b
                    check("linear " + name + " loss", ours, R.cross_entropy(logits, y, z_loss=z_loss, **ref_kw))
                    G = _oracle_grad(logits, y, upstream, z_loss=z_loss, **ref_kw)
                    check("linear " + name + " input grad (all-reduced)", h_ours.grad, G @ W)
                    check("linear " + name + " weight grad", W_ours.grad, (G.T @ h)[s:e])
                    check("linear " + name + " bias grad", b_ours.grad, G.sum(0)[s:e])
    _write(Path(out_dir) / f"rank{rank}.json", check.results())


def _oracle_grad(logits: torch.Tensor, y: torch.Tensor, upstream: torch.Tensor, **kw) -> torch.Tensor:
    """The oracle's gradient of Σ upstream·loss: per row for reduction "none", one number otherwise."""
    from tests import reference as R

    if kw["reduction"] == "none":
        return R.cross_entropy_grad(logits, y, upstream=upstream, **kw)
    return R.cross_entropy_grad(logits, y, **kw) * float(upstream)


# --------------------------------------------------------------------------------------------------
# DDP: data parallelism with the losses, against single-process full-batch training

DDP_STEPS, DDP_LR, DDP_ROWS = 4, 0.5, 12


def ddp_data():
    g = torch.Generator().manual_seed(123)
    X = torch.randn(DDP_ROWS, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (DDP_ROWS,), generator=g)
    y_ignored = y.clone()
    y_ignored[[1, 2, 4]] = -100  # 3 ignored in the first half, 0 in the second: unequal denominators
    weight = torch.tensor([0.5, 1.0, 2.0, 1.5], dtype=torch.float64)
    return X, y, y_ignored, weight


def ddp_model() -> torch.nn.Module:
    torch.manual_seed(7)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 4)).double()


# recipe -> (uses weights and ignored targets, how each rank turns its rows into the loss it backpropagates)
DDP_RECIPES = ("mean", "global_denominator", "naive_weighted_mean")


def train_reference(recipe: str) -> list[torch.Tensor]:
    """Single-process training on the full batch: the answer every recipe should reproduce."""
    import labelsmooth

    X, y, y_ignored, weight = ddp_data()
    model = ddp_model()
    opt = torch.optim.SGD(model.parameters(), lr=DDP_LR)
    for _ in range(DDP_STEPS):
        opt.zero_grad()
        if recipe == "mean":
            loss = labelsmooth.cross_entropy(model(X), y, label_smoothing=0.1)
        else:
            loss = labelsmooth.cross_entropy(
                model(X), y_ignored, weight=weight, label_smoothing=0.1, convention="others"
            )
        loss.backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


def ddp_worker(rank: int, world_size: int, out_dir: str) -> None:
    import labelsmooth
    from labelsmooth.distributed import global_mean_denominator

    X, y, y_ignored, weight = ddp_data()
    rows = slice(rank * DDP_ROWS // world_size, (rank + 1) * DDP_ROWS // world_size)  # equal shards
    results = {}
    for recipe in DDP_RECIPES:
        model = torch.nn.parallel.DistributedDataParallel(ddp_model())
        opt = torch.optim.SGD(model.parameters(), lr=DDP_LR)
        for _ in range(DDP_STEPS):
            opt.zero_grad()
            out = model(X[rows])
            if recipe == "mean":  # unweighted, nothing ignored, equal shards: the per-rank mean is right
                loss = labelsmooth.cross_entropy(out, y[rows], label_smoothing=0.1)
            elif recipe == "global_denominator":  # W · (rank's sum) / (global Σ w_y): right in general
                opts = dict(weight=weight, label_smoothing=0.1, convention="others")
                total = labelsmooth.cross_entropy(out, y_ignored[rows], reduction="sum", **opts)
                denominator = global_mean_denominator(y_ignored[rows], weight=weight)
                loss = world_size * total / denominator
            else:  # the per-rank weighted mean, averaged by DDP: wrong when the denominators differ
                loss = labelsmooth.cross_entropy(
                    out, y_ignored[rows], weight=weight, label_smoothing=0.1, convention="others"
                )
            loss.backward()
            opt.step()
        results[recipe] = [p.detach().tolist() for p in model.module.parameters()]
    _write(Path(out_dir) / f"rank{rank}.json", results)


# --------------------------------------------------------------------------------------------------
# The docs/distributed.md table


def report_worker(rank: int, world_size: int, out_dir: str, sizes: list[int], logits: str) -> None:
    result = per_partition_measurement(sizes, rows=256, scale=2.0, eps=0.1, logits=logits)
    _write(Path(out_dir) / f"rank{rank}.json", result)


def main() -> None:
    import tempfile

    settings = [[1000], [500, 500], [300, 700], [250, 250, 250, 250], [100, 200, 300, 400]]
    for logits in ("iid", "zipf"):
        print(f"\nlogits={logits!r}: K = 1000, N = 256 rows, scale 2, ε = 0.1 (convention 'others'), float64, gloo")
        print(
            "| slices | faulty mean loss per rank | exact | max rel. err. of the mean | max row err. "
            "| grad rel. err. (max abs) | implied target mass | ours: max loss err., max grad err. |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for sizes in settings:
            with tempfile.TemporaryDirectory() as d:
                spawn(report_worker, len(sizes), d, sizes, logits)
                ms = [json.loads((Path(d) / f"rank{r}.json").read_text()) for r in range(len(sizes))]
            exact = ms[0]["exact_loss"]
            faulty = ", ".join(f"{m['faulty_loss']:.5f}" for m in ms)
            rel = max(abs(m["faulty_loss"] - exact) / exact for m in ms)
            row = max(m["faulty_row_max_abs_err"] for m in ms)
            ours_loss = max(max(abs(m["ours_loss"] - exact), m["ours_row_max_abs_err"]) for m in ms)
            print(
                f"| {sizes} | {faulty} | {exact:.5f} | {rel:.2e} | {row:.2e} | {ms[0]['faulty_grad_rel_err']:.2e} "
                f"({ms[0]['faulty_grad_max_abs_err']:.2e}) | {ms[0]['faulty_target_mass']:.4f} | "
                f"{ours_loss:.1e}, {ms[0]['ours_grad_max_abs_err']:.1e} |"
            )


if __name__ == "__main__":
    main()
