"""Tuning per setting with an equal budget, and selection that reads validation only."""

import copy
import dataclasses
import re

import numpy as np
import pytest
import torch

from labelsmooth.experiment.config import RunConfig
from labelsmooth.experiment.stats import analyse
from labelsmooth.experiment.tuning import final_configs, finals, run_protocol, select, trial_configs

SPEC = {"datasets": ["digits"], "models": ["mlp"], "gammas": [0.9, 0.8], "betas": [0.5], "seeds": 3,
        "resplits": 2, "search": {"lr": [1e-3, 3e-3], "weight_decay": [1e-4, 0.5]}}  # fmt: skip


def _stored(config, val_accuracy, test_accuracy, val_nll=0.3):
    metrics = {"accuracy": test_accuracy, "nll": 0.3, "ece": 0.05, "val_accuracy": val_accuracy, "val_nll": val_nll}
    return {"key": config.key(), "status": "done", "config": config.to_dict(), "metrics": metrics}


def test_every_setting_and_split_gets_the_same_trials():
    trials = trial_configs(SPEC)
    per = {}
    for c in trials:
        per.setdefault((c.label(), c.split), set()).add((c.lr, c.weight_decay))
        assert c.seed == 0
    assert len(per) == 4 * 2 and all(v == {(1e-3, 1e-4), (1e-3, 0.5), (3e-3, 1e-4), (3e-3, 0.5)} for v in per.values())


def _trial_runs(val, test):
    """Stored trials where ``val(config)`` and ``test(config)`` give the two accuracies."""
    return [_stored(c, val(c), test(c)) for c in trial_configs(SPEC)]


def test_selection_follows_validation_and_ignores_test():
    # validation favours lr 1e-3, wd 0.5; test favours lr 3e-3, wd 1e-4 (a leak would pick that)
    val = lambda c: 0.95 if (c.lr, c.weight_decay) == (1e-3, 0.5) else 0.90  # noqa: E731
    test = lambda c: 0.99 if (c.lr, c.weight_decay) == (3e-3, 1e-4) else 0.80  # noqa: E731
    runs = _trial_runs(val, test)
    chosen = select(runs)
    assert len(chosen) == 8 and all(
        ch.point["lr"] == 1e-3 and ch.point["weight_decay"] == 0.5 for ch in chosen.values()
    )
    scrambled = copy.deepcopy(runs)  # any change to the test numbers changes nothing
    rng = np.random.default_rng(0)
    for r in scrambled:
        r["metrics"]["accuracy"] = float(rng.random())
        r["metrics"]["nll"] = float(rng.random())
    assert select(scrambled) == chosen
    finals_, missing = final_configs(SPEC, runs)
    assert not missing and len(finals_) == 4 * 2 * 3
    assert {(c.lr, c.weight_decay) for c in finals_} == {(1e-3, 0.5)}


def test_ties_on_validation_accuracy_go_to_the_lower_validation_nll_then_the_grid_order():
    configs = [dataclasses.replace(trial_configs(SPEC)[0], lr=lr) for lr in (1e-3, 3e-3)]
    runs = [_stored(configs[0], 0.9, 0.9, val_nll=0.4), _stored(configs[1], 0.9, 0.9, val_nll=0.3)]
    assert next(iter(select(runs).values())).point["lr"] == 3e-3
    runs = [_stored(configs[0], 0.9, 0.9), _stored(configs[1], 0.9, 0.9)]
    assert next(iter(select(runs).values())).point["lr"] == 1e-3


def test_failed_trials_are_never_chosen_and_a_setting_with_none_left_is_named():
    trials = [c for c in trial_configs(SPEC) if c.split == 0 and c.label() == "ce"]
    runs = [_stored(c, 0.9 + 0.01 * i, 0.9) for i, c in enumerate(trials)]
    runs[-1] = {"key": trials[-1].key(), "status": "failed", "config": trials[-1].to_dict(), "metrics": None}
    (choice,) = select(runs).values()
    assert (choice.point["lr"], choice.point["weight_decay"]) == (trials[-2].lr, trials[-2].weight_decay)
    assert (choice.trials, choice.failed) == (3, 1)
    _, missing = final_configs(SPEC, [r for r in runs if r["status"] == "failed"])
    assert "digits ce split 0" in missing


