"""Atomic file writes: a file is written whole under its name, or not at all.

Every output of the harness (``train --out``, ``export``, the report's Markdown, HTML and PNGs) goes
through :func:`atomic_write`: the content goes to a temporary file in the same folder, is flushed to disk,
and only then renamed over the target (``os.replace``, atomic on POSIX and Windows). A full disk, a
read-only folder or a missing permission therefore never leaves a 0-byte or truncated file under the real
name (an older file there stays as it was) and raises :class:`WriteError` naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from typing import IO

_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOENT: "the folder does not exist",
}


def _file_mode() -> int:
    """The mode ``open()`` would give a new file (0o666 less the umask); ``mkstemp`` makes 0o600."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


class WriteError(OSError):
    """An output file could not be written (disk full, read-only, no permission); names the file.

    The command line reports it as one line and exits with :data:`labelsmooth.cli.EXIT_WRITE`.
    """

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def write_error(path: str | os.PathLike, exc: OSError, what: str = "") -> WriteError:
    """A :class:`WriteError` for ``exc`` raised while writing ``path``, saying why in words.

    Example:
        >>> import errno
        >>> str(write_error("out.csv", OSError(errno.ENOSPC, "No space left on device")))
        'Cannot write out.csv: the disk is full ([Errno 28] No space left on device); nothing was written there'
    """
    reason = _REASONS.get(exc.errno or -1)
    detail = f"{reason} ({exc})" if reason else str(exc)
    err = WriteError(exc.errno, f"Cannot write {what or os.fspath(path)}: {detail}; nothing was written there")
    err.filename = os.fspath(path)
    return err


def _temporary(path: str, prefix: str, suffix: str) -> tuple[int, str]:
    """``mkstemp`` in the folder of ``path`` (so that ``os.replace`` stays on one file system)."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        return tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    except OSError as exc:
        raise write_error(path, exc) from exc


@contextlib.contextmanager
def _replace_on_success(tmp: str, path: str) -> Iterator[None]:
    """Rename ``tmp`` to ``path`` when the block succeeds; on any error remove ``tmp``, leave ``path`` as it
    was and turn an :class:`OSError` into a :class:`WriteError` naming ``path``."""
    try:
        yield
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise write_error(path, exc) from exc
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **open_kwargs) -> Iterator[IO]:
    """Open a temporary file next to ``path`` for writing; on success, rename it to ``path``.

    On any error (including a failing write or flush) the temporary file is removed, ``path`` is left as
    it was, and an :class:`OSError` becomes a :class:`WriteError` naming ``path``.

    Example:
        >>> import os, tempfile
        >>> p = os.path.join(tempfile.mkdtemp(), "out.txt")
        >>> with atomic_write(p) as f:
        ...     _ = f.write("hello")
        >>> open(p).read()
        'hello'
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"Expected `mode` to be 'w' or 'wb', but got {mode!r}")
    path = os.fspath(path)
    fd, tmp = _temporary(path, f".{os.path.basename(path)}.", ".tmp")
    with _replace_on_success(tmp, path):
        os.chmod(tmp, _file_mode())
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


def atomic_path(path: str | os.PathLike) -> contextlib.AbstractContextManager[str]:
    """A temporary path next to ``path`` for a writer that takes a file name (e.g. ``savefig``); renamed
    to ``path`` on success, removed on error (an :class:`OSError` becomes a :class:`WriteError`)."""
    return _atomic_path(os.fspath(path))


@contextlib.contextmanager
def _atomic_path(path: str) -> Iterator[str]:
    base, ext = os.path.splitext(os.path.basename(path))
    fd, tmp = _temporary(path, f".{base}.", f".tmp{ext}")
    with _replace_on_success(tmp, path):
        os.close(fd)
        os.chmod(tmp, _file_mode())
        yield tmp
