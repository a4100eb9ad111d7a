"""The public surface of ``ocad.core``: the facades' ``__all__``, deprecation shims, import direction,
light imports, documented hooks."""

from __future__ import annotations

import ast
import doctest
import importlib
import inspect
import subprocess
import sys
import types
import warnings
from importlib import metadata, resources
from pathlib import Path

import pytest

import ocad.core
from ocad.core.plugins import hookspecs

HEAVY = ("pandas", "torch", "sklearn", "onnxruntime", "matplotlib")
FACADES = ["ocad.core", "ocad.core.artifacts", "ocad.core.detectors", "ocad.core.pipeline", "ocad.core.plugins",
           "ocad.core.tooling"]
CORE_DIR = Path(ocad.core.__file__).parent

#: What each facade must offer (the names are its contract; a missing one fails here).
EXPECTED = {
    "ocad.core": {
        "Alert", "AlertEvent", "AlertPolicyConfig", "Evidence", "MetricKind", "MetricSpec", "Monitor", "MonitorConfig",
        "OcadArtifactError", "OcadConfigError", "OcadDependencyError", "OcadError", "OcadPluginError",
        "OcadValidationError", "export_state", "import_state", "reset_state",
        # endpoint labels (#13): Monitor(labels=...), site-wide grouping of open alerts
        "EndpointLabels", "group_alerts", "load_labels",
    },
    "ocad.core.plugins": {
        "hookimpl", "hookspec", "Detector", "ModelArtifact", "Scaler", "DetectorContext", "PluginRegistry",
        "PluginInfo", "PluginFailure", "MetricSpec", "MetricKind", "MetricRegistry", "ORAN_METRICS", "DetectorView",
        "DetectorOutput", "FeatureFrame", "Evidence", "CalibratedDetector", "RawScores", "Calibration",
    },
    "ocad.core.artifacts": {
        "LoadedArtifact", "find_artifacts", "load_artifact", "write_artifact", "ModelStore", "RobustScaler",
        "StandardScaler", "scaler_from_dict",
    },
    "ocad.core.tooling": {
        "evaluate", "load_suite", "tune_weights", "write_report", "generate_fleet", "Fleet", "FaultEvent",
        "EndpointInfo", "FAULT_TYPES", "ShadowRunner", "ShadowReport", "match_events", "alerts_from_events",
        "summarize_matches", "EventMatch", "Evaluation", "Suite", "load_labelled_file", "read_records",
        "write_events",
    },
    "ocad.core.detectors": {
        "CalibratedDetector", "Calibration", "ChangepointDetector", "ConcurrencyDetector", "ContinuityDetector",
        "DEFAULT_THRESHOLDS", "RawScores", "RuleDetector", "SpikeDetector", "pelt", "pelt_last_change",
    },
    "ocad.core.pipeline": {
        "Alert", "AlertEvent", "AlertPolicy", "AlertPolicyConfig", "Batch", "CompositeDetector", "CompositeOutput",
        "DetectorHealth", "FeatureEngine", "ValidationStats", "Validator", "WindowStore", "export_state",
        "import_state", "reset_state",
    },
}

#: ``ocad.core.__all__`` before the layout change (issue #14): every name must still resolve.
OLD_ALL = {
    "Alert", "AlertEvent", "AlertPolicy", "AlertPolicyConfig", "Batch", "CalibratedDetector", "Calibration",
    "ChangepointDetector", "CompositeDetector", "CompositeOutput", "ConcurrencyDetector", "ContinuityDetector",
    "DEFAULT_THRESHOLDS", "Detector", "DetectorContext", "DetectorHealth", "DetectorOutput", "DetectorView",
    "EndpointInfo", "Evaluation", "EventMatch", "Evidence", "FAULT_TYPES", "FaultEvent", "FeatureEngine",
    "FeatureFrame", "Fleet", "LoadedArtifact", "MetricKind", "MetricRegistry", "MetricSpec", "ModelArtifact",
    "ModelStore", "Monitor", "MonitorConfig", "ORAN_METRICS", "OcadArtifactError", "OcadConfigError",
    "OcadDependencyError", "OcadError", "OcadPluginError", "OcadValidationError", "PluginFailure", "PluginInfo",
    "PluginRegistry", "RawScores", "RobustScaler", "RuleDetector", "Scaler", "ShadowReport", "ShadowRunner",
    "SpikeDetector", "StandardScaler", "Suite", "ValidationStats", "Validator", "WindowStore", "alerts_from_events",
    "evaluate", "export_state", "find_artifacts", "generate_fleet", "hookimpl", "import_state", "load_artifact",
    "load_labelled_file", "load_suite", "match_events", "pelt", "pelt_last_change", "read_records", "reset_state",
    "scaler_from_dict", "summarize_matches", "tune_weights", "write_artifact", "write_events", "write_report",
}


