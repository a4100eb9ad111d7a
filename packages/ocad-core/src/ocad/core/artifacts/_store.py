"""A model store: versioned artifacts with an active pointer, promote and roll back.

Layout::

    ROOT/
      store.json                 {"schema_version": 1}
      <model name>/
        versions/<version>/      an artifact (manifest.json + files), immutable
        active.json              {"version": ..., "history": [older active versions]}

Every write is atomic (temp file / directory + ``os.replace``): an interrupted
training or promotion never leaves a half-written active model.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ._artifact import LoadedArtifact, current_umask, load_artifact
from .._errors import OcadArtifactError

__all__ = ["ModelStore"]

STORE_FILE = "store.json"


def _atomic_write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes it 0600; readers may be other users
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class ModelStore:
    """Versioned artifacts under one root directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @staticmethod
    def is_store(root: str | os.PathLike[str]) -> bool:
        return (Path(root) / STORE_FILE).is_file()

    def init(self) -> ModelStore:
        if not self.is_store(self.root):
            _atomic_write_json(self.root / STORE_FILE, {"schema_version": 1})
        return self

    # -- paths --------------------------------------------------------------
    def version_dir(self, name: str, version: str) -> Path:
        return self.root / name / "versions" / version

    def _active_file(self, name: str) -> Path:
        return self.root / name / "active.json"

    # -- queries --------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if (p / "versions").is_dir()) if self.root.is_dir() else []

    def versions(self, name: str) -> list[str]:
        d = self.root / name / "versions"
        if not d.is_dir():
            return []
        return sorted((p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")),
                      key=_version_key)

    def active(self, name: str) -> str | None:
        f = self._active_file(name)
        if not f.is_file():
            return None
        return json.loads(f.read_text(encoding="utf-8")).get("version")

    def load(self, name: str, version: str | None = None) -> LoadedArtifact:
        version = version or self.active(name)
        if version is None:
            raise OcadArtifactError(name, f"no active version in store {self.root}")
        return load_artifact(self.version_dir(name, version))

    def active_paths(self) -> list[Path]:
        out = []
        for n in self.names():
            v = self.active(n)
            if v is not None:
                out.append(self.version_dir(n, v))
        return out

    def next_version(self, name: str) -> str:
        vs = self.versions(name)
        if not vs:
            return "1.0.0"
        major, minor, patch = _version_key(vs[-1])
        return f"{major}.{minor + 1}.0"

    # -- changes --------------------------------------------------------------
    def promote(self, name: str, version: str) -> None:
        """Make ``version`` active (after verifying it); the previous one goes to history."""
        load_artifact(self.version_dir(name, version))
        f = self._active_file(name)
        state = json.loads(f.read_text(encoding="utf-8")) if f.is_file() else {"version": None, "history": []}
        if state.get("version") == version:
            return
        if state.get("version") is not None:
            state["history"].append(state["version"])
        state["version"] = version
        _atomic_write_json(f, state)

    def rollback(self, name: str) -> str:
        """Re-activate the previously active version; returns it."""
        f = self._active_file(name)
        state = json.loads(f.read_text(encoding="utf-8")) if f.is_file() else {}
        history = state.get("history") or []
        if not history:
            raise OcadArtifactError(name, "nothing to roll back to: no previous active version")
        prev = history.pop()
        load_artifact(self.version_dir(name, prev))
        state["version"] = prev
        state["history"] = history
        _atomic_write_json(f, state)
        return prev


def _version_key(v: str) -> tuple[int, int, int]:
    parts = (v.split("+")[0].split("-")[0].split(".") + ["0", "0", "0"])[:3]
    try:
        return int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return (0, 0, 0)
