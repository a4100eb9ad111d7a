"""Model artifacts: a directory with ``manifest.json`` and model files (ONNX, JSON).

Loading verifies, before anything reads a model file: the manifest has every
required field, every file path stays inside the artifact directory, every
file's sha256 matches, the schema version is one this library reads. Nothing
from an artifact is ever executed (no pickle, no joblib; ONNX and JSON only).
Writing is atomic: files go to a temporary sibling directory that is renamed
into place, so a crash never leaves a half-written artifact.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from .._errors import OcadArtifactError
from ._atomic import current_umask, fsync_dir, fsync_file

__all__ = [
    "CORE_CALIBRATION_KIND",
    "MANIFEST",
    "REQUIRED_FIELDS",
    "SCHEMA_VERSION",
    "LoadedArtifact",
    "find_artifacts",
    "load_artifact",
    "sha256_file",
    "write_artifact",
]

MANIFEST = "manifest.json"
#: Kind of the artifact holding a calibration document of the core detectors (``Monitor.calibrate``);
#: the Monitor applies it itself (no plugin): see docs/artifacts.md.
CORE_CALIBRATION_KIND = "core-calibration"
SCHEMA_VERSION = 1
REQUIRED_FIELDS = (
    "schema_version", "name", "kind", "version", "created", "format", "files", "inputs",
    "calibration", "library_versions",
)


_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_METRIC = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$")  # MetricSpec's name rule
#: Largest manifest read (a real one is a few kB; anything bigger is not a manifest).
MAX_MANIFEST_BYTES = 16 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@attrs.frozen
class LoadedArtifact:
    """A verified artifact (satisfies :class:`ocad.core.ModelArtifact`)."""

    path: Path
    manifest: Mapping[str, Any]

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    def file(self, role: str) -> Path:
        """Path of the file registered under ``role`` (e.g. ``"model"``)."""
        files = self.manifest["files"]
        if role not in files:
            raise OcadArtifactError(str(self.path), f"no file with role {role!r}; has {sorted(files)}")
        return self.path / files[role]["path"]


def _inside(base: Path, rel: str) -> Path:
    if not isinstance(rel, str) or not rel or os.path.isabs(rel):
        raise ValueError(f"file path {rel!r} must be a relative path")
    p = (base / rel).resolve()
    if base.resolve() not in p.parents:
        raise ValueError(f"file path {rel!r} escapes the artifact directory")
    return p


def _read_manifest(base: Path, label: str) -> Any:
    mf = base / MANIFEST
    if not mf.is_file():
        raise OcadArtifactError(label, f"no {MANIFEST} in {base}")
    # A manifest that is a symlink out of its directory would let an artifact borrow another's identity.
    if mf.is_symlink() and mf.resolve().parent != base.resolve():
        raise OcadArtifactError(label, f"{MANIFEST} is a symlink out of the artifact directory "
                                f"(to {os.readlink(mf)!r})")
    try:
        if mf.stat().st_size > MAX_MANIFEST_BYTES:
            raise OcadArtifactError(label, f"{MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes")
        return json.loads(mf.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OcadArtifactError(label, f"{MANIFEST} is not valid JSON: {exc}") from exc
    except RecursionError:
        raise OcadArtifactError(label, f"{MANIFEST} is nested too deeply to be a manifest") from None


def load_artifact(path: str | os.PathLike[str], *, expected_kind: str | None = None) -> LoadedArtifact:
    """Read and verify the artifact at ``path``.

    Raises :class:`OcadArtifactError` naming the artifact, the manifest field or file, and the problem.
    """
    base = Path(path)
    label = str(base)
    manifest = _read_manifest(base, label)
    if not isinstance(manifest, dict):
        raise OcadArtifactError(label, f"{MANIFEST} must hold a JSON object")
    missing = [f for f in REQUIRED_FIELDS if f not in manifest]
    if missing:
        raise OcadArtifactError(label, f"manifest is missing required field(s) {missing}")
    for key in ("name", "kind", "version"):
        v = manifest[key]
        if not isinstance(v, str) or not v or len(v) > 256 or not v.isprintable():
            raise OcadArtifactError(label, f"manifest field {key!r} = {_short(v)} must be a printable string "
                                    "of 1..256 characters")
    label = f"{manifest['name']}@{manifest['version']} ({base})"
    sv = manifest["schema_version"]
    if not isinstance(sv, int) or sv < 1 or sv > SCHEMA_VERSION:
        raise OcadArtifactError(
            label, f"schema_version {sv!r} is not supported by this ocad-core (reads 1..{SCHEMA_VERSION}); "
            "upgrade ocad-core or re-export the model")
    if expected_kind is not None and manifest["kind"] != expected_kind:
        raise OcadArtifactError(label, f"kind is {manifest['kind']!r}, expected {expected_kind!r}")
    files = manifest["files"]
    if not isinstance(files, dict) or not files:
        raise OcadArtifactError(label, "manifest 'files' must be a non-empty object")
    for role, entry in files.items():
        if not isinstance(entry, dict) or "path" not in entry or "sha256" not in entry:
            raise OcadArtifactError(label, f"files.{role} needs 'path' and 'sha256'")
        want = entry["sha256"]
        if not isinstance(want, str) or not _SHA256.match(want):
            raise OcadArtifactError(label, f"files.{role}.sha256 = {_short(want)} must be 64 lowercase hex digits")
        try:
            p = _inside(base, entry["path"])
        except ValueError as exc:
            raise OcadArtifactError(label, f"files.{role}.path: {exc}") from exc
        if not p.is_file():
            raise OcadArtifactError(label, f"files.{role}: {entry['path']} does not exist")
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise OcadArtifactError(label, f"files.{role}: cannot read {entry['path']}: {exc}") from exc
        digest = hashlib.sha256(data).hexdigest()
        if digest != want:
            raise OcadArtifactError(
                label, f"files.{role}: sha256 mismatch for {entry['path']} (manifest {want[:12]}…, "
                f"file {digest[:12]}…): the file was modified or truncated")
    inputs = manifest["inputs"]
    if not isinstance(inputs, dict) or not isinstance(inputs.get("metrics"), list):
        raise OcadArtifactError(label, "manifest 'inputs' must be an object with a 'metrics' list")
    for i, m in enumerate(inputs["metrics"]):
        if not isinstance(m, str) or not _METRIC.match(m) or m in ("ts", "endpoint_id"):
            raise OcadArtifactError(label, f"manifest field 'inputs.metrics[{i}]' = {_short(m)} is not a valid "
                                    "metric name (letters, digits, '_', '.', '-'; starts with a letter or '_')")
    units = inputs.get("units", {})
    if not isinstance(units, dict):
        raise OcadArtifactError(label, f"manifest field 'inputs.units' = {_short(units)} must be an object")
    return LoadedArtifact(path=base, manifest=manifest)


def _short(v: Any, n: int = 80) -> str:
    r = repr(v)
    return r if len(r) <= n else r[:n] + "…"


def write_artifact(dest: str | os.PathLike[str], manifest: Mapping[str, Any],
                   files: Mapping[str, tuple[str, bytes | Path]]) -> LoadedArtifact:
    """Write an artifact atomically and return it verified.

    ``files`` maps role → (relative path, bytes or a source file). ``manifest``
    gets ``schema_version``, ``created`` (if absent) and ``files`` (hashes) filled in.
    ``dest`` must not exist yet: versions are immutable.
    """
    dest = Path(dest)
    if dest.exists():
        raise OcadArtifactError(str(dest), "destination exists; artifact versions are immutable")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        # mkdtemp creates the directory 0700; an artifact must be as readable as any
        # other file the user writes (the service reading a model store is often another user).
        os.chmod(tmp, 0o777 & ~current_umask())
        entries: dict[str, dict[str, Any]] = {}
        for role, (rel, content) in files.items():
            try:
                target = _inside(tmp, rel)
            except ValueError as exc:
                raise OcadArtifactError(str(dest), f"files.{role}: {exc}") from None
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, (bytes, bytearray)):
                target.write_bytes(content)
            else:
                shutil.copyfile(content, target)
            fsync_file(target)  # the rename below must never publish a torn model file
            entries[role] = {"path": rel, "sha256": sha256_file(target), "bytes": target.stat().st_size}
        m = dict(manifest)
        m["schema_version"] = SCHEMA_VERSION
        m.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
        m["files"] = entries
        data = json.dumps(m, indent=2, sort_keys=True, default=_json_default).encode()
        with open(tmp / MANIFEST, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(tmp)
        try:
            os.replace(tmp, dest)
        except OSError as exc:
            if dest.exists():  # another writer published this version first (no lock held)
                raise OcadArtifactError(str(dest), "destination exists; artifact versions are immutable "
                                        "(another writer published it first)") from exc
            raise
        fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_artifact(dest)


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def find_artifacts(root: str | os.PathLike[str], errors: list[str] | None = None) -> list[Path]:
    """Artifact directories under ``root``: ``root`` itself, its children, or a model store's active versions.

    With ``errors``, a store model whose ``active.json`` is corrupt is skipped and its problem
    appended there; without, it raises :class:`OcadArtifactError`.
    """
    from ._store import ModelStore

    root = Path(root)
    if (root / MANIFEST).is_file():
        return [root]
    if ModelStore.is_store(root):
        return ModelStore(root).active_paths(errors)
    return sorted(p for p in root.iterdir() if (p / MANIFEST).is_file()) if root.is_dir() else []