@pytest.mark.parametrize("name", FACADES)
def test_all_is_sorted_and_unique(name):
    mod = importlib.import_module(name)
    assert mod.__all__ == sorted(mod.__all__)
    assert len(set(mod.__all__)) == len(mod.__all__)


@pytest.mark.parametrize("name", FACADES)
def test_all_is_complete(name):
    mod = importlib.import_module(name)
    ns = vars(mod)
    public = {n for n, v in ns.items()
              if not n.startswith("_") and not isinstance(v, types.ModuleType) and n != "annotations"}
    assert public - set(mod.__all__) == set(), "public names missing from __all__"
    assert [n for n in mod.__all__ if n not in ns] == [], "names in __all__ that do not exist"
    assert set(mod.__all__) == EXPECTED[name]


def test_integrations_package_exports_nothing_itself():
    # Its modules (alertmanager, prometheus) are imported by name; once imported they are attributes.
    mod = importlib.import_module("ocad.core.integrations")
    assert not [n for n, v in vars(mod).items() if not n.startswith("_") and not isinstance(v, types.ModuleType)]


def test_version_matches_distribution():
    assert ocad.core.__version__ == metadata.version("ocad-core")


def test_every_old_name_still_resolves():
    new_since = {"EndpointLabels", "group_alerts", "load_labels"}  # added after the layout change (#13)
    assert OLD_ALL | new_since == set(ocad.core.__all__) | set(ocad.core._MOVED)
    assert not set(ocad.core.__all__) & set(ocad.core._MOVED)


@pytest.mark.parametrize("name", sorted(ocad.core._MOVED))
def test_moved_name_warns_and_is_the_same_object(name):
    home = ocad.core._MOVED[name]
    assert name in importlib.import_module(home).__all__
    with pytest.warns(DeprecationWarning, match=rf"from {home} import {name}`"):
        old = getattr(ocad.core, name)
    assert old is getattr(importlib.import_module(home), name)


def test_from_import_of_a_moved_name_warns():
    with pytest.warns(DeprecationWarning, match="ocad.core.pipeline"):
        from ocad.core import WindowStore
    from ocad.core.pipeline import WindowStore as new
    assert WindowStore is new


def test_facade_names_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for n in ocad.core.__all__:
            getattr(ocad.core, n)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        ocad.core.no_such_name  # noqa: B018


def test_hookspecs_shim_reexports_the_plugin_contract():
    import ocad.core.hookspecs as shim

    assert shim.hookimpl is hookspecs.hookimpl and shim.hookspec is hookspecs.hookspec
    assert shim.PROJECT == hookspecs.PROJECT
    assert shim.ocad_detectors is hookspecs.ocad_detectors


def test_registry_registers_the_specs_of_the_plugins_module():
    from ocad.core.plugins import PluginRegistry

    reg = PluginRegistry(autoload=False)
    assert {h for h in dir(reg.pm.hook) if h.startswith("ocad_")} == set(HOOKS)
    assert reg.pm.hook.ocad_detectors.spec.function is hookspecs.ocad_detectors


def test_package_data_resolves():
    root = resources.files("ocad.core")
    assert root.joinpath("data/calibration.json").is_file()
    assert root.joinpath("data/suites/default.toml").is_file()


# -- import direction ---------------------------------------------------------------------------------------------

_NOT_RUNTIME_DIRS = {"tooling", "integrations"}
_NOT_RUNTIME_FILES = {"cli.py", "spark.py", "testing.py"}
_FORBIDDEN = ("ocad.core.tooling", "ocad.core.integrations")


def _runtime_modules() -> list[Path]:
    out = []
    for p in sorted(CORE_DIR.rglob("*.py")):
        rel = p.relative_to(CORE_DIR)
        if rel.parts[0] in _NOT_RUNTIME_DIRS or (len(rel.parts) == 1 and rel.name in _NOT_RUNTIME_FILES):
            continue
        out.append(p)
    return out


def _imported_modules(path: Path) -> list[str]:
    """Absolute names of everything ``path`` imports (module level and inside functions)."""
    rel = path.relative_to(CORE_DIR.parent.parent)  # ocad/core/...
    package = ".".join(rel.parts[:-1])  # the package the module is in (for __init__, the package itself)
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            found.append(mod)
            found += [f"{mod}.{a.name}" for a in node.names]  # ``from ocad.core import tooling``
    return found


def test_runtime_module_list_is_the_runtime():
    names = {p.relative_to(CORE_DIR).as_posix() for p in _runtime_modules()}
    assert {"__init__.py", "_monitor.py", "pipeline/_alerts.py", "plugins/_registry.py", "hookspecs.py"} <= names
    assert not {n for n in names if n.startswith(("tooling/", "integrations/")) or n in _NOT_RUNTIME_FILES}


def test_the_import_resolver_sees_relative_imports():
    mods = _imported_modules(CORE_DIR / "tooling" / "_quality.py")
    assert "ocad.core.pipeline._alerts" in mods and "ocad.core.tooling._synthetic" in mods


