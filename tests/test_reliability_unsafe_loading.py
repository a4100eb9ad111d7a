"""No unsafe loading: an AST scan of every runtime module for code-executing deserialisers.

Guarantee (docs/reliability.md, G7): nothing OCAD ships can run code hidden in
a file it reads. The scanner flags

* an import of ``pickle`` / ``cPickle`` / ``_pickle`` / ``joblib`` / ``dill`` /
  ``cloudpickle`` / ``marshal`` / ``shelve``;
* a call of the builtins ``eval`` / ``exec`` (``model.eval()``, torch's
  train/eval switch, is an attribute call and is fine), ``builtins.eval`` /
  ``builtins.exec``, and ``pandas.read_pickle`` (any ``*.read_pickle``);
* ``torch.load(...)`` without ``weights_only=True``;
* ``numpy.load(...)`` without ``allow_pickle=False`` (numpy's default is safe
  today, but the guarantee must not depend on a default).

The scanner is tested on planted files first, so that a scan that finds
nothing means something.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Runtime packages (what a detecting process imports) and the trainer (torch.load of checkpoints).
SCANNED = [ROOT / "packages" / p / "src" for p in ("ocad-core", "ocad-detectors-ml", "ocad-train")] + \
    [ROOT / "examples" / "ocad-plugin-example" / "src"]

BANNED_MODULES = {"pickle", "cPickle", "_pickle", "joblib", "dill", "cloudpickle", "marshal", "shelve"}
BANNED_BUILTINS = {"eval", "exec"}


def _kw_is(call: ast.Call, name: str, value: object) -> bool:
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is value
               for k in call.keywords)


def scan_source(source: str, filename: str = "<src>") -> list[str]:
    """Findings ``"file:line: problem"`` for one module's source."""
    tree = ast.parse(source, filename=filename)
    findings: list[str] = []
    # Names bound to the numpy / torch modules and to their ``load`` functions in this module.
    aliases: dict[str, str] = {}
    load_funcs: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                top = a.name.split(".")[0]
                if top in BANNED_MODULES:
                    findings.append(f"{filename}:{node.lineno}: import {a.name}")
                if a.name in ("numpy", "torch"):
                    aliases[a.asname or a.name] = a.name
        elif isinstance(node, ast.ImportFrom):
            mod = (node.module or "").split(".")[0]
            if mod in BANNED_MODULES:
                findings.append(f"{filename}:{node.lineno}: from {node.module} import ...")
            for a in node.names:
                if a.name in BANNED_MODULES:
                    findings.append(f"{filename}:{node.lineno}: from {node.module} import {a.name}")
                if node.module in ("numpy", "torch") and a.name == "load":
                    load_funcs[a.asname or a.name] = node.module
                if node.module == "builtins" and a.name in BANNED_BUILTINS:
                    findings.append(f"{filename}:{node.lineno}: from builtins import {a.name}")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        lib = None
        if isinstance(f, ast.Name):
            if f.id in BANNED_BUILTINS:
                findings.append(f"{filename}:{node.lineno}: {f.id}() call")
            lib = load_funcs.get(f.id)
        elif isinstance(f, ast.Attribute):
            if f.attr == "read_pickle":
                findings.append(f"{filename}:{node.lineno}: read_pickle() call")
            if isinstance(f.value, ast.Name):
                if f.value.id == "builtins" and f.attr in BANNED_BUILTINS:
                    findings.append(f"{filename}:{node.lineno}: builtins.{f.attr}() call")
                if f.attr == "load":
                    lib = aliases.get(f.value.id)
        if lib == "torch" and not _kw_is(node, "weights_only", True):
            findings.append(f"{filename}:{node.lineno}: torch.load without weights_only=True")
        if lib == "numpy" and not _kw_is(node, "allow_pickle", False):
            findings.append(f"{filename}:{node.lineno}: numpy.load without allow_pickle=False")
    return findings


def scan_tree(roots: list[Path]) -> tuple[list[str], int]:
    findings: list[str] = []
    n = 0
    for root in roots:
        for p in sorted(root.rglob("*.py")):
            n += 1
            name = str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)
            findings += scan_source(p.read_text(encoding="utf-8"), name)
    return findings, n


BAD = {
    "import pickle": "import pickle",
    "import pickle as pk": "import pickle",
    "from pickle import loads": "from pickle import",
    "import joblib": "import joblib",
    "from joblib import load": "from joblib import",
    "import cloudpickle": "import cloudpickle",
    "import marshal": "import marshal",
    "from shelve import open": "from shelve import",
    "import dill.settings": "import dill.settings",
    "eval('1 + 1')": "eval() call",
    "exec('x = 1')": "exec() call",
    "import builtins\nbuiltins.exec('x = 1')": "builtins.exec() call",
    "from builtins import eval as e": "from builtins import eval",
    "import pandas as pd\npd.read_pickle('f')": "read_pickle() call",
    "import torch\ntorch.load('m.pt')": "torch.load without weights_only=True",
    "import torch as T\nT.load('m.pt', weights_only=False)": "torch.load without weights_only=True",
    "from torch import load\nload('m.pt', map_location='cpu')": "torch.load without weights_only=True",
    "import numpy as np\nnp.load('a.npz')": "numpy.load without allow_pickle=False",
    "import numpy\nnumpy.load('a.npy', allow_pickle=True)": "numpy.load without allow_pickle=False",
    "from numpy import load as npl\nnpl('a.npy')": "numpy.load without allow_pickle=False",
}

GOOD = [
    "model.eval()",
    "import torch\ntorch.load('m.pt', map_location='cpu', weights_only=True)",
    "import numpy as np\nwith np.load('a.npz', allow_pickle=False) as z:\n    pass",
    "import json\njson.load(open('f'))",
    "x = 'import pickle'  # a string, not an import",
    "def evaluate(x):\n    return x\nevaluate(1)",
]


@pytest.mark.parametrize("source, problem", list(BAD.items()), ids=list(range(len(BAD))))
def test_scanner_flags_a_planted_file(tmp_path, source, problem):
    bad = tmp_path / "pkg" / "planted.py"
    bad.parent.mkdir()
    bad.write_text(textwrap.dedent(source) + "\n", encoding="utf-8")
    findings = scan_source(bad.read_text(), str(bad))
    assert len(findings) == 1, findings
    assert problem in findings[0] and str(bad) in findings[0]
    # The same file inside a scanned tree fails the tree scan.
    tree_findings, n = scan_tree([tmp_path / "pkg"])
    assert tree_findings == findings and n == 1


@pytest.mark.parametrize("source", GOOD)
def test_scanner_accepts_safe_code(source):
    assert scan_source(source) == []


def test_runtime_packages_load_nothing_unsafely():
    findings, n_files = scan_tree(SCANNED)
    assert n_files >= 60  # the scan really walked the packages
    assert findings == []


def test_scanner_sees_the_guarded_calls_that_exist():
    """The packages do call np.load and torch.load: the scanner must be looking at those calls."""
    src = (ROOT / "packages/ocad-train/src/ocad/train/_tcn.py").read_text(encoding="utf-8")
    assert scan_source(src.replace("weights_only=True", "weights_only=False"))
    src = (ROOT / "packages/ocad-core/src/ocad/core/_monitor.py").read_text(encoding="utf-8")
    assert scan_source(src.replace("allow_pickle=False", "allow_pickle=True"))
