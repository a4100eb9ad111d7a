"""Build the three distributions and install ocad-core[ml] from them into a fresh venv (``make test``).

1. Build an sdist and a wheel of ocad-core, ocad-detectors-ml and ocad-train from a clean copy of
   each package directory (setuptools' PEP 517 backend, the version pyproject.toml requires), and
   fail on any setuptools deprecation warning printed or raised while building.
2. Check every distribution: LICENSE inside (sdist root; wheel ``.dist-info/licenses/``),
   ``License-Expression: Apache-2.0``, no ``License ::`` classifier, project URLs, a real long
   description, the three pinned to one version.
3. Make a fresh venv, install ``ocad-core[ml]`` from the built wheels only (dependencies from the
   index, through constraints.txt), and run the example of packages/ocad-core/README.md there,
   from a directory outside the repository, so nothing of the source tree is imported.

    python tools/check_packages.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import email
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"ocad-core": "ocad_core", "ocad-detectors-ml": "ocad_detectors_ml", "ocad-train": "ocad_train"}
_BUILD = r"""
import sys, warnings
from setuptools import build_meta
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    name = getattr(build_meta, "build_" + sys.argv[2])(sys.argv[1])
for w in caught:
    print(f"WARNING {w.category.__name__}: {w.message}", file=sys.stderr)
print("BUILT", name)
"""


def fail(msg: str) -> None:
    print(f"check_packages: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def build(pkg: str, work: Path, out: Path) -> tuple[Path, Path]:
    src = work / pkg
    shutil.copytree(ROOT / "packages" / pkg, src,
                    ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".pytest_cache"))
    names = []
    for kind in ("sdist", "wheel"):
        r = subprocess.run([sys.executable, "-c", _BUILD, str(out), kind], cwd=src, capture_output=True,
                           text=True, timeout=300)
        log = r.stdout + r.stderr
        if r.returncode:
            fail(f"building the {kind} of {pkg}:\n{log[-3000:]}")
        bad = [ln for ln in log.splitlines() if re.search(r"deprecat|SetuptoolsWarning|WARNING ", ln, re.I)]
        if bad:
            fail(f"building the {kind} of {pkg} printed warnings:\n" + "\n".join(bad[:20]))
        names.append(next(ln for ln in r.stdout.splitlines() if ln.startswith("BUILT ")).split()[1])
    sdist, wheel = names
    return out / sdist, out / wheel


def check_dist(pkg: str, sdist: Path, wheel: Path, version: str) -> None:
    lic = (ROOT / "LICENSE").read_bytes()
    with tarfile.open(sdist) as t:
        names = t.getnames()
        top = names[0].split("/")[0]
        if f"{top}/LICENSE" not in names:
            fail(f"{sdist.name} has no LICENSE")
        if t.extractfile(f"{top}/LICENSE").read() != lic:  # type: ignore[union-attr]
            fail(f"{sdist.name}: LICENSE differs from the repository's")
    with zipfile.ZipFile(wheel) as z:
        lic_names = [n for n in z.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        if not lic_names or z.read(lic_names[0]) != lic:
            fail(f"{wheel.name} has no (or another) .dist-info/licenses/LICENSE: {z.namelist()[-8:]}")
        meta_name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_bytes(z.read(meta_name))
    if meta["License-Expression"] != "Apache-2.0":
        fail(f"{wheel.name}: License-Expression is {meta['License-Expression']!r}")
    if any(c.startswith("License ::") for c in meta.get_all("Classifier", [])):
        fail(f"{wheel.name}: a License :: classifier next to the SPDX expression")
    if not meta.get_all("Project-URL"):
        fail(f"{wheel.name}: no Project-URL")
    body = meta.get_payload()
    if "See the repository README" in body or len(body) < 800 or "## Install" not in body:
        fail(f"{wheel.name}: the long description is not a real README ({len(body)} characters)")
    if meta["Version"] != version:
        fail(f"{wheel.name}: version {meta['Version']} != {version}")
    for req in meta.get_all("Requires-Dist", []):
        name = re.split(r"[ ;<>=!~\[]", req, maxsplit=1)[0]
        if name in PACKAGES and f"=={version}" not in req:
            fail(f"{wheel.name}: {req!r} is not pinned to {version}")


def readme_example() -> str:
    text = (ROOT / "packages/ocad-core/README.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- readme-example[^>]*-->\s*```python\n(.*?)```", text, re.S)
    if not m:
        fail("packages/ocad-core/README.md has no <!-- readme-example --> python block")
    return m.group(1)  # type: ignore[union-attr]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", help="build here and keep the result (default: a temporary directory)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    version = tomllib.loads((ROOT / "packages/ocad-core/pyproject.toml").read_text())["project"]["version"]
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ocad-packages-"))
    if args.keep and work.exists():
        shutil.rmtree(work)
    out = work / "dist"
    out.mkdir(parents=True)
    built = {}
    for pkg in PACKAGES:
        sdist, wheel = build(pkg, work, out)
        check_dist(pkg, sdist, wheel, version)
        built[pkg] = wheel
        print(f"built and checked {sdist.name}, {wheel.name}")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "-c", str(ROOT / "constraints.txt"),
                        f"{built['ocad-core']}[ml]", str(built["ocad-detectors-ml"])],
                       capture_output=True, text=True, timeout=600)
    if r.returncode:
        fail(f"pip install ocad-core[ml] from the wheels:\n{(r.stdout + r.stderr)[-3000:]}")
    example = work / "readme_example.py"
    example.write_text(readme_example(), encoding="utf-8")
    # Run outside the repository, plugin autoload on: exactly what a user gets.
    r = subprocess.run([str(py), str(example)], cwd=work, capture_output=True, text=True, timeout=300)
    if r.returncode:
        fail(f"the README example failed in the fresh venv:\n{(r.stdout + r.stderr)[-3000:]}")
    where = subprocess.run([str(py), "-c", "import ocad.core, ocad.detectors_ml; "
                            "print(ocad.core.__file__, ocad.core.__version__, ocad.detectors_ml.__version__)"],
                           cwd=work, capture_output=True, text=True, check=True).stdout.split()
    if str(ROOT) in where[0]:
        fail(f"the fresh venv imported ocad.core from the source tree: {where[0]}")
    print(f"README example ran in a fresh venv with ocad-core[ml] {where[1]} / ocad-detectors-ml {where[2]} "
          f"from the wheels ({r.stdout.count(chr(10))} lines of output) in {time.perf_counter() - t0:.0f} s total")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
