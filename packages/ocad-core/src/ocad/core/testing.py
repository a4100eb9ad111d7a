"""The detector conformance kit: :func:`check_detector`.

Every detector, built-in or from a plugin, should pass it; OCAD's own test
suite runs it on every detector ``Monitor.from_defaults()`` registers. Use it in
a plugin's tests::

    from ocad.core.testing import check_detector

    def test_my_detector_conforms():
        check_detector(MyDetector())

It checks what the :class:`~ocad.core.Detector` protocol's types cannot say. On
views built from generated data (see :func:`make_view`):

* **protocol**: ``name`` and ``kind`` are non-empty strings, ``metrics`` a tuple
  of strings, ``window`` an int >= 1, ``score`` is callable;
* **output**: ``score(view)`` returns a :class:`~ocad.core.DetectorOutput` whose
  ``scores`` has shape ``(N,)``, float values in ``[0, 1]`` or NaN (never inf);
  ``metrics`` is a tuple of strings and ``metric_scores`` / ``observed`` /
  ``expected``, when given, have shape ``(N, K)``, ``K = len(metrics)``, with
  ``metric_scores`` in ``[0, 1]`` or NaN;
* **cannot judge**: NaN for endpoints that lack every metric the detector uses
  (``capabilities`` False, values NaN), and for endpoints that report nothing;
* **edge cases**: N = 0, N = 1, a large N, endpoints with NaN samples, a short
  history (unfilled slots), flat windows, all-NaN windows: no exception;
* **determinism**: the same view scored twice gives identical outputs;
* **purity**: scoring ``view.take(rows)`` gives the same rows as scoring the
  whole view (within ``atol``: batched kernels may round differently for
  different batch sizes), so a Monitor can be sharded by endpoint;
* **no mutation**: the view's arrays are read-only during the checks and equal
  to a copy afterwards.

A failed check raises :class:`AssertionError` naming the detector, the check and
what was wrong.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .pipeline._features import FeatureEngine
from ._metrics import ORAN_METRICS, MetricKind, MetricRegistry, MetricSpec
from .plugins._protocols import Detector
from ._view import DetectorOutput, DetectorView

__all__ = ["SCENARIOS", "check_detector", "make_view"]

#: The kinds of endpoint rows in a generated view, in the order they repeat.
SCENARIOS: tuple[str, ...] = (
    "normal", "lacks_detector_metrics", "reports_nothing", "partial_metrics", "sparse_nan",
    "short_history", "spike", "flat", "outage", "level_shift", "newest_missing", "normal",
)


def _registry(detector: Any, metrics: MetricRegistry | Iterable[MetricSpec] | None) -> MetricRegistry:
    if metrics is not None:
        return metrics if isinstance(metrics, MetricRegistry) else MetricRegistry(metrics)
    reg = MetricRegistry(ORAN_METRICS)
    unknown = [m for m in getattr(detector, "metrics", ()) if isinstance(m, str) and m not in reg]
    if unknown:
        try:  # a plugin's metrics: take their specs (kind, range) from the plugins that define them
            from .plugins._registry import default_registry

            known = default_registry().metrics()
        except Exception:  # noqa: BLE001 - the kit must work without any plugin
            known = MetricRegistry()
        for m in unknown:
            try:
                reg.add(known.get(m) if m in known else MetricSpec(m))
            except Exception:  # noqa: BLE001 - not a metric name (e.g. a feature): the view just lacks it
                continue
    return reg


def _clip(spec: MetricSpec, v: np.ndarray) -> np.ndarray:
    return np.clip(v, spec.low if np.isfinite(spec.low) else None, spec.high if np.isfinite(spec.high) else None)


def make_view(metrics: MetricRegistry | Iterable[MetricSpec], n: int, window: int, *, seed: int = 0,
              detector_metrics: Iterable[str] = (), scenarios: tuple[str, ...] = SCENARIOS) -> DetectorView:
    """A :class:`DetectorView` of ``n`` generated endpoints, rows cycling through ``scenarios``.

    Gauges wander around a per-endpoint level (0.5 to 20 units, 5 % noise),
    boolean metrics succeed 97 % of the time, counts are Poisson(0.05). Rows of
    scenario ``"lacks_detector_metrics"`` do not report ``detector_metrics``
    (NaN values, ``capabilities`` False); see :data:`SCENARIOS` for the others.
    Timestamps are 5 s apart; unfilled slots are NaN in ``values`` and ``ts``.
    """
    reg = metrics if isinstance(metrics, MetricRegistry) else MetricRegistry(metrics)
    specs = list(reg)
    names = reg.names()
    m, w = len(specs), int(window)
    rng = np.random.default_rng(seed)
    vals = np.empty((n, w, m), dtype=np.float64)
    for j, s in enumerate(specs):
        if s.kind is MetricKind.BOOLEAN:
            v = (rng.random((n, w)) > 0.03).astype(np.float64)
        elif s.kind is MetricKind.COUNT:
            v = rng.poisson(0.05, (n, w)).astype(np.float64)
        else:
            level = rng.uniform(0.5, 20.0, n)[:, None]
            v = level * (1.0 + 0.05 * rng.standard_normal((n, w)))
        vals[:, :, j] = _clip(s, v)
    ts = np.broadcast_to(1_767_225_600.0 + 5.0 * np.arange(w), (n, w)).copy()
    caps = np.ones((n, m), dtype=bool)
    counts = np.full(n, w + 100, dtype=np.int64)
    det = [names.index(x) for x in detector_metrics if x in names]
    for i in range(n):
        sc = scenarios[i % len(scenarios)]
        if sc == "lacks_detector_metrics" and det:
            vals[i, :, det] = np.nan
            caps[i, det] = False
        elif sc == "reports_nothing":
            vals[i] = np.nan
            caps[i] = False
        elif sc == "partial_metrics":
            drop = rng.permutation(m)[: m // 2]
            vals[i, :, drop] = np.nan
            caps[i, drop] = False
        elif sc == "sparse_nan":
            vals[i][rng.random((w, m)) < 0.3] = np.nan
        elif sc == "short_history":
            k = min(3, w)
            vals[i, : w - k] = np.nan
            ts[i, : w - k] = np.nan
            counts[i] = k
        elif sc == "spike":
            for j, s in enumerate(specs):
                if s.kind is MetricKind.BOOLEAN:
                    vals[i, -3:, j] = 0.0
                elif s.kind is MetricKind.COUNT:
                    vals[i, -3:, j] = 5.0
                else:
                    last = vals[i, -1, j] * 5.0 if s.higher_is_worse else vals[i, -1, j] * 0.2
                    vals[i, -1, j] = _clip(s, np.array(last))
        elif sc == "flat":
            vals[i] = vals[i, :1]
        elif sc == "outage":
            vals[i] = np.nan
        elif sc == "level_shift":
            for j, s in enumerate(specs):
                if s.kind is MetricKind.GAUGE:
                    vals[i, w // 2:, j] = _clip(s, vals[i, w // 2:, j] * 2.0)
        elif sc == "newest_missing":
            vals[i, -1] = np.nan
    values = vals.astype(np.float32)
    feats = FeatureEngine(reg).compute(values, ts)
    eps = np.array([f"ep-{seed}-{i:05d}" for i in range(n)], dtype=object)
    return DetectorView(endpoints=eps, metrics=names, values=values, ts=ts, capabilities=caps, features=feats,
                        counts=counts)


# -- the checks ------------------------------------------------------------------

class _Fail(AssertionError):
    pass


def _fail(name: str, check: str, detail: str) -> _Fail:
    return _Fail(f"check_detector({name!r}) [{check}]: {detail}")


def _check_protocol(det: Any) -> str:
    name = getattr(det, "name", None)
    label = name if isinstance(name, str) else repr(det)
    if not isinstance(name, str) or not name:
        raise _fail(label, "protocol", f"name must be a non-empty str, got {name!r}")
    kind = getattr(det, "kind", None)
    if not isinstance(kind, str) or not kind:
        raise _fail(name, "protocol", f"kind must be a non-empty str, got {kind!r}")
    metrics = getattr(det, "metrics", None)
    if not isinstance(metrics, tuple) or not all(isinstance(m, str) for m in metrics):
        raise _fail(name, "protocol", f"metrics must be a tuple of str, got {metrics!r}")
    window = getattr(det, "window", None)
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise _fail(name, "protocol", f"window must be an int >= 1, got {window!r}")
    if not callable(getattr(det, "score", None)):
        raise _fail(name, "protocol", "score(view) must be a method")
    if not isinstance(det, Detector):
        raise _fail(name, "protocol", "does not satisfy ocad.core.Detector")
    return name


def _score(det: Any, view: DetectorView, case: str) -> DetectorOutput:
    try:
        out = det.score(view)
    except Exception as exc:
        raise _fail(det.name, case, f"score() raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(out, DetectorOutput):
        raise _fail(det.name, case, f"score() returned {type(out).__name__}, expected DetectorOutput")
    _check_output(det.name, out, view.n, case)
    return out


def _check_output(name: str, out: DetectorOutput, n: int, case: str) -> None:
    s = np.asarray(out.scores)
    if s.shape != (n,):
        raise _fail(name, case, f"scores have shape {s.shape}, expected ({n},)")
    if s.dtype.kind != "f":
        raise _fail(name, case, f"scores have dtype {s.dtype}, expected a float dtype (NaN = cannot judge)")
    if np.isinf(s).any():
        raise _fail(name, case, "scores contain inf; use NaN for 'cannot judge'")
    fin = s[np.isfinite(s)]
    if fin.size and (fin.min() < 0.0 or fin.max() > 1.0):
        raise _fail(name, case, f"scores outside [0, 1]: min {fin.min():.6g}, max {fin.max():.6g}")
    if not isinstance(out.metrics, tuple) or not all(isinstance(m, str) for m in out.metrics):
        raise _fail(name, case, f"DetectorOutput.metrics must be a tuple of str, got {out.metrics!r}")
    k = len(out.metrics)
    for field in ("metric_scores", "observed", "expected"):
        a = getattr(out, field)
        if a is None:
            continue
        a = np.asarray(a)
        if a.shape != (n, k):
            raise _fail(name, case, f"{field} has shape {a.shape}, expected {(n, k)} (N, len(metrics))")
        if field == "metric_scores" and a.size:
            fa = a[np.isfinite(a)]
            if np.isinf(a).any() or (fa.size and (fa.min() < 0.0 or fa.max() > 1.0)):
                raise _fail(name, case, "metric_scores must be in [0, 1] or NaN")


def _same(name: str, check: str, a: DetectorOutput, b: DetectorOutput, atol: float) -> None:
    for field in ("scores", "metric_scores", "observed", "expected"):
        x, y = getattr(a, field), getattr(b, field)
        if (x is None) != (y is None):
            raise _fail(name, check, f"{field} is present in one output and None in the other")
        if x is None:
            continue
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if x.shape != y.shape:
            raise _fail(name, check, f"{field} shapes differ: {x.shape} vs {y.shape}")
        nx, ny = np.isnan(x), np.isnan(y)
        if not np.array_equal(nx, ny):
            rows = np.flatnonzero((nx != ny).reshape(x.shape[0], -1).any(axis=1))[:5]
            raise _fail(name, check, f"{field}: NaN in one output but not the other at rows {rows.tolist()}")
        d = np.abs(np.where(nx, 0.0, x - y))
        if d.size and d.max() > atol:
            i = int(np.argmax(d.reshape(x.shape[0], -1).max(axis=1)))
            raise _fail(name, check, f"{field}: values differ by up to {d.max():.3g} (> {atol:g}), e.g. row {i}")
    if a.metrics != b.metrics:
        raise _fail(name, check, f"metrics differ: {a.metrics} vs {b.metrics}")


def _freeze(view: DetectorView) -> list[tuple[str, np.ndarray, np.ndarray]]:
    arrays = [("values", view.values), ("ts", view.ts), ("capabilities", view.capabilities),
              ("features.data", view.features.data), ("counts", view.counts), ("endpoints", view.endpoints)]
    saved = []
    for label, a in arrays:
        saved.append((label, a, a.copy()))
        a.flags.writeable = False
    return saved


def _check_unchanged(name: str, saved: list[tuple[str, np.ndarray, np.ndarray]]) -> None:
    for label, a, copy in saved:
        same = np.array_equal(a, copy, equal_nan=True) if a.dtype.kind == "f" else np.array_equal(a, copy)
        if not same:
            raise _fail(name, "no-mutation", f"score() modified view.{label}")


def check_detector(detector: Any, *, n: int = 64, seed: int = 0, big_n: int = 2000,
                   metrics: MetricRegistry | Iterable[MetricSpec] | None = None, atol: float = 1e-6) -> None:
    """Check that ``detector`` honours the Detector contract; raise ``AssertionError`` if not.

    Parameters
    ----------
    detector:
        The detector to check (anything with ``name``, ``kind``, ``metrics``,
        ``window`` and ``score``).
    n:
        Endpoints of the main generated view (at least ``len(SCENARIOS)``, so that
        every scenario appears).
    seed:
        Seed of the generated data.
    big_n:
        Endpoints of the large view (0 to skip).
    metrics:
        The metric specs of the views. Default: the O-RAN metrics plus the
        detector's own metrics (specs from the installed plugins, else gauges).
    atol:
        Tolerance of the purity check (subset of rows vs. all rows).

    Example
    -------
    >>> from ocad.core.detectors import SpikeDetector
    >>> from ocad.core.plugins import ORAN_METRICS, MetricRegistry
    >>> check_detector(SpikeDetector.from_registry(MetricRegistry(ORAN_METRICS)), n=24, big_n=0)
    """
    name = _check_protocol(detector)
    reg = _registry(detector, metrics)
    window = max(int(detector.window), 32)
    own = [m for m in detector.metrics if m in reg]
    n = max(int(n), len(SCENARIOS))

    view = make_view(reg, n, window, seed=seed, detector_metrics=own)
    saved = _freeze(view)
    out = _score(detector, view, "score")

    s = np.asarray(out.scores, dtype=np.float64)
    for i in range(n):
        sc = SCENARIOS[i % len(SCENARIOS)]
        lacks = sc == "reports_nothing" or (sc == "lacks_detector_metrics" and bool(own))
        if lacks and not np.isnan(s[i]):
            what = "reports no metric at all" if sc == "reports_nothing" else f"lacks all of {own}"
            raise _fail(name, "cannot-judge", f"endpoint row {i} {what} but got score {s[i]:.4g}; "
                        "return NaN (cannot judge), not a low score")

    again = _score(detector, view, "determinism")
    _same(name, "determinism", out, again, 0.0)

    rng = np.random.default_rng(seed + 1)
    rows = np.sort(rng.permutation(n)[: max(1, n // 2)])
    part = _score(detector, view.take(rows), "purity")
    _same(name, "purity", _take(out, rows), part, atol)
    perm = rng.permutation(n)
    shuffled = _score(detector, view.take(perm), "purity")
    _same(name, "purity (row order)", _take(out, perm), shuffled, atol)
    _check_unchanged(name, saved)

    _score(detector, view.take(np.arange(0)), "N=0")
    one = _score(detector, view.take(np.arange(1)), "N=1")
    _same(name, "purity (N=1)", _take(out, np.arange(1)), one, atol)

    outage = make_view(reg, max(4, n // 4), window, seed=seed + 2, detector_metrics=own, scenarios=("outage",))
    _score(detector, outage, "all-NaN windows")

    if big_n > 0:
        big = make_view(reg, int(big_n), window, seed=seed + 3, detector_metrics=own)
        saved = _freeze(big)
        _score(detector, big, f"N={int(big_n)}")
        _check_unchanged(name, saved)


def _take(out: DetectorOutput, rows: np.ndarray) -> DetectorOutput:
    def t(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else np.asarray(a)[rows]

    return DetectorOutput(scores=np.asarray(out.scores)[rows], metrics=out.metrics,
                          metric_scores=t(out.metric_scores), observed=t(out.observed), expected=t(out.expected))
