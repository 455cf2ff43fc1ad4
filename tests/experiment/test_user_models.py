"""User models that live in one process only (lambdas, local functions): refused early and clearly where a
run could not rebuild them (worker processes, Ray, a later process resuming a store), fine in-process."""

from __future__ import annotations

import pytest
from _user_files import TinyNet, isolated_user_data, write_wine

from labelsmooth.cli import main
from labelsmooth.experiment import models, user_data
from labelsmooth.experiment.config import RunConfig
from labelsmooth.experiment.models import ModelError, build, check_portable, is_local
from labelsmooth.experiment.runner import sweep
from labelsmooth.experiment.store import Store

private_cache = isolated_user_data()


@pytest.fixture
def wine(tmp_path):
    return user_data.register(write_wine(tmp_path / "wine.csv"), label_column="target")


def local_factory():
    def tiny(input_shape, num_classes):
        return TinyNet(input_shape, num_classes)

    return tiny


def test_register_names_local_factories_as_such_and_importable_ones_by_module():
    lam = models.register(lambda input_shape, num_classes: TinyNet(input_shape, num_classes))
    loc = models.register(local_factory())
    assert is_local(lam) and is_local(loc) and "_locals_.tiny_" in loc
    assert not is_local(models.register(TinyNet)) and not is_local("mymod:make_lambda_net_abcdef12")
    check_portable([lam, loc, "mlp", "_user_files:TinyNet"])  # this process holds them all: fine


@pytest.mark.parametrize("workers, backend, where", [(2, "local", "the 2 worker processes"), (1, "ray", "Ray tasks")])
def test_a_sweep_that_runs_elsewhere_refuses_a_local_model_before_storing_anything(
    wine, tmp_path, workers, backend, where
):
    name = models.register(local_factory())
    store = tmp_path / "s.sqlite"
    with pytest.raises(ModelError) as e:
        sweep([RunConfig(wine, name, epochs=1)], str(store), workers=workers, backend=backend, progress=False)
    message = str(e.value)
    assert f"Model {name!r} is a lambda or local function registered in this process" in message
    assert where in message and "define the factory at the top level of a module" in message
    assert "workers=1" in message
    with Store(store) as s:
        assert s.runs() == [] and s.sweeps() == []


def test_the_same_local_model_trains_in_this_process(wine, tmp_path):
    name = models.register(local_factory())
    counts = sweep([RunConfig(wine, name, epochs=1)], str(tmp_path / "s.sqlite"), workers=1, progress=False)
    assert counts == {"total": 1, "skipped": 0, "done": 1, "failed": 0}


def test_a_later_process_cannot_resume_a_local_model_and_says_why(wine, tmp_path, monkeypatch, capsys):
    name = models.register(local_factory())
    monkeypatch.delitem(models._REGISTERED, name)  # what a new process sees: the name, not the factory
    expected = rf"Model '{name}' was registered from a lambda or local function in another process .* cannot be "
    expected += r"rebuilt here and its runs cannot be resumed: define the factory at the top level of a module"
    with pytest.raises(ModelError, match=expected):
        build(name, (13,), 3)
    store = tmp_path / "s.sqlite"
    with pytest.raises(ModelError, match=expected):
        sweep([RunConfig(wine, name, epochs=1)], str(store), workers=1, progress=False)
    with Store(store) as s:
        assert s.runs() == []
    argv = ["sweep", "--datasets", wine, "--models", name, "--seeds", "1", "--epochs", "1", "--no-search"]
    assert main([*argv, "--workers", "1", "--no-progress", "--store", str(tmp_path / "cli.sqlite")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "registered from a lambda or local function in another process" in err


def test_an_unimportable_model_stops_a_sweep_before_it_stores_failed_runs(wine, tmp_path):
    store = tmp_path / "s.sqlite"
    with pytest.raises(ModelError, match=r"Cannot import module 'no_such_module' of model 'no_such_module:net'"):
        sweep([RunConfig(wine, "no_such_module:net", epochs=1)], str(store), workers=1, progress=False)
    with Store(store) as s:
        assert s.runs() == []
