"""study() under the sweep's protocol: tuning per setting with an equal budget, selection on validation only,
every other seed at the selected point, temperature scaling on validation, predictions for the statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _user_files import isolated_user_data

from labelsmooth.experiment import tuning, user_data
from labelsmooth.experiment.config import RunConfig
from labelsmooth.experiment.splits import make_splits
from labelsmooth.experiment.store import Store
from labelsmooth.experiment.study import record_of, study, with_validation

SEARCH = {"lr": [0.001, 0.01], "weight_decay": [0.0, 0.5]}


private_cache = isolated_user_data(one_thread=True)


def _scores(y: torch.Tensor, right: float, K: int = 3, seed: int = 0) -> torch.Tensor:
    """Logits whose argmax is the label on the first ``right`` share of the rows, another class elsewhere."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(len(y), K, generator=g, dtype=torch.float64)
    n = round(right * len(y))
    target = torch.where(torch.arange(len(y)) < n, y, (y + 1) % K)
    return z + 4 * torch.nn.functional.one_hot(target, K)


def rigged(calls):
    """A train_fn that trains nothing: validation prefers lr 0.01 with weight decay 0.5, the test part
    prefers lr 0.001 with 0 (a selection that read the test part would pick that)."""

    def train_fn(loss_fn, data, hparams, seed):
        calls.append(dict(hparams, seed=seed))
        val_right = 0.9 if (hparams["lr"], hparams["weight_decay"]) == (0.01, 0.5) else 0.6
        test_right = 0.95 if (hparams["lr"], hparams["weight_decay"]) == (0.001, 0.0) else 0.5
        return {"val": _scores(data.y_val, val_right, seed=seed), "test": _scores(data.y_test, test_right, seed=seed)}

    return train_fn


def test_every_setting_gets_the_same_trials_and_the_finals_run_at_the_point_chosen_on_validation(blobs, tmp_path):
    calls = []
    result = study(rigged(calls), blobs, gammas=[0.9], betas=[0.5], seeds=3, search=SEARCH,
                   hparams={"epochs": 2}, store=str(tmp_path / "s.sqlite"))  # fmt: skip
    # phase 1: 3 settings × 4 points with seed 0; phase 2: seeds 1 and 2 at the chosen point
    assert result.phases["trials"] == {"total": 12, "skipped": 0, "done": 12, "failed": 0}
    assert result.phases["finals"] == {"total": 9, "skipped": 3, "done": 6, "failed": 0}
    assert result.counts == {"total": 18, "skipped": 0, "done": 18, "failed": 0}
    trials = [c for c in calls if c["seed"] == 0]
    assert sorted((c["lr"], c["weight_decay"]) for c in trials) == sorted(
        [(lr, wd) for lr in SEARCH["lr"] for wd in SEARCH["weight_decay"]] * 3
    )
    assert all(c["epochs"] == 2 for c in calls)  # fixed hparams go to every call, searched ones as the point
    assert all((c["lr"], c["weight_decay"]) == (0.01, 0.5) for c in calls if c["seed"] > 0)
    # the sweep's own selection on the stored runs agrees, and so do the analysis' finals
    chosen = tuning.select(result.runs)
    assert {c.point["lr"] for c in chosen.values()} == {0.01} and len(chosen) == 3
    finals, _ = tuning.finals(result.runs)
    assert len(finals) == 9 and all(r["config"]["lr"] == 0.01 for r in finals)
    assert sum(len(v) for v in next(iter(result.analysis.finals.values())).values()) == 9


def test_selection_is_unchanged_when_every_test_number_is_scrambled(blobs, tmp_path):
    def scrambled(loss_fn, data, hparams, seed):
        out = rigged([])(loss_fn, data, hparams, seed)
        g = torch.Generator().manual_seed(int(1e6 * hparams["lr"]) + seed)
        return {"val": out["val"], "test": torch.randn(out["test"].shape, generator=g, dtype=torch.float64)}

    a = study(rigged([]), blobs, gammas=[0.9], seeds=2, search=SEARCH, name="mine:fn", store=str(tmp_path / "a.sqlite"))
    b = study(scrambled, blobs, gammas=[0.9], seeds=2, search=SEARCH, name="mine:fn", store=str(tmp_path / "b.sqlite"))
    points = [{g: c.point for g, c in tuning.select(r.runs).items()} for r in (a, b)]
    assert points[0] == points[1] and len(points[0]) == 2 and {p["lr"] for p in points[0].values()} == {0.01}
    assert [r["metrics"]["accuracy"] for r in a.runs] != [r["metrics"]["accuracy"] for r in b.runs]


