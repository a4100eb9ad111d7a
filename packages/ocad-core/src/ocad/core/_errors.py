"""One exception hierarchy for the whole SDK, rooted at :class:`OcadError`."""

from __future__ import annotations

from typing import Any

__all__ = [
    "OcadArtifactError",
    "OcadConfigError",
    "OcadDependencyError",
    "OcadError",
    "OcadPluginError",
    "OcadValidationError",
]


class OcadError(Exception):
    """Base class of every error OCAD raises on purpose."""


class OcadValidationError(OcadError, ValueError):
    """A record is structurally invalid (no endpoint id, no usable timestamp, not a mapping).

    Bad *metric values* never raise: they are counted with a reason (see
    ``docs/architecture.md``, "Validation policy"). Only records that cannot be
    attributed to an endpoint and a time raise this error.
    """

    def __init__(self, field: str, value: Any, problem: str, *, index: int | None = None) -> None:
        self.field = field
        self.value = value
        self.problem = problem
        self.index = index
        where = f"record {index}: " if index is not None else ""
        super().__init__(f"{where}field {field!r} = {value!r}: {problem}")


class OcadConfigError(OcadError, ValueError):
    """A configuration key or value is wrong; the message names the key and the value."""


class OcadArtifactError(OcadError):
    """A model artifact cannot be used: tampered, truncated, incompatible, or malformed."""

    def __init__(self, artifact: str, problem: str) -> None:
        self.artifact = artifact
        self.problem = problem
        super().__init__(f"artifact {artifact!r}: {problem}")


class OcadPluginError(OcadError):
    """A plugin failed to load, or a detector broke its contract while scoring."""


class OcadDependencyError(OcadError, ImportError):
    """An optional dependency is missing; the message names the extra that installs it."""

    def __init__(self, module: str, extra: str, purpose: str) -> None:
        self.module = module
        self.extra = extra
        super().__init__(
            f"{purpose} needs the optional dependency {module!r}; "
            f"install it with: pip install \"ocad-core[{extra}]\""
        )


def require(module: str, extra: str, purpose: str) -> Any:
    """Import an optional dependency or raise :class:`OcadDependencyError` naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
        raise OcadDependencyError(module, extra, purpose) from exc
