"""The public surface of ``ocad.core``: the facade's ``__all__``, light imports, documented hooks."""

from __future__ import annotations

import doctest
import importlib
import inspect
import subprocess
import sys
import types
from importlib import metadata

import pytest

import ocad.core
from ocad.core import hookspecs

HEAVY = ("pandas", "torch", "sklearn", "onnxruntime", "matplotlib")


def test_all_is_sorted_and_unique():
    assert ocad.core.__all__ == sorted(ocad.core.__all__)
    assert len(set(ocad.core.__all__)) == len(ocad.core.__all__)


def test_all_is_complete():
    ns = vars(ocad.core)
    public = {n for n, v in ns.items()
              if not n.startswith("_") and not isinstance(v, types.ModuleType) and n != "annotations"}
    assert public - set(ocad.core.__all__) == set(), "public names missing from __all__"
    assert [n for n in ocad.core.__all__ if n not in ns] == [], "names in __all__ that do not exist"


def test_version_matches_distribution():
    assert ocad.core.__version__ == metadata.version("ocad-core")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_pulls_in_no_heavy_dependency():
    code = ("import sys, ocad.core; "
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
            "print(bad); sys.exit(1 if bad else 0)")
    r = _run(code)
    assert r.returncode == 0, r.stdout + r.stderr


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
                                    "pipeline._alerts", "pipeline._composite"])
def test_docstring_examples_run(module):
    mod = importlib.import_module(f"ocad.core.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
