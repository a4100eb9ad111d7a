"""Plugin registry on pluggy: entry points loaded one by one, failures isolated."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import metadata
from typing import Any

import attrs
import numpy as np
import pluggy

from . import hookspecs
from .._errors import OcadConfigError, OcadPluginError
from .._metrics import MetricRegistry

__all__ = ["DetectorContext", "PluginFailure", "PluginInfo", "PluginRegistry"]

log = logging.getLogger("ocad.plugins")

ENV_DISABLE = "OCAD_DISABLE_PLUGINS"
ENV_AUTOLOAD = "OCAD_PLUGINS_AUTOLOAD"


@attrs.frozen
class PluginFailure:
    """A plugin that failed: at load time (``stage="load"``) or in a hook."""

    plugin: str
    stage: str
    error: str


@attrs.frozen
class PluginInfo:
    name: str
    version: str
    source: str  # "builtin" or the distribution name that declared the entry point


@attrs.frozen
class DetectorContext:
    """What a plugin's ``ocad_detectors`` hook gets to build its detectors.

    ``strict`` is True when the Monitor must refuse to start on any failure: a
    plugin that would skip a broken artifact and go on should raise instead.
    Otherwise it appends a message per skipped artifact to ``artifact_errors``
    (the Monitor's ``health()["artifact_errors"]``) and builds the rest.
    """

    metrics: MetricRegistry
    window: int
    detector_options: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    use_shipped_models: bool = True
    session_options: Mapping[str, Any] = attrs.field(factory=dict)
    strict: bool = False
    artifact_errors: list[str] = attrs.field(factory=list)

    def options(self, name: str) -> dict[str, Any]:
        """The ``[detectors.<name>]`` config table (without ``enabled`` / ``weight``)."""
        d = dict(self.detector_options.get(name, {}))
        d.pop("enabled", None)
        d.pop("weight", None)
        return d


def _env_list(name: str) -> set[str]:
    raw = os.environ.get(name, "")
    return {p.strip() for p in raw.split(",") if p.strip()}


class PluginRegistry:
    """The plugins of one process: built-ins plus the ``ocad`` entry points.

    Parameters
    ----------
    autoload:
        Load entry points. Default: True unless ``OCAD_PLUGINS_AUTOLOAD=0``.
    disabled:
        Entry-point names to skip, added to ``OCAD_DISABLE_PLUGINS``.
    plugins:
        Extra plugin objects (modules or instances with ``@hookimpl`` functions)
        to register directly, e.g. in tests or in an embedding application.
    """

    def __init__(
        self,
        *,
        autoload: bool | None = None,
        disabled: Iterable[str] = (),
        plugins: Iterable[Any] = (),
    ) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []
        self._recent: list[PluginFailure] = []  # failures of the current detector-hook call, repeats included
        self._info: dict[str, PluginInfo] = {}
        from . import _builtins

        self._register(_builtins, "builtin", PluginInfo("builtin", _dist_version("ocad-core"), "builtin"))
        if autoload is None:
            autoload = os.environ.get(ENV_AUTOLOAD, "1").strip().lower() not in {"0", "false", "no"}
        self._disabled = _env_list(ENV_DISABLE) | set(disabled)
        if autoload:
            self._load_entry_points()
        for i, p in enumerate(plugins):
            name = getattr(p, "__name__", None) or f"{type(p).__name__}-{i}"
            self._register(p, name, PluginInfo(name, "", "direct"))

    # -- loading ----------------------------------------------------------
    def _register(self, obj: Any, name: str, info: PluginInfo) -> None:
        try:
            self.pm.register(obj, name=name)
        except Exception as exc:  # noqa: BLE001 - a bad plugin must not stop the others
            self._fail(name, "register", exc)
            return
        self._info[name] = info

    def _load_entry_points(self) -> None:
        # Not pluggy's load_setuptools_entrypoints: one broken plugin would stop them all.
        for ep in metadata.entry_points(group=hookspecs.PROJECT):
            if ep.name in self._disabled or self.pm.has_plugin(ep.name):
                continue
            dist = getattr(ep, "dist", None)
            info = PluginInfo(ep.name, dist.version if dist else "", dist.name if dist else ep.value)
            try:
                obj = ep.load()
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - SystemExit at import too: one plugin never stops the others
                self._fail(ep.name, "load", exc)
                continue
            self._register(obj, ep.name, info)

    def _fail(self, plugin: str, stage: str, exc: BaseException) -> None:
        msg = f"{type(exc).__name__}: {exc}"
        failure = PluginFailure(plugin, stage, msg)
        self._recent.append(failure)
        # Every Monitor built on a shared registry calls the hooks again: report a failure once.
        if failure not in self.failures:
            log.warning("ocad plugin %r failed at %s: %s", plugin, stage, msg)
            self.failures.append(failure)

    # -- queries ----------------------------------------------------------
    def plugins(self) -> list[PluginInfo]:
        """Loaded plugins (built-in first)."""
        return [self._info[n] for n, _ in self.pm.list_name_plugin() if n in self._info]

    def call_each(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation of ``hook`` separately; failures are recorded, not raised."""
        caller = getattr(self.pm.hook, hook)
        results: list[tuple[str, Any]] = []
        # get_hookimpls() is in registration order (pluggy *calls* them in reverse): built-ins
        # first, so a later plugin that reuses a metric or detector name is the one reported.
        for impl in caller.get_hookimpls():
            try:
                res = impl.function(*[kwargs[a] for a in impl.argnames])
                if res is not None and not isinstance(res, (list, tuple)):
                    # A generator (or any lazy iterable) fails when iterated: iterate it here, isolated.
                    res = list(res)
            except KeyboardInterrupt:
                raise
            except OcadConfigError as exc:
                if hook in _CONFIG_HOOKS:
                    # A hook that reads the user's config tables refuses a wrong one: the Monitor
                    # refuses to start, the message naming the plugin and the key.
                    raise OcadConfigError(f"plugin {impl.plugin_name!r} ({hook}): {exc}") from exc
                self._fail(impl.plugin_name, hook, exc)  # no config to blame: a plugin failure
                continue
            except BaseException as exc:  # noqa: BLE001 - SystemExit, GeneratorExit: isolated like any error
                self._fail(impl.plugin_name, hook, exc)
                continue
            if res is not None:
                results.append((impl.plugin_name, res))
        return results

    def metrics(self, extra: Mapping[str, Mapping[str, Any]] | None = None) -> MetricRegistry:
        """All metrics from plugins, plus user metrics from config (``{name: spec-dict}``)."""
        from .._metrics import MetricSpec

        reg = MetricRegistry()
        for plugin, specs in self.call_each("ocad_metrics"):
            for spec in specs:
                try:
                    if not isinstance(spec, MetricSpec):
                        raise TypeError(f"{spec!r:.80} is not a MetricSpec")
                    reg.add(spec)
                except (OcadConfigError, TypeError) as exc:
                    self._fail(plugin, "ocad_metrics", exc)
        for name, data in (extra or {}).items():
            reg.add(MetricSpec.from_mapping(name, data))
        return reg

    def detectors(self, context: DetectorContext, *, strict: bool = False) -> list[Any]:
        """Detectors from every plugin's ``ocad_detectors`` hook, duplicates by name reported."""
        self._recent = []
        return self._collect(self.call_each("ocad_detectors", context=context), strict)

    def artifact_detectors(self, artifacts: Sequence[Any], context: DetectorContext,
                           *, strict: bool = False) -> list[Any]:
        self._recent = []
        return self._collect(
            self.call_each("ocad_artifact_detectors", artifacts=artifacts, context=context), strict)

    def _collect(self, results: list[tuple[str, Any]], strict: bool) -> list[Any]:
        """Validate the hooks' detectors; with ``strict``, any failure of this call (``_recent``) raises."""
        from ._protocols import Detector

        out: list[Any] = []
        seen: set[str] = set()
        for plugin, dets in results:
            try:
                dets = list(dets)
            except Exception as exc:  # noqa: BLE001
                self._fail(plugin, "ocad_detectors", exc)
                continue
            for det in dets:
                problem = _detector_problem(det, Detector)
                if problem is not None:
                    self._fail(plugin, "ocad_detectors", TypeError(problem))
                    continue
                if det.name in seen:
                    self._fail(plugin, "ocad_detectors",
                               ValueError(f"detector name {det.name!r} is already taken"))
                    continue
                seen.add(det.name)
                out.append(det)
        if strict and self._recent:
            raise OcadPluginError("; ".join(f"{f.plugin} ({f.stage}): {f.error}" for f in self._recent))
        return out

    def add_cli_commands(self, subparsers: Any) -> None:
        self.call_each("ocad_cli_commands", subparsers=subparsers)


#: The longest history a plugin's detector may ask for (samples): the Monitor's window store holds
#: ``rows × metrics × window`` float32 for every endpoint, so a plugin must not be able to size it.
MAX_WINDOW = 10_000

#: Hooks that receive the user's configuration (``context``): an OcadConfigError there is the config's.
_CONFIG_HOOKS = frozenset({"ocad_detectors", "ocad_artifact_detectors"})


def _detector_problem(det: Any, protocol: type) -> str | None:
    """Why ``det`` cannot run in a composite (attributes the Protocol check does not look at), or None."""
    try:
        if not isinstance(det, protocol):
            return f"{det!r:.80} does not satisfy the Detector protocol"
        name, window, kind = det.name, det.window, getattr(det, "kind", det.name)
        if not isinstance(name, str) or not name:
            return f"detector name {name!r:.80} must be a non-empty string"
        if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or not 1 <= window <= MAX_WINDOW:
            return f"detector {name!r}: window = {window!r:.80} must be an integer in 1..{MAX_WINDOW}"
        if not isinstance(kind, str) or not kind:
            return f"detector {name!r}: kind = {kind!r:.80} must be a non-empty string"
        if not callable(getattr(det, "score", None)):
            return f"detector {name!r}: score is not callable"
    except Exception as exc:  # noqa: BLE001 - a property that raises is the plugin's problem
        return f"detector attributes cannot be read: {type(exc).__name__}: {exc}"
    return None


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "0+unknown"


_default: PluginRegistry | None = None


def default_registry(factory: Callable[[], PluginRegistry] = PluginRegistry) -> PluginRegistry:
    """The process-wide registry, created on first use."""
    global _default
    if _default is None:
        _default = factory()
    return _default
