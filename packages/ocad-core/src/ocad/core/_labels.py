"""Endpoint labels: metadata (site, role, vendor, ...) that travels with an endpoint's alerts.

A NOC routes and correlates alerts by *where* they come from, not by which probe
fired: a site-wide transport fault shows up as many endpoints of one site alerting
at once. OCAD therefore keeps, per endpoint, a small set of string labels and
copies them into every :class:`~ocad.core.Alert` it opens (``alert.labels``), so
they reach every event format, the snapshot, and the Alertmanager payload.

Labels come from

* a mapping ``{endpoint_id: {label: value}}``;
* an inventory file (CSV or Parquet): an ``endpoint_id`` column plus one column per label;
* extra string columns of the sample records themselves (:func:`labels_from_records`).

Label names follow Prometheus' rules (``[a-zA-Z_][a-zA-Z0-9_]*``, not starting with
``__``), because they become Alertmanager labels; ``alertname``, ``endpoint_id`` and
``severity`` are set by OCAD itself and refused. Values are strings; numbers are
written with ``str()``; an empty or missing value means "no such label" (as in
Prometheus, where an empty label equals an absent one).

An alert keeps the labels it was opened with until it resolves: Alertmanager
identifies an alert by its label set, so changing them mid-alert would leave the old
one firing. New labels apply to alerts opened after :meth:`Monitor.set_labels`.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ._errors import OcadValidationError, require

__all__ = ["RESERVED_LABELS", "EndpointLabels", "group_alerts", "labels_from_records", "load_labels",
           "validate_label_name"]

_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
#: Set by OCAD on every Alertmanager alert; an endpoint label may not override them.
RESERVED_LABELS = frozenset({"alertname", "endpoint_id", "severity"})

Labels = Mapping[str, str]


def validate_label_name(name: Any) -> str:
    """Return ``name`` if it is a usable label name, else raise :class:`OcadValidationError`."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise OcadValidationError("label", name, "not a valid label name: use letters, digits and '_', "
                                                 "not starting with a digit (Prometheus label-name rules)")
    if name.startswith("__"):
        raise OcadValidationError("label", name, "label names starting with '__' are reserved (Prometheus)")
    if name in RESERVED_LABELS:
        raise OcadValidationError("label", name, f"reserved: OCAD sets {sorted(RESERVED_LABELS)} itself")
    return name


