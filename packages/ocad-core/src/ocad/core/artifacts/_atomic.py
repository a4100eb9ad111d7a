"""One atomic-write helper: a crash (or a kill) leaves the old file or the new one, never a torn one.

``atomic_write_bytes`` writes to a temporary file in the destination's own
directory (``os.replace`` is only atomic within one file system), fsyncs it,
renames it over the destination, and fsyncs the directory so that the rename
itself survives a power cut. ``fsync_dir`` is the last step on its own, for
callers that rename directories (``write_artifact``).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_json", "current_umask", "fsync_dir", "fsync_file"]


def current_umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory (makes renames and new entries in it durable); a no-op where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot fsync a directory
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike[str]) -> None:
    """fsync a file already written (e.g. a model file copied into a temporary artifact directory)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` atomically and durably (temp file, fsync, rename, fsync dir).

    ``mode``: the new file's permissions; default ``0o666 & ~umask`` (as ``open`` would make it;
    ``mkstemp`` alone makes it 0600 and the reader is often another user).
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        os.fchmod(fd, mode if mode is not None else 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(p.parent)


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> None:
    """:func:`atomic_write_bytes` of ``data`` as indented, key-sorted JSON."""
    atomic_write_bytes(path, json.dumps(data, indent=2, sort_keys=True).encode("utf-8"))
