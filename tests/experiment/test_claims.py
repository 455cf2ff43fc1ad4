"""Several sweeps on one store (issue 16 §6): each run is claimed in the store with an expiring lease, so
concurrent sweeps split the work with no run trained twice, and a sweep killed with SIGKILL loses nothing.
"""

from __future__ import annotations

import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time

import pytest
from _harness_runs import TINY, TINY_ARGS, cli

from labelsmooth.experiment.config import RunConfig
from labelsmooth.experiment.runner import run_one, sweep
from labelsmooth.experiment.store import Store, owner_id


def tiny(seed=0, **kw):
    return RunConfig("digits", "mlp", seed=seed, **{**TINY, **kw})


def _record(key):
    return {"key": key, "status": "done", "config": {"seed": 0}, "metrics": {"accuracy": 0.5}}


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid  # reaped: no process has this pid now (until it is reused, which the random part covers)


def test_a_claim_is_exclusive_until_its_lease_expires_or_its_owner_dies(tmp_path):
    with Store(tmp_path / "s.sqlite") as s:
        me, other = owner_id(), f"{socket.gethostname()}:1:feedbeef"  # pid 1 lives (init)
        assert s.claim("a", me, 60) == "claimed"
        assert s.claim("a", me, 60) == "claimed"  # renewing one's own claim
        assert s.claim("a", other, 60) == "taken"
        s._db.execute("UPDATE claims SET expires = ? WHERE key = 'a'", (time.time() - 1,))
        assert s.claim("a", other, 60) == "claimed"  # the lease expired: the run is free again
        dead = f"{socket.gethostname()}:{_dead_pid()}:0badc0de"
        assert s.claim("b", dead, 3600) == "claimed"
        assert s.claim("b", me, 60) == "claimed"  # its owner is a dead process on this machine
        remote = "some-other-machine:4242:12345678"
        assert s.claim("c", remote, 3600) == "claimed"
        assert s.claim("c", me, 60) == "taken"  # another machine's live lease is respected
        s.put(_record("a"), owner=other)
        assert s.claim("a", me, 60) == "stored" and "a" not in s.claims()  # storing released the claim
        assert s.renew(me, 60) == 1 and s.claims()["b"][0] == me
        s.release(me)
        assert set(s.claims()) == {"c"}


def test_failed_runs_are_retried_once_however_many_sweeps_retry_them(tmp_path):
    with Store(tmp_path / "s.sqlite") as s:
        s.put({"key": "f", "status": "failed", "config": {}, "error": "x", "finished": 100.0})
        assert s.claim("f", owner_id(), 60) == "stored"  # not retried without retry_before
        assert s.claim("f", owner_id(), 60, retry_before=50.0) == "stored"  # failed after that sweep began
        assert s.claim("f", owner_id(), 60, retry_before=150.0) == "claimed"


def test_a_sweep_waits_for_a_run_another_sweep_holds_and_counts_it_skipped(tmp_path):
    store = str(tmp_path / "s.sqlite")
    grid = [tiny(seed=0), tiny(seed=1)]
    other = "some-other-machine:4242:12345678"
    with Store(store) as s:
        assert s.claim(grid[1].key(), other, 3600) == "claimed"
    result = run_one(grid[1].to_dict(), threads=1)

    def other_sweep_finishes():  # the other sweep stores its run while this one waits for it
        time.sleep(1.0)
        with Store(store) as s:
            s.put(result, owner=other)

    t = threading.Thread(target=other_sweep_finishes)
    t.start()
    counts = sweep(grid, store, workers=1, progress=False, poll_s=0.2)
    t.join()
    assert counts == {"total": 2, "skipped": 1, "done": 1, "failed": 0}
    with Store(store) as s:
        assert set(s.status()) == {c.key() for c in grid} and s.claims() == {}


def test_a_sweep_takes_over_a_run_whose_lease_expires(tmp_path):
    store = str(tmp_path / "s.sqlite")
    grid = [tiny(seed=0)]
    with Store(store) as s:  # a sweep on another machine claimed it, then vanished: its lease runs out
        s.claim(grid[0].key(), "some-other-machine:4242:12345678", 1.0)
    assert sweep(grid, store, workers=1, progress=False, poll_s=0.2) == {
        "total": 1,
        "skipped": 0,
        "done": 1,
        "failed": 0,
    }


def _sweep_cmd(store, seeds=4):
    # no search: seed 1 of each setting is its one tuning trial, the other seeds its final runs
    args = "sweep --datasets digits --models mlp --gammas 0.9 --no-search --no-progress --workers 1".split()
    return cli(*args, "--seeds", str(seeds), *TINY_ARGS, "--store", str(store))


def _done(stdout: str) -> int:
    """Runs this sweep trained: its tuning trials plus its final runs."""
    m = re.findall(r"(\d+) done, (\d+) failed", stdout)
    assert len(m) == 2, stdout
    return sum(int(done) for done, _ in m)


def _open_new(path, i):
    with Store(path) as s:
        s.put(_record(f"k{i}"))


def test_sweeps_creating_one_new_store_at_the_same_moment_all_open_it(tmp_path):
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    for attempt in range(4):  # a process may see the file after another wrote its header but before it
        path = str(tmp_path / f"new{attempt}.sqlite")  # created the tables: an empty store, not a foreign file
        procs = [ctx.Process(target=_open_new, args=(path, i)) for i in range(8)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(600)
        assert [p.exitcode for p in procs] == [0] * 8
        with Store(path) as s:
            assert sorted(s.status()) == [f"k{i}" for i in range(8)]


@pytest.mark.slow
def test_two_sweeps_on_one_store_split_the_runs_without_duplicates(tmp_path):
    store = tmp_path / "shared.sqlite"
    Store(store).close()
    procs = []
    for _ in range(2):
        cmd, env = _sweep_cmd(store)
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in outs]
    trained = [_done(o) for o, _ in outs]
    assert sum(trained) == 8, f"each of the 8 runs is trained by exactly one sweep, got {trained}"
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM runs").fetchone() == (8, 8)
        assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0


@pytest.mark.slow
def test_a_sweep_killed_with_sigkill_loses_nothing_another_sweep_finishes_its_runs(tmp_path):
    store = tmp_path / "shared.sqlite"
    Store(store).close()
    cmd, env = _sweep_cmd(store, seeds=5)
    victim = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 900
    while time.time() < deadline:  # kill it once it has stored a run and claimed the next
        time.sleep(0.05)
        with sqlite3.connect(store, timeout=60) as db:
            stored = db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
            claimed = db.execute("SELECT COUNT(*) FROM claims").fetchone()[0]
        if stored >= 1 and claimed >= 1:
            break
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    with sqlite3.connect(store) as db:
        left = db.execute("SELECT COUNT(*) FROM claims").fetchone()[0]
        before = db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    assert left >= 1 and before < 10, "the kill should land mid-sweep, with a run claimed"
    cmd, env = _sweep_cmd(store, seeds=5)  # the survivor: takes the dead sweep's claim at once
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert _done(r.stdout) == 10 - before
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM runs").fetchone() == (10, 10)
        assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
