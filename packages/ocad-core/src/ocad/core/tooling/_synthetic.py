"""Seeded synthetic O-RAN fronthaul fleet with labelled, injected faults.

The generator exists so that detectors can be trained, calibrated, tested and
benchmarked without a live network: every array is a pure function of the
arguments of :func:`generate_fleet`, so an evaluation run is reproducible from
its seed alone.

The model is deliberately simple but not naive: per-endpoint baselines, a diurnal
load cycle per site, correlated probe noise, rare benign blips (so that detectors
which alarm on one sample pay for it), lost probe results, and eight fault types
that a NOC actually sees, each labelled sample by sample.

Only numpy and attrs are imported here; pandas is imported inside
:meth:`Fleet.to_frame` because importing ``ocad.core`` must stay light.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import attrs
import numpy as np

from .._errors import OcadConfigError, require
from .._metrics import ORAN_METRICS, MetricKind

__all__ = ["FAULT_TYPES", "EndpointInfo", "FaultEvent", "Fleet", "generate_fleet"]

FAULT_TYPES: tuple[str, ...] = (
    "spike",
    "drift",
    "packet_loss",
    "ccm_loss",
    "jitter",
    "concurrent",
    "single_metric",
    "site_wide",
)
"""Injected fault types; label code ``k = 1 + FAULT_TYPES.index(type)``, 0 is normal."""

ROLES: tuple[str, ...] = ("o-ru", "o-du", "transport")

_METRICS: tuple[str, ...] = tuple(spec.name for spec in ORAN_METRICS)
_KINDS: tuple[MetricKind, ...] = tuple(spec.kind for spec in ORAN_METRICS)
# Column indices into values[..., M]; ORAN_METRICS fixes the order.
_U, _E, _L, _S, _C = (_METRICS.index(n) for n in (
    "udp_echo_rtt_ms", "ecpri_delay_us", "lbm_rtt_ms", "lbm_success", "ccm_miss_count"
))
_GAUGES = (_U, _E, _L)
_LABEL_NAMES = ("", *FAULT_TYPES)

_ROLE_ABBR = {"o-ru": "oru", "o-du": "odu", "transport": "tn"}
# Capability mixes. Transport nodes have no eCPRI (not a radio endpoint); a share
# of O-RUs have no CFM loopback configured, so detectors must cope with gaps.
_CAPS_FULL = _METRICS
_CAPS_ORU_NO_LBM = tuple(m for m in _METRICS if m not in ("lbm_rtt_ms", "lbm_success"))
_CAPS_TRANSPORT = tuple(m for m in _METRICS if m != "ecpri_delay_us")
_P_ORU_NO_LBM = 0.25

_DAY_S = 86_400.0
_WARMUP_S = 30 * 60.0  # detectors' windows fill up first: no faults before this
_GAP_S = 10 * 60.0  # normal samples between two faults of one endpoint
_SITE_SIZE = 12  # default endpoints per site when n_sites is None

# Benign behaviour of a healthy endpoint, per sample.
_P_BENIGN_BLIP = 2e-3  # one-sample RTT bump of a few sigma (a busy queue, a GC pause)
_P_BENIGN_LBM_FAIL = 1e-4
_P_BENIGN_CCM_MISS = 2e-4
_LBM_NOISE_SHARE = 0.6  # correlation of UDP and LBM noise: same path, different probe


@attrs.frozen
class EndpointInfo:
    """One probed endpoint of the fronthaul.

    Attributes:
        endpoint_id: Unique id, ``"<site>-<role abbreviation>-<index>"``,
            e.g. ``"site03-oru-0007"``.
        role: ``"o-ru"``, ``"o-du"`` or ``"transport"``.
        site: Site id, e.g. ``"site03"``; ``site_wide`` faults hit a whole site.
        capabilities: Metrics this endpoint reports, in ``Fleet.metrics`` order.
            A metric not listed is *not supported* (all NaN), never zero.
        baselines: Mean level of every reported metric before diurnal load,
            e.g. ``{"udp_echo_rtt_ms": 7.3, "lbm_success": 1.0, ...}``.
    """

    endpoint_id: str
    role: str
    site: str
    capabilities: tuple[str, ...]
    # A dict cannot be hashed; leaving it out of the hash keeps the class hashable
    # and still consistent with equality (equal objects have equal ids).
    baselines: dict[str, float] = attrs.field(hash=False)


@attrs.frozen
class FaultEvent:
    """One injected fault on one endpoint; ``labels`` mark exactly its span.

    Attributes:
        endpoint_id: The faulty endpoint.
        fault_type: One of :data:`FAULT_TYPES`.
        start_ts: First faulty sample time (epoch seconds).
        end_ts: Last faulty sample time, inclusive.
        failure_ts: For ``"drift"``, the time the drift turns into a hard failure
            (LBM fails, CCM misses, RTT blows up); ``None`` for other types.
        metrics: Metrics the fault changes (only ones the endpoint reports).
        site: Site of the endpoint; all events of one ``site_wide`` fault share
            site, start and end.
    """

    endpoint_id: str
    fault_type: str
    start_ts: float
    end_ts: float
    failure_ts: float | None
    metrics: tuple[str, ...]
    site: str

    @property
    def label(self) -> int:
        """The label code of this fault in :attr:`Fleet.labels`."""
        return 1 + FAULT_TYPES.index(self.fault_type)


def _check_fleet(inst: Fleet) -> None:
    e, t, m = len(inst.endpoints), inst.ts.shape[0], len(inst.metrics)
    if inst.ts.ndim != 1:
        raise OcadConfigError(f"Fleet.ts must be 1-D, got shape {inst.ts.shape}")
    if inst.values.shape != (e, t, m):
        raise OcadConfigError(f"Fleet.values has shape {inst.values.shape}, expected {(e, t, m)}")
    if inst.labels.shape != (e, t):
        raise OcadConfigError(f"Fleet.labels has shape {inst.labels.shape}, expected {(e, t)}")


@attrs.frozen(eq=False)
class Fleet:
    """A synthetic fleet: samples of ``E`` endpoints on a common grid of ``T`` ticks.

    The arrays are plain numpy arrays. :meth:`slice_time` returns views that share
    memory with this fleet (a day of 1000 endpoints is ~350 MB: copies are left
    to the caller); treat the arrays as read-only.

    Attributes:
        endpoints: One :class:`EndpointInfo` per row, sorted by site.
        metrics: The metric names of the last axis of ``values``.
        ts: ``(T,)`` float64 sample times, epoch seconds, every ``interval_s``.
        values: ``(E, T, M)`` float32; NaN where the endpoint does not report the
            metric, where a probe result was lost, and for ``lbm_rtt_ms`` when the
            loopback failed (``lbm_success == 0``: no reply, no RTT).
        labels: ``(E, T)`` int8; 0 normal, ``1 + FAULT_TYPES.index(t)`` while a
            fault of type ``t`` is active.
        events: The injected faults, sorted by start time then endpoint.
        seed: Seed the fleet was generated from.
        interval_s: Sample period in seconds.
    """

    endpoints: tuple[EndpointInfo, ...]
    metrics: tuple[str, ...]
    ts: np.ndarray
    values: np.ndarray
    labels: np.ndarray
    events: tuple[FaultEvent, ...]
    seed: int
    interval_s: float
    _ids: np.ndarray = attrs.field(init=False, repr=False)
    _rows: dict[str, int] = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        _check_fleet(self)
        ids = np.array([ep.endpoint_id for ep in self.endpoints], dtype=object)
        # Handed out by every columns() call, so it must not be mutable by callers.
        ids.flags.writeable = False
        object.__setattr__(self, "_ids", ids)
        object.__setattr__(self, "_rows", {eid: i for i, eid in enumerate(ids)})

    # -- per-tick access ------------------------------------------------------

    def endpoint_ids(self) -> np.ndarray:
        """``(E,)`` read-only object array of endpoint ids, in row order."""
        return self._ids

    def _tick(self, t: int) -> int:
        n = self.ts.shape[0]
        if not -n <= t < n:
            raise IndexError(f"tick {t} out of range for a fleet of {n} ticks")
        return t % n

    def columns(self, t: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Tick ``t`` in columnar form, the batch shape the monitor ingests.

        Returns:
            ``(endpoint_ids (E,), ts (E,) float64, {metric: (E,) float64})``; NaN
            marks a metric an endpoint lacks or a lost sample.
        """
        t = self._tick(t)
        ts = np.full(len(self.endpoints), self.ts[t], dtype=np.float64)
        block = self.values[:, t, :].astype(np.float64)
        return self._ids, ts, {m: block[:, j] for j, m in enumerate(self.metrics)}

    def records(self, t: int) -> list[dict[str, Any]]:
        """Tick ``t`` as one record dict per endpoint, as a collector would send them.

        Metrics the endpoint lacks and lost samples are omitted keys, not NaN;
        gauges are ``float``, boolean and count metrics ``int``.
        """
        t = self._tick(t)
        ts = float(self.ts[t])
        block = self.values[:, t, :]
        # float32 -> float64 via .tolist() keeps the exact float32 value.
        rows = block.astype(np.float64).tolist()
        is_int = [self._int_kind(m) for m in self.metrics]
        out: list[dict[str, Any]] = []
        for eid, row in zip(self._ids, rows):
            rec: dict[str, Any] = {"endpoint_id": eid, "ts": ts}
            for m, v, as_int in zip(self.metrics, row, is_int):
                if v == v:  # not NaN
                    rec[m] = int(v) if as_int else v
            out.append(rec)
        return out

    def iter_ticks(
        self, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
        """Yield :meth:`columns` for ticks ``start .. stop - 1`` (replay a fleet)."""
        for t in range(*slice(start, stop).indices(self.ts.shape[0])):
            yield self.columns(t)

    # -- sub-fleets -----------------------------------------------------------

    def slice_time(self, start: int, stop: int) -> Fleet:
        """Ticks ``start .. stop - 1`` (Python slice rules); events are clipped.

        A clipped drift keeps its ``failure_ts`` only if the failure lies in the
        slice. The arrays are views of this fleet's arrays.
        """
        lo, hi, _ = slice(start, stop).indices(self.ts.shape[0])
        hi = max(lo, hi)
        ts = self.ts[lo:hi]
        events: list[FaultEvent] = []
        if hi > lo:
            t0, t1 = float(ts[0]), float(ts[-1])
            for ev in self.events:
                if ev.end_ts < t0 or ev.start_ts > t1:
                    continue
                s, e = max(ev.start_ts, t0), min(ev.end_ts, t1)
                f = ev.failure_ts if ev.failure_ts is not None and s <= ev.failure_ts <= e else None
                events.append(attrs.evolve(ev, start_ts=s, end_ts=e, failure_ts=f))
        return Fleet(
            endpoints=self.endpoints, metrics=self.metrics, ts=ts,
            values=self.values[:, lo:hi, :], labels=self.labels[:, lo:hi],
            events=tuple(events), seed=self.seed, interval_s=self.interval_s,
        )

    def select(self, endpoint_ids: Iterable[str]) -> Fleet:
        """The given endpoints, in the given order (arrays are copies).

        Raises:
            OcadConfigError: an id is unknown or repeated.
        """
        ids = [endpoint_ids] if isinstance(endpoint_ids, str) else list(endpoint_ids)
        unknown = [i for i in ids if i not in self._rows]
        if unknown:
            raise OcadConfigError(
                f"unknown endpoint id(s) {unknown[:5]}{'...' if len(unknown) > 5 else ''}; "
                "use Fleet.endpoint_ids() for the ids in this fleet"
            )
        if len(set(ids)) != len(ids):
            raise OcadConfigError("Fleet.select: endpoint ids must not repeat")
        rows = np.array([self._rows[i] for i in ids], dtype=np.intp)
        keep = set(ids)
        return Fleet(
            endpoints=tuple(self.endpoints[r] for r in rows), metrics=self.metrics,
            ts=self.ts, values=self.values[rows], labels=self.labels[rows],
            events=tuple(ev for ev in self.events if ev.endpoint_id in keep),
            seed=self.seed, interval_s=self.interval_s,
        )

    # -- labels ---------------------------------------------------------------

    def normal_mask(self, *, margin_s: float = _GAP_S) -> np.ndarray:
        """``(E, T)`` bool: samples safe to treat as normal (fit, calibrate, FPR).

        A sample is normal when no fault is active and none ended within the last
        ``margin_s`` seconds: windowed features still see a fault for a while
        after it ends, and scores there are neither true nor false alarms.
        Derived from ``labels``, so it is also right for sliced fleets.
        """
        faulty = self.labels != 0
        t = np.arange(self.ts.shape[0])
        last = np.where(faulty, t, np.iinfo(np.int64).min // 2)
        np.maximum.accumulate(last, axis=1, out=last)
        margin = int(math.ceil(margin_s / self.interval_s))
        return ~faulty & (t - last > margin)

    # -- export ---------------------------------------------------------------

    def _long_index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # Time-major (tick, endpoint, metric): the order a live feed produces.
        present = ~np.isnan(self.values.transpose(1, 0, 2))
        return np.nonzero(present)

    def to_long_arrays(self) -> dict[str, np.ndarray]:
        """Long format, one row per present value, ordered by (tick, endpoint, metric).

        Returns:
            ``{"endpoint_id": object, "ts": float64, "metric": object,
            "value": float64}`` arrays of equal length; missing values dropped.
        """
        ti, ei, mi = self._long_index()
        return {
            "endpoint_id": self._ids[ei],
            "ts": self.ts[ti].astype(np.float64),
            "metric": np.array(self.metrics, dtype=object)[mi],
            "value": self.values[ei, ti, mi].astype(np.float64),
        }

    def _fault_names(self, ei: np.ndarray, ti: np.ndarray) -> np.ndarray:
        return np.array(_LABEL_NAMES, dtype=object)[self.labels[ei, ti]]

    def to_frame(self, long: bool = False) -> Any:
        """A pandas DataFrame (needs the ``io`` extra), rows ordered by tick then endpoint.

        Wide: columns ``endpoint_id, ts, <metrics...>, fault_type`` with one row
        per endpoint and tick. Long: ``endpoint_id, ts, metric, value,
        fault_type``, missing values dropped. ``fault_type`` is ``""`` when normal.

        Raises:
            OcadDependencyError: pandas is not installed.
        """
        pd = require("pandas", "io", "Fleet.to_frame")
        if long:
            ti, ei, _ = self._long_index()
            data = self.to_long_arrays()
            data["fault_type"] = self._fault_names(ei, ti)
            return pd.DataFrame(data)
        e, t = len(self.endpoints), self.ts.shape[0]
        ei = np.tile(np.arange(e), t)
        ti = np.repeat(np.arange(t), e)
        flat = self.values.transpose(1, 0, 2).reshape(t * e, len(self.metrics))
        cols: dict[str, Any] = {"endpoint_id": self._ids[ei], "ts": self.ts[ti]}
        for j, m in enumerate(self.metrics):
            cols[m] = flat[:, j]
        cols["fault_type"] = self._fault_names(ei, ti)
        return pd.DataFrame(cols)

    def write_csv(self, path: str | os.PathLike[str], long: bool = False, labels: bool = True) -> None:
        """Write the fleet as CSV (no pandas needed), same layout as :meth:`to_frame`.

        Missing values are empty cells; floats are written in their shortest
        exact form (``float32`` values read back with ``np.float32(float(cell))``
        are bit-identical). ``labels=False`` drops the ``fault_type`` column.
        """
        ts_str = np.array([repr(float(x)) for x in self.ts], dtype=object)
        header: list[str]
        if long:
            ti, ei, mi = self._long_index()
            vals = self.values[ei, ti, mi]
            strs = _format(vals, None)
            is_int = np.array([self._int_kind(m) for m in self.metrics])[mi]
            if is_int.any():
                strs[is_int] = _format(vals[is_int], True)
            header = ["endpoint_id", "ts", "metric", "value"]
            columns = [self._ids[ei], ts_str[ti], np.array(self.metrics, dtype=object)[mi], strs]
        else:
            e, t = len(self.endpoints), self.ts.shape[0]
            ei = np.tile(np.arange(e), t)
            ti = np.repeat(np.arange(t), e)
            flat = self.values.transpose(1, 0, 2).reshape(t * e, len(self.metrics))
            header = ["endpoint_id", "ts", *self.metrics]
            columns = [self._ids[ei], ts_str[ti]]
            columns += [_format(flat[:, j], self._int_kind(m)) for j, m in enumerate(self.metrics)]
        if labels:
            header.append("fault_type")
            columns.append(self._fault_names(ei, ti))
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(zip(*columns))

    def _int_kind(self, metric: str) -> bool:
        return metric in _METRICS and _KINDS[_METRICS.index(metric)] is not MetricKind.GAUGE

    def events_table(self) -> list[dict[str, Any]]:
        """The events as plain dicts (JSON-ready), one per event, in ``events`` order.

        Keys: ``endpoint_id, site, fault_type, label, start_ts, end_ts,
        failure_ts, duration_s, metrics`` (a list).
        """
        return [
            {
                "endpoint_id": ev.endpoint_id,
                "site": ev.site,
                "fault_type": ev.fault_type,
                "label": ev.label,
                "start_ts": ev.start_ts,
                "end_ts": ev.end_ts,
                "failure_ts": ev.failure_ts,
                "duration_s": ev.end_ts - ev.start_ts + self.interval_s,
                "metrics": list(ev.metrics),
            }
            for ev in self.events
        ]


def _format(vals: np.ndarray, as_int: bool | None) -> np.ndarray:
    """Strings for CSV cells: '' for NaN, ints for boolean/count, shortest float repr."""
    nan = np.isnan(vals)
    if as_int:
        out = np.where(nan, 0, vals).astype(np.int64).astype(str).astype(object)
    else:
        # numpy prints float32 in its shortest round-tripping form.
        out = vals.astype(str).astype(object)
    out[nan] = ""
    return out


# -- generation ---------------------------------------------------------------


@attrs.frozen
class _Layout:
    """Per-endpoint parameters; internal, drawn from the layout stream."""

    site_idx: np.ndarray  # (E,) int
    caps: np.ndarray  # (E, M) bool
    base: np.ndarray  # (E, 3) float32 gauge baselines (udp, ecpri, lbm)
    cv: np.ndarray  # (E, 3) float32 noise std relative to level
    sens: np.ndarray  # (E,) float32 sensitivity to the site's load
    peak_h: np.ndarray  # (S,) hour of day of each site's peak load
    endpoints: tuple[EndpointInfo, ...]

    def load(self, rows: np.ndarray | slice, ts: np.ndarray, amplitude: float) -> np.ndarray:
        """(len(rows), len(ts)) float32 relative load: 0 on average, +-amplitude at peak/trough."""
        hours = (ts % _DAY_S) / 3600.0
        sites = np.atleast_1d(self.site_idx[rows])
        # One cosine per site, not per endpoint: sites share their load curve.
        used, inv = np.unique(sites, return_inverse=True)
        wave = np.cos(2 * np.pi * (hours[None, :] - self.peak_h[used, None]) / 24.0).astype(np.float32)
        out = wave[inv]
        out *= np.float32(amplitude) * self.sens[rows].reshape(-1, 1)
        return out


# How strongly each gauge (udp, ecpri, lbm) follows load: the eCPRI one-way delay
# is dominated by fixed radio/transport processing, RTTs by queueing.
_LOAD_GAIN = np.array([1.0, 0.5, 1.0], dtype=np.float32)


def _draw_layout(rng: np.random.Generator, n: int, n_sites: int) -> _Layout:
    # Contiguous blocks keep endpoints sorted by site; a site is a hub: the first
    # endpoint is its O-DU, the second its transport switch, the rest mostly O-RUs.
    site_idx = np.repeat(np.arange(n_sites), [len(b) for b in np.array_split(np.arange(n), n_sites)])
    pos = np.arange(n) - np.searchsorted(site_idx, site_idx)
    drawn = rng.choice(3, size=n, p=[0.85, 0.05, 0.10])
    role_idx = np.where(pos == 0, 1, np.where(pos == 1, 2, drawn))
    no_lbm = rng.random(n) < _P_ORU_NO_LBM
    # Rounded so that EndpointInfo.baselines is exactly what the arrays use.
    base_u = np.round(rng.uniform(2.0, 15.0, n), 3)
    base_e = np.round(rng.uniform(20.0, 120.0, n), 2)
    base_l = np.round(np.clip(base_u * rng.uniform(0.85, 1.15, n), 2.0, 15.0), 3)
    cv = np.column_stack([
        rng.uniform(0.03, 0.08, n), rng.uniform(0.02, 0.05, n), rng.uniform(0.03, 0.08, n)
    ]).astype(np.float32)
    sens = rng.uniform(0.5, 1.0, n).astype(np.float32)
    peak_h = rng.uniform(17.0, 22.0, n_sites)  # evening busy hour, local to each site

    site_w = max(2, len(str(n_sites - 1)))
    ep_w = max(4, len(str(n - 1)))
    endpoints = []
    caps = np.zeros((n, len(_METRICS)), dtype=bool)
    for i in range(n):
        role = ROLES[role_idx[i]]
        if role == "transport":
            cap = _CAPS_TRANSPORT
        elif role == "o-ru" and no_lbm[i]:
            cap = _CAPS_ORU_NO_LBM
        else:
            cap = _CAPS_FULL
        caps[i] = [m in cap for m in _METRICS]
        site = f"site{site_idx[i]:0{site_w}d}"
        levels = {
            "udp_echo_rtt_ms": float(base_u[i]),
            "ecpri_delay_us": float(base_e[i]),
            "lbm_rtt_ms": float(base_l[i]),
            "lbm_success": 1.0,
            "ccm_miss_count": 0.0,
        }
        endpoints.append(EndpointInfo(
            endpoint_id=f"{site}-{_ROLE_ABBR[role]}-{i:0{ep_w}d}",
            role=role, site=site, capabilities=cap,
            baselines={m: levels[m] for m in cap},
        ))
    base = np.column_stack([base_u, base_e, base_l]).astype(np.float32)
    return _Layout(site_idx, caps, base, cv, sens, peak_h, tuple(endpoints))


def _rare(rng: np.random.Generator, shape: tuple[int, int], p: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions of a Bernoulli(p) mask without materialising an (E, T) random array."""
    size = shape[0] * shape[1]
    if p <= 0 or size == 0:
        return np.empty(0, np.intp), np.empty(0, np.intp)
    flat = rng.integers(0, size, rng.binomial(size, p))
    return np.divmod(flat, shape[1])


def _resolve_faults(faults: bool | Sequence[str]) -> tuple[str, ...]:
    if faults is True:
        return FAULT_TYPES
    if faults is False or faults is None:
        return ()
    if isinstance(faults, str):
        faults = (faults,)
    chosen = tuple(dict.fromkeys(faults))
    unknown = [f for f in chosen if f not in FAULT_TYPES]
    if unknown:
        raise OcadConfigError(f"faults: unknown fault type(s) {unknown}; choose from {list(FAULT_TYPES)}")
    return tuple(f for f in FAULT_TYPES if f in chosen)


class _Injector:
    """Places faults (no overlap, gaps, warm-up) and writes them into ``values``."""

    def __init__(self, rng: np.random.Generator, values: np.ndarray, layout: _Layout,
                 ts: np.ndarray, interval_s: float, amplitude: float) -> None:
        self.rng = rng
        self.values = values
        self.layout = layout
        self.amplitude = amplitude
        self.ts = ts
        self.interval_s = interval_s
        n, t = values.shape[:2]
        self.labels = np.zeros((n, t), dtype=np.int8)
        self.warm = int(math.ceil(_WARMUP_S / interval_s))
        self.gap = int(math.ceil(_GAP_S / interval_s))
        self.events: list[FaultEvent] = []
        caps = layout.caps
        self.eligible = {
            "packet_loss": np.flatnonzero(caps[:, _S]),
            "ccm_loss": np.flatnonzero(caps[:, _C]),
        }
        self.all = np.arange(n)
        self.site_members = [np.flatnonzero(layout.site_idx == s) for s in range(len(layout.peak_h))]

    def level(self, e: int, sl: slice, g: int) -> np.ndarray:
        """Expected (noise-free) level of gauge ``g`` of endpoint ``e`` over ``sl``."""
        load = self.layout.load(e, self.ts[sl], self.amplitude)[0]
        return self.layout.base[e, g] * (1 + _LOAD_GAIN[g] * load)

    def ticks(self, lo_s: float, hi_s: float) -> int:
        return max(1, int(round(self.rng.uniform(lo_s, hi_s) / self.interval_s)))

    def free(self, rows: np.ndarray, s: int, n: int) -> bool:
        return not self.labels[rows, max(0, s - self.gap): s + n + self.gap].any()

    def place(self, fault: str, attempts: int = 40) -> None:
        rng, t_len = self.rng, self.labels.shape[1]
        for _ in range(attempts):
            if fault == "spike":
                n, extra = int(rng.integers(3, 7)), 0
            elif fault == "drift":
                n, extra = self.ticks(600, 1800), self.ticks(120, 300)
            elif fault in ("packet_loss", "ccm_loss"):
                n, extra = self.ticks(120, 600), 0
            elif fault == "concurrent":
                n, extra = self.ticks(180, 600), 0
            else:  # jitter, single_metric, site_wide
                n, extra = self.ticks(300, 900), 0
            total = n + extra
            if t_len - total < self.warm:
                return
            s = int(rng.integers(self.warm, t_len - total + 1))
            if fault == "site_wide":
                rows = self.site_members[int(rng.integers(len(self.site_members)))]
            else:
                pool = self.eligible.get(fault, self.all)
                if pool.size == 0:
                    return
                rows = pool[int(rng.integers(pool.size))][None]
            if self.free(rows, s, total):
                self.apply(fault, rows, s, n, extra)
                return

    def _mul(self, e: int, sl: slice, cols: Sequence[int], factor: Any) -> None:
        for c in cols:
            self.values[e, sl, c] *= factor

    def apply(self, fault: str, rows: np.ndarray, s: int, n: int, extra: int) -> None:
        rng, v, caps = self.rng, self.values, self.layout.caps
        end = s + n + extra  # exclusive
        sl = slice(s, end)
        code = 1 + FAULT_TYPES.index(fault)
        site_factor = rng.uniform(1.8, 2.2)
        for e in rows:
            has = caps[e]
            gauges_rtt = [c for c in (_U, _L) if has[c]]
            failure_ts = None
            if fault == "spike":
                choice = int(rng.integers(3))  # udp, lbm or both
                cols = [c for c in ((_U,), (_L,), (_U, _L))[choice] if has[c]] or [_U]
                self._mul(e, sl, cols, rng.uniform(3.0, 10.0) * rng.uniform(0.9, 1.1, n))
            elif fault == "drift":
                ramp = slice(s, s + n)
                fail = slice(s + n, end)
                k = rng.uniform(3.0, 5.0)
                mult = 1.0 + (k - 1.0) * np.arange(1, n + 1, dtype=np.float32) / n
                cols = [c for c in _GAUGES if has[c]]
                self._mul(e, ramp, cols, mult)
                blow = rng.uniform(8.0, 15.0)
                self._mul(e, fail, cols, blow * rng.uniform(0.8, 1.2, extra))
                v[e, fail, _S] = 0.0
                v[e, fail, _C] = rng.integers(2, 6, extra)
                failure_ts = float(self.ts[s + n])
                cols = cols + [c for c in (_S, _C) if has[c]]
            elif fault == "packet_loss":
                p = rng.uniform(0.3, 0.7)
                lost = rng.random(n) < p
                lost[int(rng.integers(n))] = True  # a packet-loss event loses packets
                v[e, sl, _S] = np.where(lost, 0.0, 1.0)
                self._mul(e, sl, gauges_rtt, rng.uniform(1.2, 1.6))
                cols = gauges_rtt + [_S]
            elif fault == "ccm_loss":
                v[e, sl, _C] = rng.integers(1, 4, n)
                cols = [_C]
            elif fault == "jitter":
                # Scale the deviation from the expected level: spread grows, mean stays.
                k = rng.uniform(5.0, 10.0)
                for c in gauges_rtt:
                    lv = self.level(e, sl, _GAUGES.index(c))
                    v[e, sl, c] = lv + (v[e, sl, c] - lv) * k
                cols = gauges_rtt
            elif fault == "concurrent":
                cols = [c for c in _GAUGES if has[c]]
                self._mul(e, sl, cols, rng.uniform(1.8, 2.2))
                if has[_S]:
                    lost = rng.random(n) < rng.uniform(0.1, 0.3)
                    lost[int(rng.integers(n))] = True
                    v[e, sl, _S] = np.where(lost, 0.0, 1.0)
                    cols = cols + [_S]
            elif fault == "single_metric":
                options = [c for c in _GAUGES if has[c]]
                c = options[int(rng.integers(len(options)))]
                # "Robust std" is the local noise std (level x cv): what a windowed
                # robust scaler sees, not the diurnal swing of the whole series.
                g = _GAUGES.index(c)
                k = rng.uniform(4.0, 8.0)
                v[e, sl, c] += k * self.layout.cv[e, g] * self.level(e, sl, g)
                cols = [c]
            else:  # site_wide: one cause, one factor for every endpoint of the site
                cols = [c for c in _GAUGES if has[c]]
                self._mul(e, sl, cols, site_factor)
            self.labels[e, sl] = code
            ep = self.layout.endpoints[e]
            self.events.append(FaultEvent(
                endpoint_id=ep.endpoint_id, fault_type=fault,
                start_ts=float(self.ts[s]), end_ts=float(self.ts[end - 1]),
                failure_ts=failure_ts,
                metrics=tuple(_METRICS[c] for c in sorted(set(cols))),
                site=ep.site,
            ))


def generate_fleet(
    n_endpoints: int = 60,
    duration_s: float = 6 * 3600,
    interval_s: float = 5.0,
    seed: int = 0,
    *,
    faults: bool | Sequence[str] = True,
    fault_rate_per_endpoint_day: float = 6.0,
    n_sites: int | None = None,
    start_ts: float = 1_767_225_600.0,
    missing_rate: float = 0.002,
    diurnal_amplitude: float = 0.25,
) -> Fleet:
    """Generate a seeded synthetic fronthaul fleet with labelled faults.

    Every output array is a deterministic function of the arguments. Independent
    random streams (spawned from ``seed``) drive the layout, the normal noise,
    the faults and the lost samples, so ``faults=False`` gives exactly the same
    background as ``faults=True`` minus the injected faults.

    Args:
        n_endpoints: Number of endpoints ``E``.
        duration_s: Length of the series; ``T = round(duration_s / interval_s)``.
        interval_s: Sample period in seconds.
        seed: Non-negative integer seed.
        faults: ``True`` for every type in :data:`FAULT_TYPES`, ``False`` for a
            clean fleet, or a sequence of type names to inject only those.
        fault_rate_per_endpoint_day: Mean number of fault incidents per endpoint
            and day (a ``site_wide`` incident counts once per affected endpoint
            on average). Whenever faults are enabled and the fleet is long
            enough, each enabled type occurs at least once.
        n_sites: Number of sites; default about one site per 12 endpoints.
        start_ts: Epoch seconds of the first sample (default 2026-01-01 00:00 UTC).
        missing_rate: Probability that one probe result (UDP echo, eCPRI, LBM
            pair, CCM) is lost in a sample; lost values are NaN, not faults.
        diurnal_amplitude: Relative amplitude of the 24 h load cycle on RTT and
            delay (each site peaks in its own evening hour).

    Returns:
        The :class:`Fleet`.

    Raises:
        OcadConfigError: an argument is out of range or a fault type unknown.

    Example:
        >>> fleet = generate_fleet(n_endpoints=6, duration_s=3600, seed=1)
        >>> fleet.values.shape, fleet.values.dtype.name
        ((6, 720, 5), 'float32')
        >>> sorted({ep.role for ep in fleet.endpoints})
        ['o-du', 'o-ru', 'transport']
        >>> ids, ts, cols = fleet.columns(0)
        >>> sorted(cols) == sorted(fleet.metrics)
        True
    """
    if isinstance(n_endpoints, bool) or int(n_endpoints) != n_endpoints or n_endpoints < 1:
        raise OcadConfigError(f"n_endpoints must be a positive integer, got {n_endpoints!r}")
    n_endpoints = int(n_endpoints)
    if not (interval_s > 0 and math.isfinite(interval_s)):
        raise OcadConfigError(f"interval_s must be a positive number of seconds, got {interval_s!r}")
    n_ticks = int(round(duration_s / interval_s)) if math.isfinite(duration_s) else 0
    if n_ticks < 1:
        raise OcadConfigError(
            f"duration_s={duration_s!r} gives no sample at interval_s={interval_s}; "
            "use duration_s >= interval_s"
        )
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise OcadConfigError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    if n_sites is None:
        n_sites = max(1, int(round(n_endpoints / _SITE_SIZE)))
    if int(n_sites) != n_sites or not 1 <= n_sites <= n_endpoints:
        raise OcadConfigError(f"n_sites must be between 1 and n_endpoints={n_endpoints}, got {n_sites!r}")
    n_sites = int(n_sites)
    if not 0.0 <= missing_rate < 1.0:
        raise OcadConfigError(f"missing_rate must be in [0, 1), got {missing_rate!r}")
    if not 0.0 <= diurnal_amplitude < 1.0:
        raise OcadConfigError(f"diurnal_amplitude must be in [0, 1), got {diurnal_amplitude!r}")
    if not (fault_rate_per_endpoint_day >= 0 and math.isfinite(fault_rate_per_endpoint_day)):
        raise OcadConfigError(
            f"fault_rate_per_endpoint_day must be >= 0, got {fault_rate_per_endpoint_day!r}"
        )
    fault_types = _resolve_faults(faults)

    # One stream per concern, so that e.g. changing the fault mix leaves the
    # normal background bit-identical.
    rng_layout, rng_noise, rng_benign, rng_fault, rng_missing = np.random.default_rng(seed).spawn(5)
    layout = _draw_layout(rng_layout, n_endpoints, n_sites)
    e_n, t_n, m_n = n_endpoints, n_ticks, len(_METRICS)
    ts = float(start_ts) + np.arange(t_n, dtype=np.float64) * float(interval_s)

    # Gauges are level x (1 + cv * z), level = baseline x (1 + gain x load). Built
    # in place in float32: (E, T) temporaries are the memory peak at 1000
    # endpoints x 1 day (~70 MB each), next to the 350 MB result.
    lf = layout.load(slice(None), ts, diurnal_amplitude)
    lf += 1  # now the load factor of a gain-1 gauge; reused in place to save an (E, T) copy
    values = np.empty((e_n, t_n, m_n), dtype=np.float32)

    def fill(col: int, g: int, z: np.ndarray) -> None:
        z *= layout.cv[:, g, None]
        z += 1
        z *= layout.base[:, g, None]
        if _LOAD_GAIN[g] == 1:
            z *= lf
        else:
            z *= _LOAD_GAIN[g] * (lf - 1) + 1
        values[:, :, col] = z

    z_u = rng_noise.standard_normal((e_n, t_n), dtype=np.float32)
    z_l = rng_noise.standard_normal((e_n, t_n), dtype=np.float32)
    z_l *= np.float32(math.sqrt(1 - _LBM_NOISE_SHARE**2))
    z_l += np.float32(_LBM_NOISE_SHARE) * z_u
    fill(_U, 0, z_u)
    del z_u
    fill(_L, 2, z_l)
    del z_l
    fill(_E, 1, rng_noise.standard_normal((e_n, t_n), dtype=np.float32))
    values[:, :, _S] = 1.0
    values[:, :, _C] = 0.0

    # Benign events on healthy endpoints: single-sample, so persistence-aware
    # detectors can ignore them and single-sample thresholds pay false alarms.
    for col, g in ((_U, 0), (_L, 2)):
        ei, ti = _rare(rng_benign, (e_n, t_n), _P_BENIGN_BLIP)
        # A few sigma, capped: benign, unlike a spike (3-10x the level).
        bump = np.minimum(rng_benign.exponential(2.0, ei.size), 6.0).astype(np.float32)
        level = layout.base[ei, g] * lf[ei, ti]
        values[ei, ti, col] += bump * layout.cv[ei, g] * level
    del lf
    ei, ti = _rare(rng_benign, (e_n, t_n), _P_BENIGN_LBM_FAIL)
    values[ei, ti, _S] = 0.0
    ei, ti = _rare(rng_benign, (e_n, t_n), _P_BENIGN_CCM_MISS)
    values[ei, ti, _C] = 1.0

    injector = _Injector(rng_fault, values, layout, ts, float(interval_s), diurnal_amplitude)
    if fault_types and fault_rate_per_endpoint_day > 0:
        days = t_n * float(interval_s) / _DAY_S
        n_incidents = int(rng_fault.poisson(fault_rate_per_endpoint_day * e_n * days))
        # A site-wide incident hits a whole site: weight it down so that it
        # contributes about as many events as any other type.
        w = np.array([n_sites / e_n if f == "site_wide" else 1.0 for f in fault_types])
        extra = rng_fault.choice(len(fault_types), size=max(0, n_incidents - len(fault_types)), p=w / w.sum())
        # One of each type first, site-wide first of all: it needs a whole site free.
        order = sorted(fault_types, key=lambda f: f != "site_wide")
        for f in [*order, *(fault_types[i] for i in extra)]:
            injector.place(f)

    # Physical floor: a delay cannot go below a fraction of the path's baseline.
    for g, col in enumerate(_GAUGES):
        np.maximum(values[:, :, col], (0.1 * layout.base[:, g])[:, None], out=values[:, :, col])
    # No loopback reply, no loopback RTT.
    lbm_rtt = values[:, :, _L]
    lbm_rtt[values[:, :, _S] == 0.0] = np.nan

    # Lost probe results: the LBM RTT and success come from one probe.
    for cols in ((_U,), (_E,), (_L, _S), (_C,)):
        ei, ti = _rare(rng_missing, (e_n, t_n), missing_rate)
        for c in cols:
            values[ei, ti, c] = np.nan
    for j in range(m_n):
        values[~layout.caps[:, j], :, j] = np.nan

    events = sorted(injector.events, key=lambda ev: (ev.start_ts, ev.endpoint_id))
    return Fleet(
        endpoints=layout.endpoints, metrics=_METRICS, ts=ts, values=values,
        labels=injector.labels, events=tuple(events), seed=seed, interval_s=float(interval_s),
    )