def test_metrics_are_temperature_scaled_on_validation_and_predictions_feed_the_bootstrap(blobs, tmp_path):
    from scipy.optimize import minimize_scalar

    result = study(rigged([]), blobs, gammas=[0.9], seeds=2, search=SEARCH, store=str(tmp_path / "s.sqlite"))
    with Store(tmp_path / "s.sqlite") as s:
        stored = s.predictions()
    assert len(stored) == len(result.runs) and all(set(p) == {"val", "test"} for p in stored.values())
    run = result.runs[0]
    data = make_splits(user_data.load(blobs), run["config"]["split"], run["config"]["val_fraction"])
    point = (run["config"]["lr"], run["config"]["weight_decay"])
    z_val = _scores(data.y_val, 0.9 if point == (0.01, 0.5) else 0.6, seed=run["config"]["seed"])
    # an independent fit of T: a plain grid + bounded search of the validation NLL in float64
    y = data.y_val.numpy()

    def nll(log_t):
        s = z_val.numpy() / math.exp(log_t)
        s = s - s.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(s).sum(1)) - s[np.arange(len(y)), y]))

    t = math.exp(minimize_scalar(nll, bounds=(-5, 5), method="bounded", options={"xatol": 1e-9}).x)
    assert run["metrics"]["temperature"] == pytest.approx(t, rel=1e-4)
    assert run["metrics"]["val_accuracy"] == pytest.approx(float((z_val.argmax(1) == data.y_val).double().mean()))
    z_test = torch.tensor(stored[run["key"]]["test"]["logits"], dtype=torch.float64) / t
    ts_nll = float(torch.nn.functional.cross_entropy(z_test, data.y_test))
    assert run["metrics"]["ts_nll"] == pytest.approx(ts_nll, rel=1e-3)  # stored logits are float16
    (comparison,) = next(iter(result.analysis.comparisons.values()))
    assert comparison.seeds == 2 and math.isfinite(comparison.p_boot)  # the bootstrap ran on the predictions


def test_resplits_are_units_and_each_split_gets_make_splits_parts(blobs, tmp_path):
    seen = {}

    def fn(loss_fn, data, hparams, seed):
        seen.setdefault(len(data.y_val), []).append(data.y_val.clone())
        seen.setdefault("val_sets", set()).add(tuple(data.x_val[:, 0].tolist()))
        return rigged([])(loss_fn, data, {"lr": 0.01, "weight_decay": 0.5}, seed)

    result = study(fn, blobs, seeds=2, resplits=2, store=str(tmp_path / "s.sqlite"))
    assert sorted((r["config"]["split"], r["config"]["seed"]) for r in result.runs) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert len(seen["val_sets"]) == 2  # two different validation parts, one per split
    full = user_data.load(blobs)
    for split in (0, 1):
        expected = make_splits(full, split, 0.2)
        assert tuple(expected.x_val[:, 0].tolist()) in seen["val_sets"]


