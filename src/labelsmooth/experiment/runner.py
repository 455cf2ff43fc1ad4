"""Run a sweep's grid and write every finished run to the store, skipping what is already there.

Backends: ``local`` (a process pool, ``workers`` processes, each with ``max(1, cores // workers)`` torch
threads; ``workers=1`` runs in this process) and ``ray`` (each run a Ray task on ``ray.init(address)``,
or on a local instance when no address is given). In both, the driver (this process) writes each result
to the store as it completes, in one transaction, so killing the sweep loses at most the runs in flight.

The driver claims each run in the store just before starting it, with a lease it keeps renewing (see
:mod:`labelsmooth.experiment.store`), and leaves runs that another live sweep has claimed to that sweep.
Several sweeps on one store therefore split its runs without training any twice, and the runs of a
killed sweep are taken over as soon as its process is gone (same machine) or its lease expires.

A run that raises (``TrainingDiverged`` or anything else) is stored as ``failed`` with its error and the
sweep goes on; failed runs are retried only with ``retry_failed=True``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable

from labelsmooth.experiment.atomic import WriteError
from labelsmooth.experiment.config import RunConfig
from labelsmooth.experiment.store import Store, owner_id

#: Seconds a sweep's claim on a run lasts without renewal (renewed every quarter of it while the sweep
#: lives): how long the runs of a sweep killed on another machine wait before another sweep takes them.
LEASE_S = 120.0


def failed_record(config: RunConfig, exc: BaseException, created: float, backend: str | None = None) -> dict:
    """The store record of a run whose training raised ``exc`` (call it in the ``except`` block): the
    error and its traceback."""
    return {
        "key": config.key(),
        "status": "failed",
        "config": config.to_dict(),
        "error": f"{type(exc).__name__}: {exc}",
        "extra": {"traceback": traceback.format_exc(limit=10)},
        "backend": backend,
        "created": created,
        "finished": time.time(),
    }


def run_one(config_dict: dict, threads: int | None = None, data_dir: str | None = None) -> dict:
    """Train one config and return the store record (``status`` done or failed). Never raises."""
    from labelsmooth.experiment.train import train

    config = RunConfig.from_dict(config_dict)
    created = time.time()
    try:
        result = train(config, data_dir=data_dir, progress=False, threads=threads)
    except Exception as exc:  # recorded, never raised: one failure must not stop the sweep
        return failed_record(config, exc, created)
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


class _InProcess:
    """``workers=1``: each run in this process, one at a time."""

    slots = 1

    def __init__(self, threads: int, data_dir) -> None:
        self.threads, self.data_dir, self.queued = threads, data_dir, {}

    def submit(self, config: RunConfig) -> object:
        handle = object()
        self.queued[handle] = config
        return handle

    def wait(self, handles, timeout: float) -> list[tuple[object, dict]]:
        handle = next(iter(handles))
        return [(handle, run_one(self.queued.pop(handle).to_dict(), self.threads, self.data_dir))]

    def close(self) -> None:
        self.queued.clear()


class _Pool:
    """A spawned process pool of ``workers`` processes, each with ``threads`` torch threads."""

    def __init__(self, workers: int, threads: int, data_dir) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        self.slots, self.threads, self.data_dir = workers, threads, data_dir
        self.pool = ProcessPoolExecutor(
            workers, mp_context=mp.get_context("spawn"), initializer=_worker_init, initargs=(threads,)
        )

    def submit(self, config: RunConfig) -> object:
        return self.pool.submit(run_one, config.to_dict(), self.threads, self.data_dir)

    def wait(self, handles, timeout: float) -> list[tuple[object, dict]]:
        from concurrent.futures import FIRST_COMPLETED, wait

        done, _ = wait(list(handles), timeout=timeout, return_when=FIRST_COMPLETED)
        return [(f, f.result()) for f in done]

    def close(self) -> None:  # on Ctrl-C (or any error in the driver) drop the queued runs
        self.pool.shutdown(wait=True, cancel_futures=True)


class _Ray:
    """Each run a Ray task (``num_cpus`` = threads) on ``ray.init(address)`` or a local instance."""

    def __init__(self, threads: int, data_dir, address: str | None) -> None:
        try:
            import ray
        except ImportError as exc:  # the optional extra
            raise RuntimeError("The ray backend needs Ray: pip install 'labelsmooth[ray]'") from exc
        self.ray = ray
        self.started_here = not ray.is_initialized()
        if self.started_here:
            src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}}
            ray.init(address=address, runtime_env=env, include_dashboard=False, log_to_driver=False)
        self.task = ray.remote(num_cpus=threads)(run_one)
        self.threads, self.data_dir = threads, data_dir
        # as many runs in flight as the cluster has room for: claims then match what really runs
        self.slots = max(1, int(ray.cluster_resources().get("CPU", 1) // threads))

    def submit(self, config: RunConfig) -> object:
        return self.task.remote(config.to_dict(), self.threads, self.data_dir)

    def wait(self, handles, timeout: float) -> list[tuple[object, dict]]:
        done, _ = self.ray.wait(list(handles), num_returns=1, timeout=timeout)
        return [(ref, self.ray.get(ref)) for ref in done]

    def close(self) -> None:
        if self.started_here:
            self.ray.shutdown()


class _Heartbeat:
    """Renews this sweep's claims every ``lease_s / 4`` seconds from a thread (its own connection), so a
    run longer than the lease keeps its claim while the sweep lives; a killed sweep stops renewing."""

    def __init__(self, store_path: str, owner: str, lease_s: float) -> None:
        import threading

        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, args=(store_path, owner, lease_s), daemon=True)
        self.thread.start()

    def _loop(self, store_path: str, owner: str, lease_s: float) -> None:
        store = None
        while not self.stop.wait(lease_s / 4):
            try:  # a missed renewal only shortens the lease once; the driver reports store faults itself
                store = store or Store(store_path)
                store.renew(owner, lease_s)
            except Exception:
                if store is not None:
                    with contextlib.suppress(Exception):
                        store.close()
                store = None
        if store is not None:
            store.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


def check_data(configs: list[RunConfig], data_dir: str | None = None) -> None:
    """Load the data of every ``(dataset, train_size, test_size)`` in ``configs`` once, before a sweep
    starts, so that missing or broken data stops it with one error instead of storing failed runs.

    Raises :class:`~labelsmooth.experiment.data.DataError` listing every data set that does not load.
    """
    from labelsmooth.experiment import data as data_module

    problems = []
    for name, train_size, test_size in dict.fromkeys((c.dataset, c.train_size, c.test_size) for c in configs):
        try:
            data_module.load(name, data_dir=data_dir, train_size=train_size, test_size=test_size)
        except (data_module.DataError, ValueError) as exc:
            problems.append(f"{name}: {exc}")
    if problems:
        raise data_module.DataError(
            f"Cannot load the data of {len(problems)} data set(s) of this sweep, so nothing was run. "
            + " | ".join(problems)
        )


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
    check_data_first: bool = False,
    lease_s: float = LEASE_S,
    poll_s: float | None = None,
) -> dict[str, int]:
    """Run the configs not yet in the store; returns counts ``{"total", "skipped", "done", "failed"}``.

    Each run is claimed in the store just before it starts (:meth:`Store.claim`), with a lease of
    ``lease_s`` seconds that a thread renews while the sweep lives; runs claimed by another live sweep are
    left to it and waited for (checked every ``poll_s`` seconds, default ``min(10, lease_s / 4)``), and
    taken over once its lease expires or its process is gone. So several sweeps on one store (processes,
    or machines sharing it) split the work: ``skipped`` counts the runs already stored, by earlier sweeps
    or by another sweep while this one ran. ``check_data_first`` loads every data set of the pending runs
    first (:func:`check_data`), so missing data stops the sweep before it stores any failed run. User
    models are checked first too (:func:`labelsmooth.experiment.models.check_portable`): one that does not
    import, or a lambda or local function registered in this process when the runs go to worker processes
    or Ray, raises :class:`~labelsmooth.experiment.models.ModelError` naming it before anything is stored.

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
    if workers is None:
        workers = cores
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"Expected `workers` to be an integer >= 1 or None (the number of cores), but got {workers!r}")
    if not lease_s > 0:
        raise ValueError(f"Expected `lease_s` to be > 0, but got {lease_s}")
    poll_s = min(10.0, lease_s / 4) if poll_s is None else poll_s
    threads = max(1, cores // workers)
    counts = {"total": len(configs), "skipped": 0, "done": 0, "failed": 0}
    started = time.time()
    with Store(store_path) as store:
        todo = pending(configs, store, retry_failed)
        counts["skipped"] = len(configs) - len(todo)
        if not todo:
            return counts
        if check_data_first and (backend == "local" or address is None):
            check_data(todo, data_dir)
        from labelsmooth.experiment.models import check_portable

        elsewhere = "Ray tasks" if backend == "ray" else f"the {workers} worker processes" if workers > 1 else None
        check_portable([c.model for c in todo], processes=elsewhere)  # before anything is claimed or stored
        other = _other_thread_counts(store, configs, threads)
        if other:
            print(
                f"note: {other} runs of this grid in {store_path} were trained with another torch thread count "
                f"than this sweep's {threads}; the thread count is not part of a run's key (docs/experiments.md)",
                file=sys.stderr,
            )
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
        owner = owner_id()
        heartbeat = _Heartbeat(store_path, owner, lease_s)
        executor = None
        try:
            executor = (
                (_InProcess(threads, data_dir) if workers == 1 else _Pool(workers, threads, data_dir))
                if backend == "local"
                else _Ray(threads, data_dir, address)
            )
            queue, waiting, in_flight = list(todo), [], {}
            retry_before = started if retry_failed else None
            while queue or waiting or in_flight:
                while queue and len(in_flight) < executor.slots:
                    config = queue.pop(0)
                    state = store.claim(config.key(), owner, lease_s, retry_before=retry_before)
                    if state == "claimed":
                        in_flight[executor.submit(config)] = config
                    elif state == "taken":
                        waiting.append(config)
                    else:  # stored meanwhile by another sweep
                        counts["skipped"] += 1
                        bar.update(1)
                if not in_flight:
                    if not waiting:
                        break
                    time.sleep(poll_s)  # everything left runs in other sweeps: wait for them or their leases
                    queue, waiting = waiting, []
                    continue
                for handle, record in executor.wait(in_flight, poll_s):
                    del in_flight[handle]
                    record["backend"] = backend
                    try:
                        store.put(record, owner=owner)
                    except WriteError:  # a finished run the store cannot take: hand it over, then stop
                        print(json.dumps(record, sort_keys=True, default=_plain))  # predictions as lists
                        print("the run above could not be stored; it is printed instead", file=sys.stderr)
                        raise
                    counts[record["status"]] += 1
                    _show(bar, record)
                    if on_result is not None:
                        on_result(record)
                if waiting and not queue:
                    queue, waiting = waiting, []  # look again at the runs other sweeps hold
        finally:
            heartbeat.close()
            if executor is not None:
                executor.close()
            bar.close()
            with contextlib.suppress(Exception):  # a run we claimed but did not finish is free again
                store.release(owner)
        store.finish_sweep(sweep_id)
    return counts


def _plain(value):
    """A record's arrays (float16 predictions) as JSON lists."""
    tolist = getattr(value, "tolist", None)
    if tolist is None:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
    return tolist()


def _other_thread_counts(store: Store, configs: list[RunConfig], threads: int) -> int:
    """How many finished runs of ``configs`` in the store used another torch thread count than ``threads``."""
    keys = {c.key() for c in configs}
    return sum(
        1
        for r in store.runs(status="done")
        if r["key"] in keys and (r.get("machine") or {}).get("threads", threads) != threads
    )


def _show(bar, record: dict) -> None:
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
