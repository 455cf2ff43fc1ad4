"""What backend="auto" runs on CPUs in eager mode: the plain backend for small inputs, the compiled kernel
for large ones where a C++ compiler is found, and the plain computation (one warning) where compiling fails.

"Large" is ``kernels.AUTO_MIN_LOGITS``; the tests lower it so that small problems take the large path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import labelsmooth
from labelsmooth import fused_cross_entropy, kernels
from labelsmooth.kernels import auto_compiled, compiled_backend, select_backend, torch_backend
from tests.test_fused import _case, _value_and_grad

needs_compiler = pytest.mark.skipif(kernels._cxx_compiler() is None, reason="torch.compile needs a C++ compiler")


@pytest.fixture
def no_failures(monkeypatch):
    """A process in which compiling has not failed yet (and whatever a test records is forgotten)."""
    monkeypatch.setattr(auto_compiled, "_FAILURES", [])


def test_small_inputs_keep_the_plain_backend(no_failures):
    z = torch.zeros(4, 3)
    assert z.numel() < kernels.AUTO_MIN_LOGITS
    assert select_backend("auto", z) is torch_backend


def test_large_inputs_take_the_compiled_kernel_where_a_compiler_is_found(monkeypatch, no_failures):
    z = torch.zeros(8, 16)
    monkeypatch.setattr(kernels, "AUTO_MIN_LOGITS", z.numel())
    monkeypatch.setattr(kernels, "_cxx_compiler", lambda: "/usr/bin/c++")
    assert select_backend("auto", z) is auto_compiled
    assert select_backend("auto", z[:-1]) is torch_backend  # one row fewer: under the threshold
    monkeypatch.setattr(kernels, "_cxx_compiler", lambda: None)
    assert select_backend("auto", z) is torch_backend
    assert select_backend("auto", z.double()) is torch_backend


def test_after_a_compile_failure_auto_keeps_the_plain_backend(monkeypatch):
    z = torch.zeros(8, 16)
    monkeypatch.setattr(kernels, "AUTO_MIN_LOGITS", 1)
    monkeypatch.setattr(kernels, "_cxx_compiler", lambda: "/usr/bin/c++")
    monkeypatch.setattr(auto_compiled, "_FAILURES", ["InductorError: CppCompileError: C++ compile error"])
    assert select_backend("auto", z) is torch_backend
    assert select_backend("compiled", z) is compiled_backend  # asked for by name, it is still tried


@needs_compiler
@pytest.mark.parametrize("convention", ["uniform", "others"])
@pytest.mark.parametrize("use_prior", [False, True])
def test_large_path_matches_the_reference_float64(monkeypatch, no_failures, convention, use_prior):
    z, y, w, prior = _case(0)
    monkeypatch.setattr(kernels, "AUTO_MIN_LOGITS", z.numel())
    assert select_backend("auto", z) is auto_compiled
    kw = dict(label_smoothing=0.2, convention=convention, prior=prior if use_prior else None, weight=w)
    ref, ref_grad = _value_and_grad(labelsmooth.cross_entropy, z, y, **kw)
    out, grad = _value_and_grad(fused_cross_entropy, z, y, chunk_size=4, **kw)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-12)
    assert auto_compiled.compile_failure() is None


def _failing_compile(monkeypatch, after_calls: int = 0) -> list[int]:
    """Make the compiled kernel raise as torch.compile does when Inductor cannot build it, after
    ``after_calls`` chunks that run; returns the list of chunk calls seen."""
    calls = []

    def kernel(*args):
        calls.append(len(calls))
        if len(calls) > after_calls:
            raise torch._dynamo.exc.TorchDynamoException("CppCompileError: C++ compile error\nthe log")
        return compiled_backend._rows(*args)

    monkeypatch.setattr(compiled_backend, "_compiled", lambda: kernel)
    monkeypatch.setattr(kernels, "AUTO_MIN_LOGITS", 1)
    monkeypatch.setattr(kernels, "_cxx_compiler", lambda: "/usr/bin/c++")
    return calls


@pytest.mark.parametrize("inplace", [False, True])
def test_a_compile_failure_warns_once_and_gives_the_same_values(monkeypatch, no_failures, inplace):
    # the kernel fails on the third chunk: the two chunks before it stand, the rest run uncompiled
    z, y, _, prior = _case(1, n=11)
    calls = _failing_compile(monkeypatch, after_calls=2)
    kw = dict(label_smoothing=0.1, prior=prior)
    ref, ref_grad = _value_and_grad(labelsmooth.cross_entropy, z, y, **kw)
    leaf = z.clone().requires_grad_()
    act = leaf * 1
    with pytest.warns(RuntimeWarning, match=r"could not build.*CppCompileError: C\+\+ compile error.*backend='torch'"):
        loss = fused_cross_entropy(act, y, chunk_size=3, inplace=inplace, **kw)
    loss.backward()
    assert len(calls) == 3  # the failing chunk is not retried compiled, nor are the chunks after it
    torch.testing.assert_close(loss.detach(), ref, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(leaf.grad, ref_grad, rtol=1e-9, atol=1e-12)
    assert auto_compiled.compile_failure() == "TorchDynamoException: CppCompileError: C++ compile error"
    assert select_backend("auto", z) is torch_backend  # and no second warning from then on
    out = fused_cross_entropy(z, y, **kw)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-12)


def test_other_errors_are_not_swallowed(monkeypatch, no_failures):
    def kernel(*args):
        raise MemoryError("not a compile failure")

    monkeypatch.setattr(compiled_backend, "_compiled", lambda: kernel)
    monkeypatch.setattr(kernels, "AUTO_MIN_LOGITS", 1)
    monkeypatch.setattr(kernels, "_cxx_compiler", lambda: "/usr/bin/c++")
    z, y, _, _ = _case(2)
    with pytest.raises(MemoryError, match="not a compile failure"):
        fused_cross_entropy(z, y, label_smoothing=0.1)
    assert auto_compiled.compile_failure() is None


FAKE_CXX = """#!/bin/sh
# a C++ compiler that answers Inductor's probes but cannot build a kernel
for a in "$@"; do case "$a" in *.cpp) echo "fake c++: refusing $a" >&2; exit 1;; esac; done
exec {real} "$@"
"""

SCRIPT = """
import warnings, torch, labelsmooth
from labelsmooth import kernels
kernels.AUTO_MIN_LOGITS = 1
g = torch.Generator().manual_seed(0)
z = torch.randn(64, 50, generator=g, dtype=torch.float64); y = torch.randint(0, 50, (64,), generator=g)
ref = labelsmooth.cross_entropy(z, y, label_smoothing=0.1)
try:
    labelsmooth.fused_cross_entropy(z, y, label_smoothing=0.1, backend="compiled")
    print("explicit: no error")
