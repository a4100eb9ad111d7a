"""A fresh process: Monitor.from_defaults() on generated data runs without torch or scikit-learn."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from ocad.detectors_ml import shipped_artifacts

SCRIPT = textwrap.dedent("""
    import json, sys
    import ocad.core
    ort_after_core = "onnxruntime" in sys.modules
    from ocad.core import Monitor
    from ocad.core.tooling import generate_fleet

    mon = Monitor.from_defaults()
    fleet = generate_fleet(n_endpoints=8, duration_s=900, seed=4)
    events = []
    for t in range(fleet.ts.size):
        events += mon.observe_columns(*fleet.columns(t))
    health = mon.health()
    print(json.dumps({
        "torch": sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")),
        "sklearn": sorted(m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")),
        "ort_after_core": ort_after_core,
        "onnxruntime": "onnxruntime" in sys.modules,
        "detectors": [d.name for d in mon.detectors],
        "plugins": [p.name for p in mon.registry.plugins()],
        "failures": [f"{f.plugin} ({f.stage}): {f.error}" for f in mon.registry.failures],
        "artifact_errors": health["artifact_errors"],
        "detector_failures": {n: h["failures"] for n, h in health["detectors"].items() if h["failures"]},
    }))
""")


def test_default_monitor_has_no_torch_and_no_sklearn() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["torch"] == [], f"torch imported (plugins loaded: {r['plugins']})"
    assert r["sklearn"] == [], f"scikit-learn imported (plugins loaded: {r['plugins']})"
    assert not r["ort_after_core"], "importing ocad.core must not import onnxruntime"
    assert "ml" in r["plugins"]
    assert r["failures"] == [] and r["artifact_errors"] == [] and r["detector_failures"] == {}
    arts, errors = shipped_artifacts()
    assert errors == []
    kinds = {a.kind for a in arts}
    if "forecaster" in kinds:
        assert "residual" in r["detectors"] and r["onnxruntime"]
    if "multivariate" in kinds:
        assert "multivariate" in r["detectors"]
    if not arts:  # before the training build: the ML detectors are simply absent
        assert not {"residual", "multivariate"} & set(r["detectors"])