def test_the_smoothing_selected_on_validation_is_picked_on_validation_not_test():
    # γ = 0.9 is best on validation, γ = 0.8 on test: the selected arm must be γ = 0.9's runs
    base = RunConfig("digits", "mlp", seed=0, lr=1e-3)
    runs, preds = [], {}
    y = np.arange(450) % 10
    for seed in range(3):
        for loss, gamma, val_acc, test_right in (
            ("ce", None, 0.90, 380),
            ("ls", 0.9, 0.97, 390),
            ("ls", 0.8, 0.93, 420),
        ):
            c = dataclasses.replace(base, seed=seed, loss=loss, gamma=gamma)
            r = _stored(c, val_acc, test_right / 450)
            r["metrics"].update(ts_nll=0.2, ts_ece=0.02, temperature=1.0)
            logits = np.zeros((450, 10), dtype=np.float16)
            pred = np.where(np.arange(450) < test_right, y, (y + 1) % 10)
            logits[np.arange(450), pred] = 3.0
            runs.append(r)
            preds[c.key()] = {"test": {"logits": logits, "labels": y}}
    a = analyse(runs, preds)
    arm = next(c for c in a.comparisons["digits"] if c.setting == "smoothing selected on validation")
    assert arm.selected == {0: "γ=0.9"}
    assert arm.diff_points == pytest.approx(100 * 10 / 450)  # γ = 0.9's gain, not γ = 0.8's
    for r in runs:  # swapping the test numbers of the two γ leaves the choice unchanged
        r["metrics"]["accuracy"] = 1 - r["metrics"]["accuracy"]
    assert next(c for c in analyse(runs, preds).comparisons["digits"] if c.selected).selected == {0: "γ=0.9"}


def test_training_and_validation_never_read_the_test_part():
    # the same run on splits that differ only in their test part: identical validation logits and numbers
    from labelsmooth.experiment.train import _fit, _run_settings, load_splits

    config = RunConfig("digits", "mlp", epochs=1, train_size=200, test_size=100)
    s = load_splits(config)
    scrambled = dataclasses.replace(s, x_test=torch.randn_like(s.x_test), y_test=s.y_test.flip(0))
    with _run_settings(1):
        a, b = _fit(config, s, False), _fit(config, scrambled, False)
    assert np.array_equal(a["predictions"]["val"]["logits"], b["predictions"]["val"]["logits"])
    for m in ("val_accuracy", "val_nll", "temperature"):
        assert a["metrics"][m] == b["metrics"][m]
    assert a["curves"] == b["curves"]
    assert not np.array_equal(a["predictions"]["test"]["logits"], b["predictions"]["test"]["logits"])


def test_the_protocol_resumes_and_the_selection_is_recomputed_from_the_store(tmp_path):
    spec = {"datasets": ["digits"], "models": ["mlp"], "seeds": 2, "epochs": 1, "train_size": 100,
            "test_size": 50, "search": {"lr": [1e-3, 3e-3]}}  # fmt: skip
    path = str(tmp_path / "s.sqlite")
    first = run_protocol(spec, path, workers=1, progress=False)
    assert (first["trials"]["done"], first["finals"]["done"], first["finals"]["skipped"]) == (2, 1, 1)
    again = run_protocol(spec, path, workers=1, progress=False)
    assert again["trials"]["skipped"] == 2 and again["finals"]["skipped"] == 2
    from labelsmooth.experiment.store import Store

    with Store(path) as store:
        runs = store.runs()
    final_runs, chosen = finals(runs)
    assert len(final_runs) == 2 and {r["config"]["lr"] for r in final_runs} == {next(iter(chosen.values())).point["lr"]}


def test_cli_protocol_options_default_to_the_search_and_refuse_contradictions():
    import argparse

    from labelsmooth.cli import CLIError
    from labelsmooth.cli.sweep import add_parser, spec_from_args

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))

    def spec(*argv):
        return spec_from_args(parser.parse_args(["sweep", "--datasets", "digits", "--store", "s", *argv]))

    assert spec()["search"] == {"lr": [1e-3, 3e-3], "weight_decay": [1e-4, 0.5]}
    assert spec("--lr", "0.01")["search"] == {"weight_decay": [1e-4, 0.5]}  # a fixed lr is not searched
    assert "search" not in spec("--no-search")
    assert spec("--resplits", "3", "--val-fraction", "0.1")["resplits"] == 3
    for argv, message in ((("--no-search", "--search-lr", "0.1"), "--no-search cannot be combined"),
                          (("--resplits", "0"), "--resplits must be >= 1"),
                          (("--val-fraction", "1.5"), "--val-fraction must be in (0, 1)")):  # fmt: skip
        with pytest.raises(CLIError, match=re.escape(message)):
            spec(*argv)
