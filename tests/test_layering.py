"""The layering of the core (shared/STYLE.md; issue 17): no module imports one above it, and the core needs
only torch (Triton only in the module that holds the Triton kernel).

Read from the source with ``ast``, so nothing is imported and lazy imports inside functions count too.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import labelsmooth

ROOT = Path(labelsmooth.__file__).parent
#: Bottom to top. A module may import modules of its own layer or below.
LAYERS = [
    ["_common"],
    ["_validation"],
    ["conventions"],
    ["targets"],
    [
        "kernels._triton_kernel",
        "kernels.torch_backend",
        "kernels.compiled_backend",
        "kernels.auto_compiled",
        "kernels.triton_backend",
        "kernels",
    ],  # fmt: skip
    ["losses", "fused", "linear", "distributed", "theory"],
    ["modules", "liger"],
    [""],  # the package itself (labelsmooth/__init__.py)
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}
OUTSIDE_THE_CORE = ("experiment", "integrations", "cli", "__main__")  # behind extras or the CLI, above all
THIRD_PARTY = {"torch"}


def _core_modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[0] in OUTSIDE_THE_CORE:
            continue
        out[".".join(p for p in parts if p != "__init__")] = path
    return out


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """(the labelsmooth modules imported, relative to the package; the top-level names of other imports)."""
    ours, others = set(), set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module in ("labelsmooth", "labelsmooth.kernels"):  # from labelsmooth import module
                base = node.module.removeprefix("labelsmooth").lstrip(".")
                names = [f"labelsmooth.{base + '.' if base else ''}{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name == "labelsmooth" or name.startswith("labelsmooth."):
                mod = name.removeprefix("labelsmooth").lstrip(".")
                ours.add(mod if mod in LAYER else mod.rsplit(".", 1)[0] if "." in mod else mod)
            else:
                others.add(name.split(".")[0])
    return ours, others


CORE = _core_modules()


def test_every_core_module_has_a_layer():
    assert set(CORE) <= set(LAYER), f"modules without a layer: {sorted(set(CORE) - set(LAYER))}"


@pytest.mark.parametrize("module", sorted(CORE))
def test_no_core_module_imports_one_above_it(module):
    ours, _ = _imports(CORE[module])
    above = sorted(m for m in ours if m in LAYER and LAYER[m] > LAYER[module])
    outside = sorted(m for m in ours if m.split(".")[0] in OUTSIDE_THE_CORE)
    assert not above, f"{module} (layer {LAYER[module]}) imports {above}, which sit above it"
    assert not outside, f"{module} imports {outside}, which sit behind extras"


@pytest.mark.parametrize("module", sorted(CORE))
def test_the_core_needs_only_torch(module):
    _, others = _imports(CORE[module])
    allowed = set(sys.stdlib_module_names) | THIRD_PARTY | {"__future__"}
    if module == "kernels._triton_kernel":
        allowed.add("triton")  # imported only where Triton is installed (kernels.triton_backend)
    assert others <= allowed, f"{module} imports {sorted(others - allowed)}"


def test_the_check_sees_an_upward_import(tmp_path):
    # the rule can fail: an upward import in a module of layer 0 is reported
    path = tmp_path / "m.py"
    path.write_text("from labelsmooth.losses import cross_entropy\nimport numpy\n")
    ours, others = _imports(path)
    assert ours == {"losses"} and LAYER["losses"] > LAYER["_common"] and others == {"numpy"}
