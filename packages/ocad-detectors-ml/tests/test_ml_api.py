"""The public facade: a sorted, complete ``__all__``; no torch / sklearn imports in the package source."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import ocad.detectors_ml as pkg


def test_all_is_sorted_and_complete() -> None:
    assert pkg.__all__ == sorted(pkg.__all__)
    public = {n for n, v in vars(pkg).items() if not n.startswith("_") and not inspect.ismodule(v)
              and n not in {"annotations"}}
    assert public == set(pkg.__all__)


def test_no_training_frameworks_in_the_source() -> None:
    src = Path(pkg.__file__).parent
    for f in src.glob("*.py"):
        text = f.read_text()
        assert not re.search(r"^\s*(import|from)\s+(torch|sklearn)\b", text, re.M), f.name
