"""A sweep config (TOML) names the user's own data sets: the same names as --data, clear errors naming the key."""

from __future__ import annotations

import pytest
from _user_files import isolated_user_data, write_images, write_wine

from labelsmooth.cli import main
from labelsmooth.experiment import user_data
from labelsmooth.experiment.data import DataError
from labelsmooth.experiment.grid import SpecError, read_toml
from labelsmooth.experiment.store import Store

private_cache = isolated_user_data(default_memory_limit=True)


@pytest.fixture
def files(tmp_path):
    """wine.csv and a two-class image folder of mixed sizes, in tmp_path/data."""
    folder = tmp_path / "data"
    folder.mkdir()
    write_wine(folder / "wine.csv")
    write_images(folder / "imgs", {"a": 5, "b": 5}, size=(8, 6))
    write_images(folder / "imgs", {"c": 5}, size=(10, 10), seed=1)  # another size: needs image_size
    return folder


def _config(path, text: str):
    path.write_text(text)
    return str(path)


def test_data_tables_resolve_to_the_names_register_and_data_give(files, tmp_path, monkeypatch):
    config = _config(files / "sweep.toml", """
[sweep]
datasets = ["digits"]
gammas = [0.9]

[[sweep.data]]
path = "wine.csv"            # relative to this file
label_column = "target"

[[sweep.data]]
path = "imgs"
image_size = [8, 8]
image_mode = "grayscale"
standardise = false
""")  # fmt: skip
    monkeypatch.chdir(tmp_path)  # not the config's folder: relative paths are the file's
    spec = read_toml(config)
    assert "data" not in spec and spec["gammas"] == [0.9]
    wine = user_data.register(files / "wine.csv", label_column="target")
    imgs = user_data.register(files / "imgs", image_size=(8, 8), image_mode="grayscale", standardise=False)
    assert spec["datasets"] == ["digits", wine, imgs]
    assert user_data.register(files / "imgs", image_size="8x8", image_mode="grayscale", standardise=False) == imgs


def test_a_plain_path_or_list_at_the_top_level(files):
    import numpy as np

    np.savez(files / "a.npz", x_train=np.eye(12), y_train=np.arange(12) % 2)
    assert read_toml(_config(files / "one.toml", 'data = "a.npz"\n'))["datasets"] == [
        user_data.register(files / "a.npz")
    ]
    two = read_toml(_config(files / "two.toml", f'data = ["a.npz", {{ path = "{files / "wine.csv"}", label_column = "target" }}]\n'))  # fmt: skip
    assert two["datasets"] == [user_data.register(files / "a.npz"), user_data.register(files / "wine.csv", label_column="target")]  # fmt: skip


@pytest.mark.parametrize(
    "entry, error, message",
    [
        ('path = "wine.csv"\nlabel = "target"', SpecError,
         r"Expected the keys of `data\[0\]` in .*bad.toml among \['path', 'label_column', .*\], but got unknown \['label'\]"),
        ('label_column = "target"', SpecError, r"Expected `data\[0\]`.path in .*bad.toml to be a file or folder path, but got None"),
        ('path = 3', SpecError, r"Expected `data\[0\]`.path in .*bad.toml to be a file or folder path, but got 3"),
        ('path = "wine.csv"\nlabel_column = "kind"', DataError,
         r"^`data\[0\]` \(wine.csv\) in .*bad.toml: The table .*wine.csv has no column 'kind'"),
        ('path = "missing.csv"\nlabel_column = "y"', DataError, r"^`data\[0\]` \(missing.csv\) in .*bad.toml: No file or folder at .*missing.csv"),
        ('path = "imgs"', DataError, r"^`data\[0\]` \(imgs\) in .*bad.toml: Images in .*imgs differ in size"),
        ('path = "imgs"\nimage_size = "big"', ValueError, r"^`data\[0\]` \(imgs\) in .*bad.toml: Expected `image_size` as HxW"),
        ('path = "wine.csv"\nlabel_column = "target"\nimage_size = "8x8"', ValueError,
         r"Expected `image_size`/`image_mode` only for image folders"),
        ('path = "imgs"\nimage_size = "8x8"\nstandardise = "no"', SpecError, r"`data\[0\]` \(imgs\) in .*: Expected `standardise` to be a bool"),
    ],
)  # fmt: skip
def test_bad_data_entries_name_the_entry_the_key_and_the_file(files, entry, error, message):
    """[[sweep.data]] is a list of tables: its first entry is data[0]."""
    with pytest.raises(error, match=message):
        read_toml(_config(files / "bad.toml", "[[sweep.data]]\n" + entry + "\n"))


def test_bad_data_values_and_indices_in_a_list(files):
    with pytest.raises(SpecError, match=r"Expected `data` in .*bad.toml to be a path, a table with `path`, or a non-empty list"):  # fmt: skip
        read_toml(_config(files / "bad.toml", "[sweep]\ndata = 3\n"))
    with pytest.raises(SpecError, match=r"non-empty list of them .* but got \[\]"):
        read_toml(_config(files / "bad.toml", "[sweep]\ndata = []\n"))
    text = '[sweep]\ndata = [{ path = "wine.csv", label_column = "target" }, { path = "wine.csv", colour = 1 }]\n'
    with pytest.raises(SpecError, match=r"keys of `data\[1\]` in .*, but got unknown \['colour'\]"):
        read_toml(_config(files / "bad.toml", text))


def test_cli_sweep_from_a_config_shares_runs_with_data(files, tmp_path, capsys):
    """The config's data set is --data's: a sweep from the config finds the --data sweep's runs done."""
    store = tmp_path / "s.sqlite"
    common = ["--seeds", "1", "--epochs", "1", "--workers", "1", "--no-progress", "--no-search", "--store", str(store)]
    assert main(["sweep", "--data", str(files / "wine.csv"), "--label-column", "target", *common]) == 0
    config = _config(files / "sweep.toml", '[sweep]\n[[sweep.data]]\npath = "wine.csv"\nlabel_column = "target"\n')
    assert main(["sweep", "--config", config, *common]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith(f"1 tuning trials (1 already in {store}, 0 done, 0 failed)")
    with Store(store) as s:
        assert len(s.runs()) == 1
    bad = _config(files / "bad.toml", 'data = { path = "wine.csv", label_column = "kind" }\n')
    assert main(["sweep", "--config", bad, *common]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "`data` (wine.csv) in" in err and "has no column 'kind'" in err