def _value(endpoint: str, name: str, v: Any) -> str | None:
    """A label value as a string; None for missing (None, NaN, empty)."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or type(v).__name__ in ("NAType", "NaTType"):
        return None  # pandas' missing markers too (pd.NA, NaT): an inventory with gaps
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        # str/int/float only: a list or dict here is a mistake in the inventory, not a value.
        if type(v).__module__ == "numpy" and hasattr(v, "item"):
            return _value(endpoint, name, v.item())
        raise OcadValidationError(f"labels[{endpoint!r}][{name!r}]", v,
                                  f"label values must be strings or numbers, not {type(v).__name__}")
    s = str(v)
    return s or None


def _clean(endpoint: Any, labels: Any) -> dict[str, str]:
    if not isinstance(endpoint, str) or not endpoint:
        raise OcadValidationError("endpoint_id", endpoint, "labels need a non-empty string endpoint id")
    if not isinstance(labels, Mapping):
        raise OcadValidationError(f"labels[{endpoint!r}]", labels,
                                  "expected a mapping {label: value}")
    out: dict[str, str] = {}
    for k, v in labels.items():
        validate_label_name(k)
        s = _value(endpoint, k, v)
        if s is not None:
            out[k] = s
    return dict(sorted(out.items()))


class EndpointLabels:
    """Labels per endpoint, validated; what :class:`Monitor` holds as ``monitor.labels``.

    Example
    -------
    >>> lab = EndpointLabels({"oru-1": {"site": "par-3", "role": "oru"}})
    >>> lab.get("oru-1")
    {'role': 'oru', 'site': 'par-3'}
    >>> lab.get("unknown")
    {}
    """

    def __init__(self, labels: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self._by_endpoint: dict[str, dict[str, str]] = {}
        if labels:
            self.update(labels)

    def __len__(self) -> int:
        return len(self._by_endpoint)

    def __contains__(self, endpoint_id: object) -> bool:
        return endpoint_id in self._by_endpoint

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EndpointLabels) and self._by_endpoint == other._by_endpoint

    def __repr__(self) -> str:
        return f"EndpointLabels({len(self)} endpoints, names={self.names()})"

    def get(self, endpoint_id: str) -> dict[str, str]:
        """The labels of ``endpoint_id`` (a new dict; empty when it has none)."""
        d = self._by_endpoint.get(endpoint_id)
        return dict(d) if d else {}

    def names(self) -> list[str]:
        """Every label name used by some endpoint, sorted."""
        return sorted({k for d in self._by_endpoint.values() for k in d})

    def update(self, labels: Mapping[str, Mapping[str, Any]], *, replace: bool = False) -> EndpointLabels:
        """Add or overwrite endpoints' labels (all validated before any is applied).

        An endpoint given here gets exactly these labels (its old ones are dropped); an
        endpoint mapped to ``{}`` loses its labels. ``replace=True`` forgets every other
        endpoint too.
        """
        if not isinstance(labels, Mapping):
            raise OcadValidationError("labels", type(labels).__name__,
                                      "expected a mapping {endpoint_id: {label: value}}")
        clean = {e: _clean(e, lab) for e, lab in labels.items()}
        if replace:
            self._by_endpoint = {}
        for e, lab in clean.items():
            if lab:
                self._by_endpoint[e] = lab
            else:
                self._by_endpoint.pop(e, None)
        return self

    def to_dict(self) -> dict[str, dict[str, str]]:
        """``{endpoint_id: {label: value}}``, JSON-ready; :meth:`from_dict` reads it back exactly."""
        return {e: dict(d) for e, d in sorted(self._by_endpoint.items())}

    @classmethod
    def from_dict(cls, d: Mapping[str, Mapping[str, Any]]) -> EndpointLabels:
        return cls(d)

    @classmethod
    def coerce(cls, labels: Any) -> EndpointLabels:
        """An :class:`EndpointLabels` from one, a mapping, an inventory path, or a DataFrame."""
        if labels is None:
            return cls()
        if isinstance(labels, EndpointLabels):
            return cls(labels.to_dict())
        if isinstance(labels, (str, os.PathLike)) or _is_frame(labels):
            return cls(load_labels(labels))
        return cls(labels)


def _is_frame(obj: Any) -> bool:
    return type(obj).__name__ == "DataFrame" and hasattr(obj, "columns")


def load_labels(source: str | os.PathLike[str] | Any,
                columns: Iterable[str] | None = None) -> dict[str, dict[str, str]]:
    """Read an inventory: ``endpoint_id`` plus one column per label, from CSV, Parquet or a DataFrame.

    ``columns``: the label columns to take (default: every column but ``endpoint_id``).
    One row per endpoint; an endpoint listed twice must have the same labels both times.

    Raises
    ------
    OcadValidationError
        No such file, no ``endpoint_id`` column, a bad label name, or one endpoint with
        two different values for a label.
    """
    if _is_frame(source):
        df = source
        header = [str(c) for c in df.columns]
        rows: Iterable[Mapping[str, Any]] = df.to_dict("records")
        where = "DataFrame"
    else:
        p = Path(source)
        if not p.is_file():
            raise OcadValidationError("labels", str(p), "inventory file does not exist")
        where = p.name
        if p.suffix.lower() in (".parquet", ".pq"):
            pd = require("pandas", "io", "reading a Parquet inventory")
            require("pyarrow", "io", "reading a Parquet inventory")
            df = pd.read_parquet(p)
            header = [str(c) for c in df.columns]
            rows = df.to_dict("records")
        else:
            with open(p, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                header = list(reader.fieldnames or [])
                rows = list(reader)
    if "endpoint_id" not in header:
        raise OcadValidationError("endpoint_id", None, f"{where} has no 'endpoint_id' column (columns: {header})")
    cols = [c for c in header if c != "endpoint_id"] if columns is None else list(columns)
    missing = [c for c in cols if c not in header]
    if missing:
        raise OcadValidationError("labels", missing, f"{where} has no such column(s) (columns: {header})")
    return labels_from_records(rows, cols)


def labels_from_records(records: Iterable[Mapping[str, Any]], columns: Iterable[str]) -> dict[str, dict[str, str]]:
    """Labels from the ``columns`` of records (an inventory's rows, or samples with label columns).

    Every record of an endpoint must agree on each label's value (missing values aside);
    a disagreement raises :class:`OcadValidationError` naming the endpoint, label and values.
    """
    cols = [validate_label_name(c) for c in columns]
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for i, r in enumerate(records):
        e = r.get("endpoint_id")
        if not isinstance(e, str) or not e:
            raise OcadValidationError("endpoint_id", e, "labels need a non-empty string endpoint id", index=i)
        d = out[e]
        for c in cols:
            s = _value(e, c, r.get(c))
            if s is None:
                continue
            old = d.setdefault(c, s)
            if old != s:
                raise OcadValidationError(f"labels[{e!r}][{c!r}]", s,
                                          f"conflicts with {old!r} given earlier for the same endpoint", index=i)
    return {e: dict(sorted(d.items())) for e, d in out.items()}


def group_alerts(alerts: Iterable[Any], by: str | Iterable[str], *,
                 missing: str | None = None) -> dict[Any, list[Any]]:
    """Group alerts (or alert events) by one label or a tuple of labels: site-wide correlation.

    ``by="site"`` gives ``{"par-3": [alerts...], ...}``; ``by=("site", "role")`` gives
    tuple keys. Alerts without the label go under ``missing`` (``None``); groups are
    sorted by size, largest first, so the first one is the likeliest common cause.

    Example
    -------
    >>> from ocad.core import group_alerts
    >>> groups = group_alerts(monitor.open_alerts(), "site")   # doctest: +SKIP
    >>> [(site, len(a)) for site, a in groups.items() if len(a) >= 3]   # doctest: +SKIP
    [('par-3', 7)]
    """
    keys = (by,) if isinstance(by, str) else tuple(by)
    for k in keys:
        if k != "endpoint_id" and k != "severity":
            validate_label_name(k)
    groups: dict[Any, list[Any]] = defaultdict(list)
    for a in alerts:
        alert = getattr(a, "alert", a)  # an AlertEvent or an Alert
        lab = {**alert.labels, "endpoint_id": alert.endpoint_id, "severity": alert.severity}
        vals = tuple(lab.get(k, missing) for k in keys)
        groups[vals[0] if isinstance(by, str) else vals].append(a)
    return dict(sorted(groups.items(), key=lambda kv: -len(kv[1])))
