"""Run a sweep's grid and write every finished run to the store, skipping what is already there.

Backends: ``local`` (a process pool, ``workers`` processes, each with ``max(1, cores // workers)`` torch
threads; ``workers=1`` runs in this process) and ``ray`` (each run a Ray task on ``ray.init(address)``,
or on a local instance when no address is given). In both, the driver (this process) writes each result
to the store as it completes, in one transaction, so killing the sweep loses at most the runs in flight.

A run that raises (``TrainingDiverged`` or anything else) is stored as ``failed`` with its error and the
sweep goes on; failed runs are retried only with ``retry_failed=True``.
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Iterator

from labelsmooth.experiment.config import RunConfig
from labelsmooth.experiment.store import Store


def run_one(config_dict: dict, threads: int | None = None, data_dir: str | None = None) -> dict:
    """Train one config and return the store record (``status`` done or failed). Never raises."""
    from labelsmooth.experiment.train import train

    config = RunConfig.from_dict(config_dict)
    created = time.time()
    try:
        result = train(config, data_dir=data_dir, progress=False, threads=threads)
    except Exception as exc:  # recorded, never raised: one failure must not stop the sweep
        return {
            "key": config.key(),
            "status": "failed",
            "config": config.to_dict(),
            "error": f"{type(exc).__name__}: {exc}",
            "extra": {"traceback": traceback.format_exc(limit=5)},
            "created": created,
            "finished": time.time(),
        }
    return {
        "key": result["key"],
        "status": "done",
        "config": result["config"],
        "metrics": result["metrics"],
        "curves": result.get("curves"),
        "reliability": result["reliability"],
        "timings": result.get("timings"),
        "versions": result.get("versions"),
        "machine": result.get("machine"),
        "extra": {
            "settings": result.get("settings"),
            "data": result.get("data"),
            "reliability_ts": result.get("reliability_ts"),
        },
        "predictions": result.get("predictions"),
        "created": created,
        "finished": time.time(),
    }


def pending(configs: list[RunConfig], store: Store, retry_failed: bool = False) -> list[RunConfig]:
    """The configs still to run: not in the store, or failed when ``retry_failed``."""
    status = store.status()
    todo = {None, "failed"} if retry_failed else {None}
    return [c for c in configs if status.get(c.key()) in todo]


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    with contextlib.suppress(Exception):  # Linux: die with the driver instead of running on as an orphan
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _local(todo: list[RunConfig], workers: int, threads: int, data_dir) -> Iterator[dict]:
    if workers == 1:
        for c in todo:
            yield run_one(c.to_dict(), threads, data_dir)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    pool = ProcessPoolExecutor(
        workers, mp_context=mp.get_context("spawn"), initializer=_worker_init, initargs=(threads,)
    )
    try:
        futures = [pool.submit(run_one, c.to_dict(), threads, data_dir) for c in todo]
        for f in as_completed(futures):
            yield f.result()
    finally:  # on Ctrl-C (or any error in the driver) drop the queued runs instead of finishing them
        pool.shutdown(wait=True, cancel_futures=True)


def _ray(todo: list[RunConfig], threads: int, data_dir, address: str | None) -> Iterator[dict]:
    try:
        import ray
    except ImportError as exc:  # the optional extra
        raise RuntimeError("The ray backend needs Ray: pip install 'labelsmooth[ray]'") from exc
    started_here = not ray.is_initialized()
    if started_here:
        src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}}
        ray.init(address=address, runtime_env=env, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=threads)(run_one)
        refs = [task.remote(c.to_dict(), threads, data_dir) for c in todo]
        while refs:
            done, refs = ray.wait(refs, num_returns=1)
            yield ray.get(done[0])
    finally:
        if started_here:
            ray.shutdown()


def sweep(
    configs: list[RunConfig],
    store_path: str,
    *,
    workers: int | None = None,
    backend: str = "local",
    address: str | None = None,
    retry_failed: bool = False,
    data_dir: str | None = None,
    progress: bool = True,
    command: str | None = None,
    on_result: Callable[[dict], None] | None = None,
) -> dict[str, int]:
    """Run the configs not yet in the store; returns counts ``{"total", "skipped", "done", "failed"}``.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "runs.sqlite")
        >>> grid = [RunConfig("digits", "mlp", epochs=1, train_size=100, test_size=50)]
        >>> sweep(grid, path, workers=1, progress=False)
        {'total': 1, 'skipped': 0, 'done': 1, 'failed': 0}
        >>> sweep(grid, path, workers=1, progress=False)["skipped"]
        1
    """
    if backend not in ("local", "ray"):
        raise ValueError(f"Expected `backend` to be 'local' or 'ray', but got {backend!r}")
    cores = os.cpu_count() or 1
    workers = workers or cores
    if workers < 1:
        raise ValueError(f"Expected `workers` to be >= 1, but got {workers}")
    threads = max(1, cores // workers)
    counts = {"total": len(configs), "skipped": 0, "done": 0, "failed": 0}
    with Store(store_path) as store:
        todo = pending(configs, store, retry_failed)
        counts["skipped"] = len(configs) - len(todo)
        if not todo:
            return counts
        from labelsmooth.experiment.train import machine

        sweep_id = store.start_sweep(
            command or shlex.join(sys.argv),
            backend,
            workers,
            len(todo),
            machine() | {"threads_per_run": threads},
        )
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="sweep", unit="run", file=sys.stderr, disable=not progress)
        results = (
            _local(todo, workers, threads, data_dir) if backend == "local" else _ray(todo, threads, data_dir, address)
        )
        try:
            for record in results:
                record["backend"] = backend
                store.put(record)
                counts[record["status"]] += 1
                cfg = record["config"]
                label = RunConfig.from_dict(cfg).label()
                if record["status"] == "done":
                    val = record["metrics"].get("val_accuracy", math.nan)  # validation: trials are chosen on it
                    note = f"{cfg['dataset']} {label} s{cfg['seed']}: val acc {val:.4f}"
                else:
                    note = f"{cfg['dataset']} {label} s{cfg['seed']}: FAILED"
                    bar.write(f"failed: {cfg['dataset']} {label} seed {cfg['seed']}: {record['error']}")
                bar.set_postfix_str(note)
                bar.update(1)
                if on_result is not None:
                    on_result(record)
        finally:
            bar.close()
        store.finish_sweep(sweep_id)
    return counts
