"""study(): the user's own training loop, with labelsmooth's settings, seeds, store, statistics and report."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from _user_files import isolated_user_data, write_wine
from tests.reference import cross_entropy as reference_ce
from tests.reference import entropy as reference_entropy

from labelsmooth.experiment import user_data
from labelsmooth.experiment.config import RunConfig
from labelsmooth.experiment.store import Store
from labelsmooth.experiment.study import record_of, study, with_validation

DOC = Path(__file__).resolve().parents[2] / "docs" / "own-data.md"


private_cache = isolated_user_data(one_thread=True)


def linear_fn(loss_fn, data, hparams, seed):
    """A plain full-batch loop: a linear model, SGD."""
    model = torch.nn.Linear(data.input_shape[0], data.num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=hparams.get("lr", 0.5))
    for _ in range(hparams.get("steps", 20)):
        opt.zero_grad()
        loss_fn(model(data.x_train), data.y_train).backward()
        opt.step()
    with torch.no_grad():
        return {"val": model(data.x_val), "test": model(data.x_test)}


def test_the_documented_example_runs(tmp_path, monkeypatch, capsys):
    """docs/own-data.md's plain-PyTorch study, executed as written, in a folder holding wine.csv."""
    block = DOC.read_text().split("## Your own training loop")[1].split("```python")[1].split("```")[0]
    monkeypatch.chdir(tmp_path)
    write_wine(tmp_path / "wine.csv")
    exec(compile(block, str(DOC), "exec"), {"__name__": "own_data_example"})
    out = capsys.readouterr().out
    assert "{'total': 12, 'skipped': 0, 'done': 12, 'failed': 0}" in out
    assert re.search(r"wine.csv: .*3 seeds\)", out)
    assert (tmp_path / "wine-study" / "report.md").is_file()
    with Store(tmp_path / "wine-study.sqlite") as s:
        runs = s.runs()
    assert len(runs) == 12 and all(r["status"] == "done" for r in runs)
    assert {RunConfig.from_dict(r["config"]).label() for r in runs} == {"ce", "γ=0.9", "γ=0.8", "ε=0.1 (others)"}


