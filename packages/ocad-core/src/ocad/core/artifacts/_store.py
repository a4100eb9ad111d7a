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

Every write is atomic and durable (temp file / directory, fsync, ``os.replace``,
fsync of the directory): an interrupted training or promotion never leaves a
half-written active model. Every change (``promote``, ``rollback``, a publish
through :meth:`ModelStore.lock`) holds an exclusive ``fcntl.flock`` on
``ROOT/.lock``, so two processes promoting or publishing at once are serialised
and lose nothing. Model names and version strings are checked
(:data:`NAME_RE`, no ``..``, not hidden) before they become a path, and every
path is resolved strictly inside the store.
The pointer and its log entry are written in one ``os.replace``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ._artifact import LoadedArtifact, load_artifact
from ._atomic import atomic_write_json
from .._errors import OcadArtifactError

__all__ = ["NAME_RE", "ModelStore", "check_store_name"]

STORE_FILE = "store.json"
REPORT_FILE = "performance_report.json"
LOCK_FILE = ".lock"
#: What a model name or a version string may look like (it becomes a directory name).
NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")

_atomic_write_json = atomic_write_json  # the name other modules imported before _atomic existed
_held = threading.local()  # {resolved root: depth} of the store locks this thread holds


def check_store_name(what: str, value: Any) -> str:
    """``value`` if it is a safe model name / version string, else :class:`OcadArtifactError` naming it."""
    if not isinstance(value, str) or not NAME_RE.match(value) or ".." in value or value.startswith("."):
        raise OcadArtifactError(
            f"{what} {value!r}"[:200], f"{what} must match {NAME_RE.pattern}, not start with '.' and not "
            "contain '..'")
    return value


class ModelStore:
    """Versioned artifacts under one root directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @staticmethod
    def is_store(root: str | os.PathLike[str]) -> bool:
        return (Path(root) / STORE_FILE).is_file()

    def init(self) -> ModelStore:
        if not self.is_store(self.root):
            atomic_write_json(self.root / STORE_FILE, {"schema_version": 1})
        return self

    # -- paths --------------------------------------------------------------
    def _inside(self, p: Path) -> Path:
        root = self.root.resolve()
        r = p.resolve()
        if r != root and root not in r.parents:
            raise OcadArtifactError(str(p), f"resolves outside the model store {root} (a symlink?)")
        return p

    def version_dir(self, name: str, version: str) -> Path:
        check_store_name("model name", name)
        check_store_name("version", version)
        return self._inside(self.root / name / "versions" / version)

    def _active_file(self, name: str) -> Path:
        check_store_name("model name", name)
        return self._inside(self.root / name / "active.json")

    @contextlib.contextmanager
    def lock(self) -> Iterator[ModelStore]:
        """Hold the store's exclusive lock (``ROOT/.lock``, ``fcntl.flock``); re-entrant in one thread.

        ``promote`` and ``rollback`` take it; a publisher holds it around choosing the next
        version, writing it and promoting it, so two trainers never pick the same version.
        """
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        key = str(self.root.resolve())
        depth: dict[str, int] = _held.__dict__.setdefault("depth", {})
        if depth.get(key):
            depth[key] += 1
            try:
                yield self
            finally:
                depth[key] -= 1
            return
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            depth[key] = 1
            try:
                yield self
            finally:
                depth[key] = 0
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _read_active(self, name: str) -> dict[str, Any]:
        """``active.json`` checked: a corrupt one raises :class:`OcadArtifactError` naming file and field."""
        f = self._active_file(name)
        if not f.is_file():
            return {"version": None, "history": []}
        try:
            state = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise OcadArtifactError(str(f), f"not valid JSON: {type(exc).__name__}: {str(exc)[:200]}") from None
        if not isinstance(state, dict):
            raise OcadArtifactError(str(f), "must hold a JSON object")
        v = state.get("version")
        if v is not None:
            try:
                check_store_name("version", v)
            except OcadArtifactError as exc:
                raise OcadArtifactError(str(f), f"field 'version': {exc}") from None
        history = state.get("history", [])
        if not isinstance(history, list):
            raise OcadArtifactError(str(f), f"field 'history' = {history!r:.80} must be a list")
        for i, h in enumerate(history):
            try:
                check_store_name("version", h)
            except OcadArtifactError as exc:
                raise OcadArtifactError(str(f), f"field 'history[{i}]': {exc}") from None
        state["history"] = history
        return state

    # -- queries --------------------------------------------------------------
    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if (p / "versions").is_dir() and NAME_RE.match(p.name) and not p.name.startswith("."))

    def versions(self, name: str) -> list[str]:
        check_store_name("model name", name)
        d = self.root / name / "versions"
        if not d.is_dir():
            return []
        return sorted((p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")),
                      key=_version_key)

    def active(self, name: str) -> str | None:
        return self._read_active(name).get("version")

    def load(self, name: str, version: str | None = None) -> LoadedArtifact:
        version = self.active(name) if version is None else version
        if version is None:
            raise OcadArtifactError(name, f"no active version in store {self.root}")
        return load_artifact(self.version_dir(name, version))

    def active_paths(self, errors: list[str] | None = None) -> list[Path]:
        """The active version directories. With ``errors``, a model whose pointer is corrupt
        (bad ``active.json``, a name or version that is not a safe path) is skipped and its
        problem appended there; without, the first problem raises :class:`OcadArtifactError`."""
        out = []
        for n in self.names():
            try:
                v = self.active(n)
                if v is not None:
                    out.append(self.version_dir(n, v))
            except OcadArtifactError as exc:
                if errors is None:
                    raise
                errors.append(str(exc))
        return out

    def next_version(self, name: str) -> str:
        vs = self.versions(name)
        if not vs:
            return "1.0.0"
        major, minor, patch = _version_key(vs[-1])
        return f"{major}.{minor + 1}.0"

    def _state(self, name: str) -> dict[str, Any]:
        state = self._read_active(name)
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
        with self.lock():
            state = self._state(name)
            state["log"].append(_entry(action, version, **info))
            atomic_write_json(self._active_file(name), state)

    def promote(self, name: str, version: str, *, forced: bool = False, reason: str | None = None,
                gate: Mapping[str, Any] | None = None) -> None:
        """Make ``version`` active (after verifying it); the previous one goes to history.

        This is the store's mechanism, not the quality gate: ``ocad models promote``
        runs the gate first and passes its verdict (``gate``) for the log; a
        promotion against the gate's verdict is ``forced`` and needs a ``reason``.
        """
        if forced and not (reason and reason.strip()):
            raise OcadArtifactError(name, "a forced promotion needs a reason (--reason '...')")
        with self.lock():
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
            atomic_write_json(self._active_file(name), state)

    def rollback(self, name: str) -> str:
        """Re-activate the previously active version; returns it."""
        with self.lock():
            state = self._state(name)
            history = state["history"]
            if not history:
                raise OcadArtifactError(name, "nothing to roll back to: no previous active version")
            prev = history.pop()
            load_artifact(self.version_dir(name, prev))
            state["log"].append(_entry("rollback", prev, previous=state["version"]))
            state["version"] = prev
            atomic_write_json(self._active_file(name), state)
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
