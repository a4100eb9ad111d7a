"""Shared manifest helpers: provenance (library versions, data fingerprints) and publishing.

Every trainer in ocad-train (TCN forecasters, the Isolation Forest) builds its
manifest with these, so artifacts look alike:

* :func:`library_versions` → ``manifest["library_versions"]``
* :func:`data_fingerprint` → ``manifest["training_data"]["fingerprint"]``
* :func:`publish_artifact` writes the artifact atomically as the next version of a
  :class:`~ocad.core.artifacts.ModelStore` (a candidate, or promoted at once when asked);
  a run whose data fingerprint and metrics equal an existing version's adds no
  version (:func:`duplicate_note` says which).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ocad.core.artifacts import LoadedArtifact, ModelStore, write_artifact

__all__ = ["data_fingerprint", "library_versions", "publish_artifact"]


def _version(dist: str, module: str | None = None) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        pass
    if module:
        try:
            import importlib

            return str(importlib.import_module(module).__version__)
        except Exception:  # noqa: BLE001
            pass
    return "0+unknown"


def library_versions(*extra: str) -> dict[str, str]:
    """Versions of ocad-core, ocad-train, torch, onnx, onnxruntime, numpy (+ ``extra`` distributions).

    Keys use underscores (``ocad_core``); ``extra`` names are added as given,
    e.g. ``library_versions("scikit-learn")``.
    """
    out = {
        "ocad_core": _version("ocad-core", "ocad.core"),
        "ocad_train": _version("ocad-train"),
        "torch": _version("torch", "torch"),
        "onnx": _version("onnx", "onnx"),
        "onnxruntime": _version("onnxruntime", "onnxruntime"),
        "numpy": np.__version__,
    }
    for dist in extra:
        out[dist.replace("-", "_")] = _version(dist)
    return out


def data_fingerprint(arrays: Iterable[np.ndarray], config: Mapping[str, Any] | None = None) -> str:
    """sha256 over arrays (dtype, shape and bytes, in order) and a canonical JSON of ``config``.

    Same training arrays and config ⇒ same fingerprint, on any machine.
    """
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    h.update(json.dumps(config or {}, sort_keys=True, default=str).encode())
    return "sha256:" + h.hexdigest()


def duplicate_note(version: str) -> str:
    return f"same data fingerprint and metrics as {version}; no new version"


def publish_artifact(store: ModelStore | str | os.PathLike[str], manifest: Mapping[str, Any],
                     files: Mapping[str, tuple[str, bytes | Path]], *, version: str | None = None,
                     promote: bool = True, dedupe: bool = True) -> LoadedArtifact:
    """Write ``manifest`` + ``files`` as a new version of ``manifest["name"]`` in a model store.

    The version is ``version`` (it must not exist yet: versions are immutable) or
    the store's next version (``1.0.0``, ``1.1.0``, ...). The write is atomic (:func:`ocad.core.artifacts.write_artifact`):
    if it fails, no version directory appears and the active pointer is unchanged.
    With ``promote`` the new version becomes active only after it was written and
    verified (no quality gate: that is ``ocad models promote``); without it, it is a
    candidate, recorded in the store's log.

    ``dedupe``: when an existing version has the same ``training_data.fingerprint``
    and the same ``metrics`` (a retrain on identical data with identical numbers),
    nothing is written; the store's log records a ``duplicate`` entry and the
    existing version is returned (and promoted if asked).
    """
    st = store if isinstance(store, ModelStore) else ModelStore(store)
    st.init()
    name = str(manifest["name"])
    # The store lock spans choosing the version, writing it and promoting it: two trainers
    # publishing at once get two versions (and two history entries), not one OSError.
    with st.lock():
        same = st.same_as(name, manifest) if dedupe else None
        if same is not None:
            st.record(name, "duplicate", same, note=duplicate_note(same))
            if promote:
                st.promote(name, same)
            return st.load(name, same)
        v = version or st.next_version(name)
        art = write_artifact(st.version_dir(name, str(v)), {**manifest, "version": str(v)}, files)
        if promote:
            st.promote(name, str(v))
        else:
            st.record(name, "candidate", str(v))
    return art