except Exception as e:
    print("explicit raised", type(e).__name__)
assert kernels.select_backend("auto", z) is kernels.auto_compiled
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    out = labelsmooth.fused_cross_entropy(z, y, label_smoothing=0.1)
ours = [str(w.message) for w in caught if "labelsmooth" in str(w.message)]
print("warnings", len(ours), ours[0] if ours else "")
print("equal", torch.allclose(out, ref, rtol=1e-9, atol=1e-12))
print("failure", kernels.auto_compiled.compile_failure())
print("then", kernels.select_backend("auto", z).__name__)
"""


@needs_compiler
def test_a_real_compile_failure_falls_back(tmp_path: Path):
    # a fresh process, a fresh Inductor cache and a compiler that passes Inductor's probes but fails on
    # every kernel: what a machine with a broken toolchain (or without Python's headers) gives
    real = shutil.which("g++") or shutil.which("c++")
    if real is None:
        pytest.skip("needs g++ or c++ on PATH to wrap")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("g++", "c++"):
        fake = bindir / name
        fake.write_text(FAKE_CXX.format(real=real))
        fake.chmod(0o755)
    env = dict(
        os.environ,
        PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}",
        TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"),
        PYTHONPATH=os.pathsep.join(
            filter(None, [str(Path(labelsmooth.__file__).parents[1]), os.environ.get("PYTHONPATH")])
        ),
    )
    env.pop("CXX", None)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT)], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "explicit raised" in out, out  # backend="compiled" by name keeps raising
    assert "warnings 1 labelsmooth: torch.compile could not build" in out, out
    assert "equal True" in out, out
    assert "failure " in out and "failure None" not in out, out
    assert "then labelsmooth.kernels.torch_backend" in out, out
