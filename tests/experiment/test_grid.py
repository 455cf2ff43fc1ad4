"""The sweep grid: CE always included, seeds 0..N-1, auto models, per-data-set values, TOML."""

import pytest

from labelsmooth.experiment.grid import build_grid, read_toml
from labelsmooth.experiment.models import default_model


def test_grid_is_settings_times_seeds_with_ce_always():
    g = build_grid(
        {
            "datasets": ["digits", "mnist1d"],
            "models": ["mlp"],
            "gammas": [0.95, 0.9],
            "smoothings": [0.1],
            "betas": [0.5],
            "seeds": 3,
            "epochs": 2,
        }
    )
    assert len(g) == 2 * 3 * (1 + 2 + 1 + 1)
    labels = {c.label() for c in g}
    assert labels == {"ce", "γ=0.95", "γ=0.9", "ε=0.1 (uniform)", "β=0.5"}
    assert {c.seed for c in g} == {0, 1, 2} and {c.epochs for c in g} == {2}
    assert len({c.key() for c in g}) == len(g)


def test_auto_model_and_per_dataset_values():
    g = build_grid(
        {
            "datasets": ["digits", "fashion-mnist"],
            "models": ["auto"],
            "seeds": 1,
            "train_size": {"fashion-mnist": 500},
            "epochs": {"digits": 3, "fashion-mnist": 1},
        }
    )
    by = {c.dataset: c for c in g}
    assert by["fashion-mnist"].model == default_model("fashion-mnist")
    assert (by["digits"].train_size, by["digits"].epochs) == (None, 3)
    assert (by["fashion-mnist"].train_size, by["fashion-mnist"].epochs) == (500, 1)


def test_duplicates_are_dropped_and_bad_keys_rejected():
    g = build_grid({"datasets": ["digits"], "models": ["mlp"], "gammas": [0.9, 0.9], "seeds": [0, 0]})
    assert len(g) == 2
    with pytest.raises(ValueError, match="unknown"):
        build_grid({"datasets": ["digits"], "gama": [0.9]})
    with pytest.raises(ValueError, match="gamma"):
        build_grid({"datasets": ["digits"], "models": ["mlp"], "gammas": [0.05]})


def test_toml_spec(tmp_path):
    (tmp_path / "s.toml").write_text('[sweep]\ndatasets = ["digits"]\nmodels = ["mlp"]\ngammas = [0.9]\nseeds = 2\n')
    spec = read_toml(str(tmp_path / "s.toml"))
    assert len(build_grid(spec)) == 4
