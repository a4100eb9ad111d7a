"""Reading sample files for ``ocad detect`` and writing alert files.

CSV needs nothing beyond the standard library; Parquet needs the ``io`` extra
(pandas + pyarrow). Both wide (``endpoint_id, ts, <metric>...``) and long
(``endpoint_id, ts, metric, value``) layouts are accepted. CSV cells are parsed
as numbers; an empty cell is missing; a cell that is not a number is passed on
as text, so validation rejects and counts it (``wrong_type``) instead of the
reader guessing.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..pipeline._alerts import AlertEvent
from .._errors import OcadValidationError, require

__all__ = [
    "FAILURE_TS_COLUMN",
    "FAULT_TYPE_COLUMN",
    "LABEL_COLUMNS",
    "NORMAL_FAULT_TYPES",
    "fault_type_name",
    "read_records",
    "write_events",
]

# -- the labelled-file format (one definition for simulate, evaluate, tune-weights and train) --
#: The label column: the fault type of the sample, or one of NORMAL_FAULT_TYPES when normal.
FAULT_TYPE_COLUMN = "fault_type"
#: Optional: the hard-failure time (epoch s) of the gradual fault the sample belongs to.
FAILURE_TS_COLUMN = "failure_ts"
#: ``fault_type`` cells that mean "normal" (compared case-insensitively, stripped); missing too.
NORMAL_FAULT_TYPES = ("", "none", "normal")
#: Columns that carry labels, not measurements: read_records drops them (use them for evaluation).
LABEL_COLUMNS = frozenset({FAULT_TYPE_COLUMN, "label", FAILURE_TS_COLUMN})


def fault_type_name(v: Any) -> str:
    """The fault type of a ``fault_type`` cell: ``""`` for normal (empty, missing, "none", "normal").

    >>> [fault_type_name(v) for v in ("", None, float("nan"), " None ", "normal", "link_flap")]
    ['', '', '', '', '', 'link_flap']
    """
    if v is None or (isinstance(v, float) and v != v):
        return ""
    s = str(v).strip()
    return "" if s.lower() in NORMAL_FAULT_TYPES else s


def _cell(v: str) -> Any:
    if v == "" or v.lower() in ("nan", "null", "none"):
        return None
    try:
        return float(v)
    except ValueError:
        return v


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All records of a CSV or Parquet file, in wide record form."""
    p = Path(path)
    if not p.is_file():
        raise OcadValidationError("path", str(p), "file does not exist")
    if p.suffix.lower() in (".parquet", ".pq"):
        pd = require("pandas", "io", "reading Parquet")
        require("pyarrow", "io", "reading Parquet")
        df = pd.read_parquet(p)
        rows: Iterable[dict[str, Any]] = (
            {k: (None if _isnan(v) else v) for k, v in r.items()} for r in df.to_dict("records"))
        header = list(df.columns)
    else:
        f = open(p, newline="", encoding="utf-8")
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        rows = _csv_rows(reader, f)
    dup = sorted({str(c) for c in header if header.count(c) > 1})
    if dup:  # csv.DictReader would keep the last one silently
        raise OcadValidationError("columns", dup, f"{p.name} has duplicated column name(s) in its header")
    for req in ("endpoint_id", "ts"):
        if req not in header:
            raise OcadValidationError(req, None, f"{p.name} has no {req!r} column (columns: {header})")
    if "metric" in header and "value" in header:
        return _long_to_wide(rows)
    drop = LABEL_COLUMNS & set(header)
    if drop:
        return [{k: v for k, v in r.items() if k not in drop} for r in rows]
    return list(rows)


def _csv_rows(reader: csv.DictReader, f: Any) -> Iterator[dict[str, Any]]:
    with f:
        for r in reader:
            out: dict[str, Any] = {}
            for k, v in r.items():
                if k in ("endpoint_id", "metric", "fault_type"):
                    out[k] = v
                else:
                    out[k] = _cell(v) if isinstance(v, str) else v
            yield out


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and v != v


def _long_to_wide(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    merged: dict[tuple[str, Any], dict[str, Any]] = {}
    for i, r in enumerate(rows):
        if r.get("metric") in ("endpoint_id", "ts", "metric", "value"):
            # It would rewrite the record's own endpoint or time: refused, as for a long DataFrame.
            raise OcadValidationError("metric", r["metric"], "a long-format row may not name a reserved column "
                                      "(ts, endpoint_id, metric, value) as its metric", index=i)
        key = (r["endpoint_id"], r["ts"])
        rec = merged.get(key)
        if rec is None:
            rec = merged[key] = {"endpoint_id": r["endpoint_id"], "ts": r["ts"]}
        m = r.get("metric")
        if isinstance(m, str) and m:
            rec[m] = r.get("value")
    return list(merged.values())


def write_events(events: list[AlertEvent], path: str | os.PathLike[str]) -> Path:
    """Write alert events as ``.json`` (list), ``.jsonl`` or ``.csv`` (by suffix).

    Every format carries the alert's endpoint labels: a ``labels`` object in JSON, and in
    CSV a ``labels`` cell ``name=value;name=value`` (``\\``, ``;`` and ``=`` in values escaped
    with a backslash).
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    suffix = p.suffix.lower()
    if suffix == ".csv":
        cols = ["event", "ts", "alert_id", "endpoint_id", "severity", "score", "peak_score", "opened_ts",
                "resolved_ts", "kinds", "evidence", "labels"]
        with open(p, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for ev in events:
                a = ev.alert
                evid = "; ".join(f"{e.detector}:{e.metric} obs={_fmt(e.observed)} exp={_fmt(e.expected)} "
                                 f"c={e.contribution:.3f}" for e in a.evidence)
                w.writerow([ev.event, ev.ts, a.alert_id, a.endpoint_id, a.severity, f"{a.score:.4f}",
                            f"{a.peak_score:.4f}", a.opened_ts, a.resolved_ts if a.resolved_ts is not None else "",
                            "+".join(a.kinds), evid, _labels_cell(a.labels)])
    elif suffix == ".jsonl":
        with open(p, "w", encoding="utf-8") as f:
            for ev in events:
                f.write(json.dumps(ev.to_dict()) + "\n")
    else:
        p.write_text(json.dumps([ev.to_dict() for ev in events], indent=1), encoding="utf-8")
    return p


def _labels_cell(labels: Any) -> str:
    # Label names are [a-zA-Z0-9_]; values may hold anything, so ';' '=' and '\\' in them are escaped.
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace(";", "\\;").replace("=", "\\=")
    return ";".join(f"{k}={esc(v)}" for k, v in sorted(labels.items()))


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.4g}"
