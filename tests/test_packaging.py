"""Packaging invariants that need no build (the build itself: tools/check_packages.py, run by make test)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ocad-core", "ocad-detectors-ml", "ocad-train")


def _project(pkg: str) -> dict:
    return tomllib.loads((ROOT / "packages" / pkg / "pyproject.toml").read_text(encoding="utf-8"))


def test_one_version_and_lockstep_pins():
    """The version is ocad-core's; the others carry the same and pin each other to it exactly."""
    version = _project("ocad-core")["project"]["version"]
    for pkg in PACKAGES:
        proj = _project(pkg)["project"]
        assert proj["version"] == version, pkg
        reqs = [*proj.get("dependencies", []),
                *(r for extra in proj.get("optional-dependencies", {}).values() for r in extra)]
        for req in reqs:
            name = re.split(r"[ ;<>=!~\[]", req, maxsplit=1)[0]
            if name in PACKAGES:
                assert req == f"{name}=={version}", f"{pkg}: {req!r} must be {name}=={version}"
    for init in ("packages/ocad-detectors-ml/src/ocad/detectors_ml/__init__.py",
                 "packages/ocad-train/src/ocad/train/__init__.py", "packages/ocad-core/src/ocad/core/__init__.py"):
        assert not re.search(r"__version__\s*=\s*[\"']\d+\.", (ROOT / init).read_text()), f"{init}: a version literal"


@pytest.mark.parametrize("pkg", PACKAGES)
def test_license_metadata_and_readme(pkg):
    data = _project(pkg)
    proj = data["project"]
    assert proj["license"] == "Apache-2.0" and proj["license-files"] == ["LICENSE"]
    assert (ROOT / "packages" / pkg / "LICENSE").read_bytes() == (ROOT / "LICENSE").read_bytes()
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]
    assert not any(c.startswith("License ::") for c in proj["classifiers"])
    assert proj["urls"] == _project("ocad-core")["project"]["urls"]
    req = data["build-system"]["requires"]
    assert any(re.fullmatch(r"setuptools>=(\d+)", r) and int(r.split(">=")[1]) >= 77 for r in req), req
    readme = (ROOT / "packages" / pkg / proj["readme"]).read_text(encoding="utf-8")
    assert "## Install" in readme and "## License" in readme and len(readme) > 800


def test_core_readme_has_the_example_ci_runs():
    text = (ROOT / "packages/ocad-core/README.md").read_text(encoding="utf-8")
    assert re.search(r"<!-- readme-example[^>]*-->\s*```python\n.*Monitor", text, re.S)


def test_make_test_keeps_the_example_plugin_out_of_the_demo_venv():
    mk = (ROOT / "Makefile").read_text(encoding="utf-8")
    demo = re.search(r"^\$\(DEMO_VENV\)/\.demo-installed:.*?(?=^\S)", mk, re.S | re.M)
    assert demo and "EXAMPLE" not in demo.group(0)
    assert re.search(r"^demo: \$\(DEMO_VENV\)/\.demo-installed\n\t\$\(DEMO_BIN\)/ocad demo", mk, re.M)
    assert "DEMO_VENV := .venv-demo" in mk and "VENV := .venv\n" in mk
