"""Offline tooling: evaluation harness, suites and tuning, report, synthetic fleet, shadow runs, file I/O.

Never imported by ``import ocad.core`` (a test enforces it) and never imported by
a runtime module. ``_synthetic`` (generate_fleet), ``_evaluation`` (alert/event
matching), ``_quality`` (suites, evaluate, tune_weights), ``_report`` (HTML
report; ``report`` extra), ``_shadow`` (ShadowRunner) and ``_io`` (CSV/Parquet
records and events; ``io`` extra) and ``_families`` (the test-only scenario families of
the ``generalization`` suite). ``ocad demo`` and ``ocad evaluate`` run on it
without torch, which is why it lives in ocad-core (see docs/architecture.md).
"""

from __future__ import annotations

from ._evaluation import EventMatch, alerts_from_events, match_events, summarize_matches
from ._io import read_records, write_events
from ._quality import Evaluation, Suite, evaluate, load_labelled_file, load_suite, tune_weights
from ._report import write_report
from ._shadow import ShadowReport, ShadowRunner
from ._synthetic import FAULT_TYPES, EndpointInfo, FaultEvent, Fleet, generate_fleet

__all__ = [
    "EndpointInfo",
    "Evaluation",
    "EventMatch",
    "FAULT_TYPES",
    "FaultEvent",
    "Fleet",
    "ShadowReport",
    "ShadowRunner",
    "Suite",
    "alerts_from_events",
    "evaluate",
    "generate_fleet",
    "load_labelled_file",
    "load_suite",
    "match_events",
    "read_records",
    "summarize_matches",
    "tune_weights",
    "write_events",
    "write_report",
]
