"""Helpers for the fault tests (imported, not a conftest): a read-only folder and a tiny disk.

Where the tests run as root with ``mount`` allowed (CI containers, this machine), they are real: a
read-only bind mount (EROFS even for root) and a tmpfs of a few KiB (ENOSPC). Elsewhere, a read-only
folder is made with permissions (which bind a non-root user), and the tiny disk is skipped: the tests that
need a full disk without root simulate it by making writes raise ``OSError(ENOSPC)``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _mount(*args: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextlib.contextmanager
def readonly_folder(src: Path, where: Path) -> Iterator[Path]:
    """``src`` seen read-only at ``where`` (a bind mount as root, else permissions 0o555/0o444)."""
    where.mkdir()
    if _mount("--bind", str(src), str(where)):
        try:
            if subprocess.run(["mount", "-o", "remount,ro,bind", str(where)], capture_output=True).returncode:
                pytest.skip("cannot remount a bind mount read-only here")
            yield where
        finally:
            _umount(where)
        return
    if os.geteuid() == 0:
        pytest.skip("running as root without mount: permissions cannot make a folder read-only")
    where.rmdir()
    shutil.copytree(src, where)
    for f in where.iterdir():
        f.chmod(0o444)
    where.chmod(0o555)
    try:
        yield where
    finally:
        where.chmod(0o755)


@contextlib.contextmanager
def tiny_disk(where: Path, size: str = "64k") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (root only; skips elsewhere)."""
    where.mkdir()
    if not _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)):
        pytest.skip("a tiny tmpfs needs root and mount")
    try:
        yield where
    finally:
        _umount(where)


def _umount(where: Path) -> None:
    """Unmount, lazily if something still holds a file there (never leave a mount behind)."""
    if subprocess.run(["umount", str(where)], capture_output=True).returncode:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


class FullDiskFile:
    """A file object whose writes fail with ENOSPC once ``room`` bytes are written (for monkeypatching)."""

    def __init__(self, real, room: int) -> None:
        self._real, self._room = real, room

    def write(self, data):
        if len(data) > self._room:
            self._real.write(data[: self._room])
            self._room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(data)
        return self._real.write(data)

    def __getattr__(self, name):
        return getattr(self._real, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._real.close()