def test_with_validation_is_make_splits(blobs):
    """One implementation of the validation carve: the study's parts are the sweep's parts."""
    full = user_data.load(blobs)
    a, b = with_validation(full), make_splits(full, 0, 0.2)
    assert np.array_equal(a.val_index, b.val_index) and torch.equal(a.x_train, b.x_train)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(search={"lr": [0.1]}, hparams={"lr": 0.5}), r"either fixed \(`hparams`\) or searched \(`search`\), but got \['lr'\] in both"),
        (dict(search={"momentum": [0.9]}), r"search-space fields among \['lr', 'weight_decay'\], but got unknown \['momentum'\]"),
        (dict(search={"lr": []}), r"at least one value for `search.lr`"),
        (dict(search=[0.1]), r"Expected `search` to be a dict"),
        (dict(resplits=0), r"`resplits` to be an integer >= 1, but got 0"),
    ],
)  # fmt: skip
def test_bad_protocol_arguments_name_the_argument_before_anything_runs(blobs, tmp_path, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        study(rigged([]), blobs, store=str(tmp_path / "s.sqlite"), **kwargs)
    assert not (tmp_path / "s.sqlite").exists()


def test_a_setting_whose_trials_all_fail_is_named_missing(blobs, tmp_path):
    def fails_for_gamma(loss_fn, data, hparams, seed):
        z = torch.tensor([[5.0, 0.0, 0.0]])  # cross-entropy: log(1 + 2 e^-5); smoothing adds to it
        if float(loss_fn(z, torch.tensor([0]))) != pytest.approx(math.log(1 + 2 * math.exp(-5)), rel=1e-6):
            raise RuntimeError("no smoothing here")
        return rigged([])(loss_fn, data, hparams, seed)

    result = study(fails_for_gamma, blobs, gammas=[0.9], seeds=2, search={"lr": [0.01]},
                   hparams={"weight_decay": 0.5}, store=str(tmp_path / "s.sqlite"))  # fmt: skip
    assert result.missing == [f"{result.runs[0]['config']['dataset']} γ=0.9 split 0"]
    assert result.phases["trials"]["failed"] == 1 and result.phases["finals"]["total"] == 2


def test_runs_stored_before_the_protocol_are_run_again(blobs, tmp_path):
    store = str(tmp_path / "s.sqlite")
    first = study(rigged([]), blobs, seeds=2, hparams={"lr": 0.01, "weight_decay": 0.5}, store=store)
    old = dict(first.runs[0])
    old["metrics"] = {k: v for k, v in old["metrics"].items() if not k.startswith("val_")}  # as study() stored them
    with Store(store) as s:
        s.put(old)
    again = study(rigged([]), blobs, seeds=2, hparams={"lr": 0.01, "weight_decay": 0.5}, store=store)
    assert again.counts == {"total": 2, "skipped": 1, "done": 1, "failed": 0}
    assert all("val_accuracy" in r["metrics"] for r in again.runs)


def test_logits_beyond_float16_are_refused_naming_the_part(blobs):
    data = with_validation(user_data.load(blobs))
    config = RunConfig(user_data.register(blobs), "mine:fn")
    val = torch.zeros(len(data.y_val), 3)
    test = torch.zeros(len(data.y_test), 3)
    test[0, 0] = 1e5
    with pytest.raises(ValueError, match=r"Expected test logits within ±65504 \(the store keeps them as float16\)"):
        record_of(config, {"val": val, "test": test}, data)


def test_the_documented_tuning_example_runs(tmp_path, monkeypatch, capsys):
    """docs/own-data.md's tuning block, executed as written after the first block's train_fn."""
    from pathlib import Path

    from _user_files import write_wine

    doc = (Path(__file__).resolve().parents[2] / "docs" / "own-data.md").read_text()
    section = doc.split("## Your own training loop")[1]
    first = section.split("```python")[1].split("```")[0]
    tuned = section.split("### Tuning")[1].split("```python")[1].split("```")[0]
    monkeypatch.chdir(tmp_path)
    write_wine(tmp_path / "wine.csv")
    namespace = {"__name__": "own_data_example"}
    exec(compile(first.split("result = study(")[0], "own-data.md", "exec"), namespace)  # imports and train_fn
    exec(compile(tuned, "own-data.md", "exec"), namespace)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        "{'trials': {'total': 4, 'skipped': 0, 'done': 4, 'failed': 0}, "
        "'finals': {'total': 6, 'skipped': 2, 'done': 4, 'failed': 0}}"
    )
    assert [line.split(" ")[0] for line in out[1:]] == ["ce", "γ=0.9"]
    assert all(line.endswith(("{0: 0.003}", "{0: 0.03}")) for line in out[1:])
    assert (tmp_path / "wine-tuned" / "report.md").is_file()
    with Store(tmp_path / "wine-tuned.sqlite") as s:
        runs = s.runs()
    assert len(runs) == 8 and {r["config"]["lr"] for r in runs} == {0.003, 0.03}