def test_each_setting_gets_the_library_loss(blobs, tmp_path):
    """loss_fn for ce, γ, ε (either convention) and β equals the float64 reference on the same logits."""
    seen = {}
    z = torch.randn(16, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    t = torch.randint(0, 3, (16,), generator=torch.Generator().manual_seed(2))

    def probe(loss_fn, data, hparams, seed):
        seen[len(seen)] = float(loss_fn(z, t))
        return torch.zeros(len(data.y_test), 3)

    study(probe, blobs, gammas=[0.8], smoothings=[0.3], convention="others", betas=[0.5], seeds=1,
          store=str(tmp_path / "s.sqlite"))  # fmt: skip
    K = 3
    expected = [
        float(reference_ce(z, t)),  # ce
        float(reference_ce(z, t, eps=1 - 0.8, convention="others")),  # γ = 0.8 on the true class
        float(reference_ce(z, t, eps=0.3, convention="others")),  # ε = 0.3, others
        float(reference_ce(z, t) - 0.5 * reference_entropy(z).mean()),  # β = 0.5
    ]
    assert len(seen) == 4 and K == 3
    assert sorted(seen.values()) == pytest.approx(sorted(expected), rel=1e-12)


def test_stored_metrics_are_those_of_the_returned_logits(blobs, tmp_path):
    result = study(linear_fn, blobs, seeds=2, store=str(tmp_path / "s.sqlite"))
    data = with_validation(user_data.load(blobs))
    for run in result.runs:
        with torch.random.fork_rng():
            torch.manual_seed(run["config"]["seed"])
            from labelsmooth.experiment.train import make_loss

            out = linear_fn(make_loss(RunConfig.from_dict(run["config"]), 3), data, {}, run["config"]["seed"])
        logits = out["test"].double()
        accuracy = float((logits.argmax(1) == data.y_test).double().mean())
        nll = float(torch.nn.functional.cross_entropy(logits, data.y_test))
        assert run["metrics"]["accuracy"] == pytest.approx(accuracy, abs=1e-12)
        assert run["metrics"]["nll"] == pytest.approx(nll, rel=1e-9)
        val = out["val"].double()
        assert run["extra"]["val_metrics"]["accuracy"] == pytest.approx(
            float((val.argmax(1) == data.y_val).double().mean()), abs=1e-12
        )
    assert data.y_val is not None and len(data.y_val) == math.ceil(0.2 * 72)  # 20 % of the 72 training rows


def test_a_raising_train_fn_is_stored_failed_and_the_study_goes_on(blobs, tmp_path):
    calls = []

    def flaky(loss_fn, data, hparams, seed):
        calls.append(seed)
        if seed == 1:
            raise RuntimeError("out of memory (pretend)")
        return linear_fn(loss_fn, data, hparams, seed)

    store = str(tmp_path / "s.sqlite")
    result = study(flaky, blobs, gammas=[0.9], seeds=3, store=store)
    assert result.counts == {"total": 6, "skipped": 0, "done": 4, "failed": 2}
    failed = [r for r in result.runs if r["status"] == "failed"]
    assert {r["config"]["seed"] for r in failed} == {1}
    assert all(r["error"] == "RuntimeError: out of memory (pretend)" for r in failed)
    assert all(
        "in flaky" in r["extra"]["traceback"] and "raise RuntimeError" in r["extra"]["traceback"] for r in failed
    )
    # resuming: finished and failed runs are kept; retry_failed runs the failures again
    assert study(flaky, blobs, gammas=[0.9], seeds=3, store=store).counts["skipped"] == 6
    assert study(flaky, blobs, gammas=[0.9], seeds=3, store=store, retry_failed=True).counts["failed"] == 2
    assert calls.count(1) == 4 and calls.count(0) == 2


def test_wrong_logits_are_a_failed_run_naming_the_shape(blobs, tmp_path):
    def wrong(loss_fn, data, hparams, seed):
        return torch.zeros(len(data.y_test), data.num_classes + 1)

    def nan(loss_fn, data, hparams, seed):
        return {"test": torch.full((len(data.y_test), data.num_classes), float("nan"))}

    for fn, message in ((wrong, r"Expected test logits of shape \(18, 3\) .*but got \(18, 4\)"),
                        (nan, r"Expected finite test logits, but got 54 NaN or inf")):  # fmt: skip
        result = study(fn, blobs, seeds=1, store=str(tmp_path / f"{fn.__name__}.sqlite"))
        assert [r["status"] for r in result.runs] == ["failed"]
        assert re.search(message, result.runs[0]["error"])


def test_hparams_and_names_are_part_of_the_keys(blobs, tmp_path):
    store = str(tmp_path / "s.sqlite")
    a = study(linear_fn, blobs, seeds=1, hparams={"lr": 0.5}, store=store)
    b = study(linear_fn, blobs, seeds=1, hparams={"lr": 0.1}, store=store)
    c = study(linear_fn, blobs, seeds=1, hparams={"lr": 0.1}, name="mine:v2", store=store)
    assert a.counts["done"] == b.counts["done"] == c.counts["done"] == 1
    assert c.runs[0]["config"]["model"].startswith("mine:v2.hparams_")
    assert c.runs[0]["extra"]["hparams"] == {"lr": 0.1}


def test_record_of_accepts_both_return_forms_and_needs_validation_logits(blobs):
    """{"val", "test"} and (val, test) give one record; test logits alone are refused: the protocol selects
    and fits the temperature on validation (before the protocol, a test-only result was accepted)."""
    data = with_validation(user_data.load(blobs))
    config = RunConfig(user_data.register(blobs), "mine:fn")
    test, val = torch.randn(len(data.y_test), 3), torch.randn(len(data.y_val), 3)
    forms = [record_of(config, r, data) for r in ({"test": test, "val": val}, (val, test))]
    assert forms[0]["metrics"] == forms[1]["metrics"]
    assert forms[0]["extra"]["val_metrics"] == forms[1]["extra"]["val_metrics"]
    with pytest.raises(ValueError, match=r"a dict with 'val' and 'test' logits, but got keys \['logits'\]"):
        record_of(config, {"logits": test}, data)
    for test_only in (test, {"test": test}):
        with pytest.raises(ValueError, match=r"Expected train_fn to return validation logits too"):
            record_of(config, test_only, data)