@pytest.mark.parametrize("path", _runtime_modules(), ids=lambda p: p.relative_to(CORE_DIR).as_posix())
def test_no_runtime_module_imports_tooling_or_integrations(path):
    bad = [m for m in _imported_modules(path) if m == _FORBIDDEN[0] or m == _FORBIDDEN[1]
           or m.startswith(tuple(f + "." for f in _FORBIDDEN))]
    assert bad == [], f"{path.relative_to(CORE_DIR)} imports {bad}: runtime must not depend on tooling"


#: The layering inside the runtime (docs/architecture.md): what each group may import of ocad.core.
_DATA_MODEL = {"_errors", "_labels", "_metrics", "_time", "_view"}
_ALLOWED = {
    "data model": _DATA_MODEL,
    "detectors": _DATA_MODEL | {"detectors"},
    "plugins": _DATA_MODEL | {"detectors", "plugins"},
    "artifacts": _DATA_MODEL | {"artifacts"},
    "pipeline": _DATA_MODEL | {"plugins", "pipeline"},
}


def _group(path: Path) -> str | None:
    rel = path.relative_to(CORE_DIR)
    if len(rel.parts) == 1:
        return "data model" if rel.stem in _DATA_MODEL else None
    return rel.parts[0] if rel.parts[0] in _ALLOWED else None


@pytest.mark.parametrize("path", [p for p in _runtime_modules() if _group(p)],
                         ids=lambda p: p.relative_to(CORE_DIR).as_posix())
def test_layering_inside_the_runtime(path):
    used = {m.split(".")[2] for m in _imported_modules(path) if m.startswith("ocad.core.")}
    bad = used - _ALLOWED[_group(path)]
    assert bad == set(), f"{path.relative_to(CORE_DIR)} ({_group(path)}) imports {sorted(bad)}"


# -- light imports -------------------------------------------------------------------------------------------------

def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("module", ["ocad.core", "ocad.core.pipeline", "ocad.core.detectors", "ocad.core.plugins",
                                    "ocad.core.artifacts", "ocad.core.hookspecs"])
def test_import_pulls_in_no_heavy_dependency_and_no_tooling(module):
    code = (f"import sys, {module}; "
            f"bad = [m for m in sys.modules if m.split('.')[0] in {HEAVY!r} "
            "or m.startswith(('ocad.core.tooling', 'ocad.core.integrations'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = _run(code)
    assert r.returncode == 0, r.stdout + r.stderr


def test_tooling_import_pulls_in_no_heavy_dependency():
    code = ("import sys, ocad.core.tooling; "
            f"bad = [m for m in {HEAVY!r} if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = _run(code)
    assert r.returncode == 0, r.stdout + r.stderr


def test_core_monitor_runs_without_torch_or_sklearn():
    code = ("import sys; from ocad.core import Monitor; "
            "m = Monitor({'monitor': {'use_shipped_models': False}}); "
            "m.score_frame([{'endpoint_id': 'a', 'ts': float(i), 'udp_echo_rtt_ms': 4.0} for i in range(40)], "
            "as_frame=False); "
            "bad = [x for x in ('torch', 'sklearn', 'matplotlib', 'pandas') if x in sys.modules]; "
            "bad += [x for x in sys.modules if x.startswith('ocad.core.tooling')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = _run(code)
    assert r.returncode == 0, r.stdout + r.stderr


# -- hooks and errors ----------------------------------------------------------------------------------------------

HOOKS = [n for n, f in vars(hookspecs).items() if callable(f) and hasattr(f, f"{hookspecs.PROJECT}_spec")]


def test_the_hooks_are_the_documented_ones():
    assert sorted(HOOKS) == ["ocad_artifact_detectors", "ocad_cli_commands", "ocad_detectors", "ocad_metrics"]


@pytest.mark.parametrize("name", HOOKS)
def test_every_hookspec_is_documented_at_length(name):
    doc = inspect.getdoc(getattr(hookspecs, name)) or ""
    assert len(doc) > 200, f"{name}: the hook docstring is the plugin author's documentation"
    assert name.startswith("ocad_")


def test_error_hierarchy():
    errs = [getattr(ocad.core, n) for n in ocad.core.__all__ if n.startswith("Ocad") and n.endswith("Error")]
    assert len(errs) == 6 and all(issubclass(e, ocad.core.OcadError) for e in errs)
    assert issubclass(ocad.core.OcadValidationError, ValueError)
    assert issubclass(ocad.core.OcadConfigError, ValueError)
    assert issubclass(ocad.core.OcadDependencyError, ImportError)


@pytest.mark.parametrize("module", ["_metrics", "pipeline._features", "detectors._calibration", "artifacts._scalers",
                                    "_monitor", "_view", "detectors._rules", "pipeline._validate", "pipeline._window",
                                    "pipeline._alerts", "pipeline._composite", "_labels"])
def test_docstring_examples_run(module):
    mod = importlib.import_module(f"ocad.core.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
