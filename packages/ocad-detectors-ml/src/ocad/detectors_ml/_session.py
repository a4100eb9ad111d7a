"""onnxruntime sessions: options from the Monitor's ``[onnxruntime]`` table, models from verified bytes.

Defaults and why
----------------
``intra_op_num_threads = 1``
    A tick is small (one ``(N, W)`` batch per model, N = the endpoints of one
    tick) and OCAD's reference host has two cores shared with the rest of the
    NOC tool. Measured there (``benchmarks/ort_threads.py``, numbers in the
    package README): a second thread does not reliably shorten a tick (equal at
    100 endpoints, sometimes faster, sometimes slower at 1000-3000 on a busy
    host) and costs up to 20 % more CPU. Shard endpoints over processes (the
    Monitor is built for it) to use more cores.
``inter_op_num_threads = 1``
    The graphs are a single chain; parallel execution of independent nodes has
    nothing to run in parallel.
``providers = ["CPUExecutionProvider"]``
    Deterministic, always present. A provider that is not installed is a config
    error naming the available ones, not a silent fallback.
``graph_optimization_level = "all"``
    onnxruntime's default; the export parity checks in ocad-train run with it.
``allow_spinning = false``
    Only matters with more than one intra-op thread: idle pool threads then
    sleep instead of busy-waiting (onnxruntime's default spinning made ticks
    2-4x slower on the shared host).

Memory (fixed, not configurable): the sessions of a process share one CPU arena
(registered once, ``session.use_env_allocators``), capped at 4 GiB
(``OCAD_ORT_ARENA_MAX_BYTES``: a graph cannot allocate the host away at run time) and do not pre-plan a block for
a whole run (``enable_mem_pattern = false``). Each session's own arena plus its
memory pattern held the largest batch it had seen three times over (one per TCN):
a Monitor of 1 000 endpoints peaked at 173 MB RSS, 110 MB with these settings, at
the same speed (``benchmarks/compare.py``, ``docs/performance.md``).

Every session is created from the model file's *bytes* after their sha256 was
checked against the manifest again, so the bytes that run are the bytes that
were verified (no window between ``load_artifact`` and the session reading the
path), and a model cannot pull in external data files or custom-op libraries:
the bytes are checked first (``ocad.core.artifacts._onnx_scan``: no tensor with
external data, no operator domain but ONNX / ONNX-ML, no huge declared shape).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from typing import Any

import attrs

from ocad.core import OcadArtifactError, OcadConfigError
from ocad.core.artifacts import LoadedArtifact
from ocad.core.artifacts._onnx_scan import check_onnx_bytes

__all__ = ["DEFAULT_SESSION_OPTIONS", "SessionConfig", "load_session"]

_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
           "all": "ORT_ENABLE_ALL"}

DEFAULT_SESSION_OPTIONS: Mapping[str, Any] = {
    "intra_op_num_threads": 1,
    "inter_op_num_threads": 1,
    "providers": ("CPUExecutionProvider",),
    "graph_optimization_level": "all",
    "allow_spinning": False,
}


def _threads(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise OcadConfigError(f"onnxruntime.{name} = {v!r}: must be an integer >= 1")
    return v


def _providers(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, (list, tuple)) or not v or not all(isinstance(p, str) and p for p in v):
        raise OcadConfigError(f"onnxruntime.providers = {v!r}: must be a non-empty list of provider names")
    return tuple(v)


def _level(v: Any) -> str:
    key = str(v).lower().removeprefix("ort_").removeprefix("enable_")
    if key == "disable_all":
        key = "disable"
    if key not in _LEVELS:
        raise OcadConfigError(f"onnxruntime.graph_optimization_level = {v!r}: use one of {sorted(_LEVELS)}")
    return key


def _bool(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise OcadConfigError(f"onnxruntime.{name} = {v!r}: must be true or false")
    return v


@attrs.frozen
class SessionConfig:
    """Validated onnxruntime session options (the ``[onnxruntime]`` config table).

    >>> SessionConfig.from_mapping({"intra_op_num_threads": 2}).intra_op_num_threads
    2
    """

    intra_op_num_threads: int = 1
    inter_op_num_threads: int = 1
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    graph_optimization_level: str = "all"
    allow_spinning: bool = False

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any] | None) -> SessionConfig:
        """Build from the config table; unknown keys and bad values raise :class:`OcadConfigError`."""
        d = dict(d or {})
        allowed = set(DEFAULT_SESSION_OPTIONS)
        bad = set(d) - allowed
        if bad:
            raise OcadConfigError(f"onnxruntime: unknown key(s) {sorted(bad)}; allowed: {sorted(allowed)}")
        kw: dict[str, Any] = {}
        for k in ("intra_op_num_threads", "inter_op_num_threads"):
            if k in d:
                kw[k] = _threads(k, d[k])
        if "providers" in d:
            kw["providers"] = _providers(d["providers"])
        if "graph_optimization_level" in d:
            kw["graph_optimization_level"] = _level(d["graph_optimization_level"])
        if "allow_spinning" in d:
            kw["allow_spinning"] = _bool("allow_spinning", d["allow_spinning"])
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        d = attrs.asdict(self)
        d["providers"] = list(self.providers)
        return d

    def session_options(self) -> Any:
        """An ``onnxruntime.SessionOptions`` with these settings."""
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = self.intra_op_num_threads
        so.inter_op_num_threads = self.inter_op_num_threads
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[self.graph_optimization_level])
        so.log_severity_level = 3  # errors only: onnxruntime's warnings go to stderr, not to logging
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.allow_spinning else "0")
        # One arena for every session of the process, no per-run memory plan (see module docs).
        so.enable_mem_pattern = False
        if _shared_cpu_arena():
            so.add_session_config_entry("session.use_env_allocators", "1")
        return so


#: Default cap of the shared CPU arena: every tensor of every session of the process together.
ARENA_MAX_BYTES = 4 << 30
ENV_ARENA_MAX = "OCAD_ORT_ARENA_MAX_BYTES"


def arena_max_bytes() -> int:
    """The arena cap: ``OCAD_ORT_ARENA_MAX_BYTES`` (bytes, > 0) or :data:`ARENA_MAX_BYTES`.

    A graph can build a huge tensor at run time (``ConstantOfShape`` of a large shape) that no
    check of its bytes sees; with the cap, onnxruntime refuses the allocation ("Available memory
    of ... is smaller than requested bytes"), which is a detector failure, instead of the process
    running out of memory.
    """
    raw = os.environ.get(ENV_ARENA_MAX, "").strip()
    if raw:
        try:
            v = int(raw)
            if v > 0:
                return v
        except ValueError:
            pass
        raise OcadConfigError(f"{ENV_ARENA_MAX}={raw!r}: must be a number of bytes > 0")
    return ARENA_MAX_BYTES


_arena_lock = threading.Lock()
_arena_registered: bool | None = None


def _shared_cpu_arena() -> bool:
    """Register the process-wide CPU arena once; False when this onnxruntime cannot."""
    global _arena_registered
    with _arena_lock:
        if _arena_registered is None:
            import onnxruntime as ort

            cap = arena_max_bytes()  # a bad OCAD_ORT_ARENA_MAX_BYTES is an error, not an uncapped arena
            try:
                info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
                                         ort.OrtMemType.DEFAULT)
                ort.create_and_register_allocator(info, ort.OrtArenaCfg(cap, -1, -1, -1))
                _arena_registered = True
            except Exception:  # noqa: BLE001 - an older onnxruntime: per-session arenas, as before
                _arena_registered = False
        return _arena_registered


_provider_lock = threading.Lock()


def _check_providers(providers: tuple[str, ...]) -> None:
    import onnxruntime as ort

    with _provider_lock:
        have = ort.get_available_providers()
    missing = [p for p in providers if p not in have]
    if missing:
        raise OcadConfigError(
            f"onnxruntime.providers: {missing} not available in this onnxruntime build; available: {have}")


def load_session(artifact: LoadedArtifact, config: SessionConfig, role: str = "model") -> Any:
    """An ``InferenceSession`` for the artifact's ``role`` file, from re-verified bytes.

    Raises :class:`OcadArtifactError` if the file changed since it was verified or
    onnxruntime cannot load it, :class:`OcadConfigError` for unavailable providers.
    """
    import onnxruntime as ort

    path = artifact.file(role)
    entry = artifact.manifest["files"][role]
    label = f"{artifact.name}@{artifact.version} ({artifact.path})"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OcadArtifactError(label, f"cannot read {entry['path']}: {exc}") from exc
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise OcadArtifactError(label, f"{entry['path']} changed after it was verified (sha256 mismatch)")
    try:  # load_artifact checked it too; a LoadedArtifact built by hand did not go through it
        check_onnx_bytes(data)
    except ValueError as exc:
        raise OcadArtifactError(label, f"refused to load {entry['path']}: {exc}") from None
    _check_providers(config.providers)
    try:
        return ort.InferenceSession(data, sess_options=config.session_options(),
                                    providers=list(config.providers))
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own, unexported exception types
        raise OcadArtifactError(label, f"onnxruntime cannot load {entry['path']}: {exc}") from exc
