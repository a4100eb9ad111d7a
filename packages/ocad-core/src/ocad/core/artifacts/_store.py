"""A model store: versioned artifacts with an active pointer, promote and roll back.

Layout::

    ROOT/
      store.json                 {"schema_version": 1}
      <model name>/
        versions/<version>/      an artifact (manifest.json + files), immutable
        versions/<version>/performance_report.json   mutable: refreshed by ``ocad evaluate``
        active.json              {"version": ..., "history": [older active versions],
                                  "log": [every candidate, promotion, forced promotion, rollback]}

A new version is a *candidate* until it is promoted: training adds versions,
only :meth:`ModelStore.promote` (behind the quality gate of ``ocad models
promote`` / ``ocad retrain``) moves the active pointer. ``active.json``'s ``log``
records each change with its time, the version before, whether the gate was
overridden and why (``forced``, ``reason``) and the gate's verdict.

Every write is atomic (temp file / directory + ``os.replace``): an interrupted
training or promotion never leaves a half-written active model. The pointer and
its log entry are written in one ``os.replace``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._artifact import LoadedArtifact, current_umask, load_artifact
from .._errors import OcadArtifactError

__all__ = ["ModelStore"]

STORE_FILE = "store.json"
REPORT_FILE = "performance_report.json"


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

    def _state(self, name: str) -> dict[str, Any]:
        f = self._active_file(name)
        state = json.loads(f.read_text(encoding="utf-8")) if f.is_file() else {}
        state.setdefault("version", None)
        state.setdefault("history", [])
        state.setdefault("log", [])
        return state

    def log(self, name: str) -> list[dict[str, Any]]:
        """Every recorded change of ``name``, oldest first (``action``, ``version``, ``ts``, ...)."""
        return list(self._state(name)["log"])

    def candidates(self, name: str) -> list[str]:
        """Versions that were never active (newest last): what training added since."""
        st = self._state(name)
        ever = {st["version"], *st["history"]}
        ever.update(e.get("version") for e in st["log"] if e.get("action") in ("promote", "rollback"))
        return [v for v in self.versions(name) if v not in ever]

    # -- changes --------------------------------------------------------------
    def record(self, name: str, action: str, version: str | None, **info: Any) -> None:
        """Append an entry to ``name``'s log (e.g. ``candidate``, ``duplicate``) without moving the pointer."""
        state = self._state(name)
        state["log"].append(_entry(action, version, **info))
        _atomic_write_json(self._active_file(name), state)

    def promote(self, name: str, version: str, *, forced: bool = False, reason: str | None = None,
                gate: Mapping[str, Any] | None = None) -> None:
        """Make ``version`` active (after verifying it); the previous one goes to history.

        This is the store's mechanism, not the quality gate: ``ocad models promote``
        runs the gate first and passes its verdict (``gate``) for the log; a
        promotion against the gate's verdict is ``forced`` and needs a ``reason``.
        """
        if forced and not (reason and reason.strip()):
            raise OcadArtifactError(name, "a forced promotion needs a reason (--reason '...')")
        load_artifact(self.version_dir(name, version))
        state = self._state(name)
        if state["version"] == version:
            return
        prev = state["version"]
        if prev is not None:
            state["history"].append(prev)
        state["version"] = version
        info: dict[str, Any] = {"previous": prev, "forced": bool(forced)}
        if reason:
            info["reason"] = reason
        if gate is not None:
            info["gate"] = dict(gate)
        state["log"].append(_entry("promote", version, **info))
        _atomic_write_json(self._active_file(name), state)

    def rollback(self, name: str) -> str:
        """Re-activate the previously active version; returns it."""
        state = self._state(name)
        history = state["history"]
        if not history:
            raise OcadArtifactError(name, "nothing to roll back to: no previous active version")
        prev = history.pop()
        load_artifact(self.version_dir(name, prev))
        state["log"].append(_entry("rollback", prev, previous=state["version"]))
        state["version"] = prev
        _atomic_write_json(self._active_file(name), state)
        return prev

    def same_as(self, name: str, manifest: Mapping[str, Any], *, exclude: str | None = None) -> str | None:
        """The existing version trained on the same data fingerprint with the same metrics, if any."""
        fp = (manifest.get("training_data") or {}).get("fingerprint")
        if not fp:
            return None
        metrics = json.dumps(manifest.get("metrics"), sort_keys=True, default=str)
        for v in reversed(self.versions(name)):
            if v == exclude:
                continue
            try:
                m = json.loads((self.version_dir(name, v) / "manifest.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if ((m.get("training_data") or {}).get("fingerprint") == fp
                    and json.dumps(m.get("metrics"), sort_keys=True, default=str) == metrics):
                return v
        return None

    def discard(self, name: str, version: str) -> None:
        """Delete a candidate that was never active (e.g. a duplicate of an existing version)."""
        if version not in self.candidates(name):
            raise OcadArtifactError(name, f"version {version} was active once; versions that were active are "
                                          "kept for rollback and audit")
        d = self.version_dir(name, version)
        tmp = d.with_name(f".{version}.discard")
        os.replace(d, tmp)  # invisible at once, then removed
        shutil.rmtree(tmp, ignore_errors=True)

    # -- performance reports -----------------------------------------------------
    def report_path(self, name: str, version: str) -> Path:
        return self.version_dir(name, version) / REPORT_FILE

    def report(self, name: str, version: str | None = None) -> dict[str, Any] | None:
        """The version's ``performance_report.json`` (``None`` when it has none)."""
        version = version or self.active(name)
        if version is None:
            return None
        p = self.report_path(name, version)
        return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None

    def write_report(self, name: str, version: str, report: Mapping[str, Any]) -> Path:
        """Write (replace) a version's performance report; the artifact itself stays untouched."""
        if not self.version_dir(name, version).is_dir():
            raise OcadArtifactError(name, f"no version {version} in store {self.root}")
        p = self.report_path(name, version)
        _atomic_write_json(p, report)
        return p


def _entry(action: str, version: str | None, **info: Any) -> dict[str, Any]:
    return {"ts": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "action": action,
            "version": version, **info}


def _version_key(v: str) -> tuple[int, int, int]:
    parts = (v.split("+")[0].split("-")[0].split(".") + ["0", "0", "0"])[:3]
    try:
        return int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return (0, 0, 0)
