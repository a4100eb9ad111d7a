"""The default artifacts shipped as package data (written by the ocad-train build)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocad.core import DetectorContext, MetricRegistry, ORAN_METRICS, load_artifact
from ocad.detectors_ml import build_detectors, models_dir

MAX_BYTES = 2 * 1024 * 1024


def _shipped() -> list[Path]:
    root = models_dir()
    dirs = sorted(p for p in root.iterdir() if (p / "manifest.json").is_file()) if root.is_dir() else []
    if not dirs:
        pytest.skip(f"no shipped models in {root} yet: the ocad-train build writes them there")
    return dirs


def test_every_shipped_manifest_and_hash_verifies_and_all_fit_in_2_mb() -> None:
    dirs = _shipped()
    arts = [load_artifact(d) for d in dirs]  # raises on any hash / field / path problem
    assert {a.kind for a in arts} <= {"forecaster", "multivariate"}
    total = sum(f.stat().st_size for d in dirs for f in d.rglob("*") if f.is_file())
    assert total <= MAX_BYTES, f"shipped models take {total / 1e6:.2f} MB > 2 MB"
    for a, d in zip(arts, dirs):
        listed = {"manifest.json"} | {e["path"] for e in a.manifest["files"].values()}
        stray = {str(f.relative_to(d)) for f in d.rglob("*") if f.is_file()} - listed
        assert not stray, f"{d.name}: files not in the manifest (not hash-checked): {sorted(stray)}"


def test_shipped_models_build_detectors_without_errors() -> None:
    arts = [load_artifact(d) for d in _shipped()]
    ctx = DetectorContext(metrics=MetricRegistry(ORAN_METRICS), window=32, strict=True)
    dets = {d.name: d for d in build_detectors(arts, ctx)}
    if any(a.kind == "forecaster" for a in arts):
        assert "residual" in dets
    if any(a.kind == "multivariate" for a in arts):
        assert "multivariate" in dets
    assert ctx.artifact_errors == []
