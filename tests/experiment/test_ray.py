"""The Ray backend on a local Ray instance this test starts (loopback, 2 CPUs, no dashboard)."""

import pytest
from _harness_runs import SRC, TINY

from labelsmooth.experiment.config import RunConfig
from labelsmooth.experiment.runner import run_one, sweep
from labelsmooth.experiment.store import Store


@pytest.mark.slow
def test_ray_backend_writes_the_same_runs_and_metrics_as_local(tmp_path):
    ray = pytest.importorskip("ray")
    grid = [RunConfig("digits", "mlp", seed=s, **TINY) for s in range(2)]
    grid.append(RunConfig("digits", "mlp", lr=1e12, **TINY))  # diverges
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": SRC}},
    )
    try:
        counts = sweep(grid, str(tmp_path / "ray.sqlite"), workers=2, backend="ray", progress=False)
    finally:
        ray.shutdown()
    assert counts == {"total": 3, "skipped": 0, "done": 2, "failed": 1}
    with Store(tmp_path / "ray.sqlite") as s:
        rows = {r["key"]: r for r in s.runs()}
    assert set(rows) == {c.key() for c in grid}
    assert {r["backend"] for r in rows.values()} == {"ray"}
    assert rows[grid[2].key()]["error"].startswith("TrainingDiverged")
    for c in grid[:2]:  # same config, 1 thread: the same numbers as a local run
        assert rows[c.key()]["metrics"] == run_one(c.to_dict(), threads=1)["metrics"]
