"""ResidualDetector: how far each metric's newest value is above its TCN forecast.

One forecaster artifact (kind ``"forecaster"``) per metric, one onnxruntime
session per forecaster. Per metric per tick, the endpoints that can be judged go
through the session in blocks of :data:`BLOCK_ROWS` rows (one ``session.run`` per
block; one call for a tick of up to ``BLOCK_ROWS`` endpoints).

Why blocks: onnxruntime keeps every intermediate tensor of a call, and its arena
keeps the largest it has seen. One call for 100 000 endpoints holds hundreds of
MB of intermediates (a 100 000-endpoint Monitor peaked at 2.35 GB with the
full-graph forecasters in one call each, 545 MB with blocks and the last-step
graphs); a block of a few hundred rows holds a few MB and stays in the CPU cache,
which also makes it faster per row (shipped last-step graph, one thread: 256 rows
per call ~1.5x faster per forecast than one 10 000-row call; ``docs/performance.md``).

Scoring, per metric with a model of window ``W`` (``manifest.inputs.window``)
----------------------------------------------------------------------------
The view's last ``W + 1`` samples of the metric are split into the model input
``x`` (the ``W`` samples *before* the newest one) and the target ``y`` (the
newest sample)::

    x      = fill(x)                      # manifest inputs.fill_policy, e.g. ffill limit 2
    ŷ      = model(x)                     # (B, 1), metric units; normalisation is in the graph
    level  = mean(x)
    e      = sign * (y - ŷ)               # sign = -1 for metrics where higher is better
    raw    = max(0, e) / (relative_rms * max(|level|, level_floor))   # one_sided = "upper"
    score  = Calibration(manifest.calibration).transform(raw)

``relative_rms`` and ``level_floor`` (``manifest.scaler``) come from the
forecaster's residuals on the *validation* split, so the residual is measured
against how well the model forecasts normal data, not against the current
window's spread (a window that is already disturbed would hide the fault).
``one_sided = "lower"`` uses ``max(0, -e)``, no ``one_sided`` uses ``|e|``.

An endpoint gets NaN for a metric ("cannot judge") when it lacks the metric,
its newest sample is missing (a filled value is never a target, as in
training), or its input window still holds NaN after the fill policy.

Combining metrics
-----------------
The endpoint's score is the largest of its K calibrated metric scores, and the
max of K scores passes a threshold about K times as often as one score does. So
the max goes through a second stage, like :class:`ocad.core.plugins.CalibratedDetector`:

* by default the Šidák correction ``s = max_k(s_k) ** K`` (``K`` = the metrics
  judged *for that endpoint*): exact when the metric scores of normal data are
  independent and uniform (which per-metric calibration makes them), slightly
  conservative when they are correlated. It needs no data, so the default
  artifacts give a false-alarm rate per endpoint comparable to a single-metric
  detector's;
* after :meth:`ResidualDetector.fit` on normal views (``Monitor.calibrate`` /
  ``ocad calibrate`` call it), the empirical table ``overall_`` of the max,
  which also accounts for correlation between metrics.

Evidence: ``metric_scores`` per metric, ``observed = y``, ``expected = ŷ``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import numpy as np

from ocad.core import MetricSpec, OcadArtifactError
from ocad.core.artifacts import LoadedArtifact
from ocad.core.plugins import Calibration, DetectorOutput, DetectorView

from . import _manifest as mf
from ._session import SessionConfig, load_session

__all__ = ["BLOCK_ROWS", "FORECASTER_KIND", "Forecaster", "ResidualDetector"]

log = logging.getLogger("ocad.detectors_ml")

FORECASTER_KIND = "forecaster"
BLOCK_ROWS = 256  # rows per session.run (see module docs)
_ONE_SIDED = {"upper", "lower", "none"}


@attrs.define(eq=False)
class Forecaster:
    """One metric's forecaster: its onnxruntime session and the manifest fields scoring needs."""

    metric: str
    window: int
    session: Any  # onnxruntime.InferenceSession (replaceable, e.g. by a call-counting wrapper in tests)
    input_name: str
    output_name: str
    relative_rms: float
    level_floor: float
    one_sided: str
    sign: float
    fill: mf.FillPolicy
    calibration: Calibration
    source: str  # "name@version"
    block_rows: int = BLOCK_ROWS

    @classmethod
    def from_artifact(cls, art: LoadedArtifact, session: SessionConfig = SessionConfig(),
                      spec: MetricSpec | None = None) -> Forecaster:
        """Check the manifest, open the session, check the graph's signature against the manifest."""
        where = mf.label(art)
        if art.kind != FORECASTER_KIND:
            raise OcadArtifactError(where, f"kind is {art.kind!r}, expected {FORECASTER_KIND!r}")
        metrics = mf.get(art, "inputs.metrics")
        if not isinstance(metrics, list) or len(metrics) != 1 or not isinstance(metrics[0], str):
            raise OcadArtifactError(where, f"inputs.metrics = {metrics!r}: a forecaster has exactly one metric")
        metric = metrics[0]
        window = mf.get_int(art, "inputs.window", maximum=mf.MAX_WINDOW)
        dtype = mf.get_str(art, "inputs.dtype", "float32")
        if dtype != "float32":
            raise OcadArtifactError(where, f"inputs.dtype = {dtype!r}: only float32 models are supported")
        stype = mf.get_str(art, "scaler.type")
        if stype != "residual":
            raise OcadArtifactError(where, f"scaler.type = {stype!r}: a forecaster needs a 'residual' scaler")
        rel = mf.get_float(art, "scaler.relative_rms", positive=True)
        floor = mf.get_float(art, "scaler.level_floor", positive=True)
        side = mf.get(art, "scaler.one_sided", "upper")
        side = "none" if side in (None, False, "both", "two_sided") else str(side)
        if side not in _ONE_SIDED:
            raise OcadArtifactError(where, f"scaler.one_sided = {side!r}: use one of {sorted(_ONE_SIDED)}")
        hiw = mf.get(art, "inputs.higher_is_worse", None)
        if hiw is None:
            hiw = spec.higher_is_worse if spec is not None else True
        fill = mf.FillPolicy.from_manifest(art)
        cal = mf.get_calibration(art)
        sess = load_session(art, session)
        in_name, out_name = mf.graph_io(art, sess, where, window, "batch")
        return cls(metric=metric, window=window, session=sess, input_name=in_name, output_name=out_name,
                   relative_rms=rel, level_floor=floor, one_sided=side, sign=1.0 if hiw else -1.0,
                   fill=fill, calibration=cal, source=f"{art.name}@{art.version}")

    def raw(self, seg: np.ndarray, capable: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw scores, observed and forecast (N,) from the last ``W + 1`` samples ``seg`` (N, W + 1)."""
        n = seg.shape[0]
        raw = np.full(n, np.nan)
        obs = np.full(n, np.nan)
        exp = np.full(n, np.nan)
        y = seg[:, -1].astype(np.float64)
        cand = np.flatnonzero(capable & np.isfinite(y))  # fill and copy only the rows that can be judged
        if cand.size == 0:
            return raw, obs, exp
        x = self.fill.apply(seg[cand, :-1])
        good = np.isfinite(x).all(axis=1)
        rows = cand if good.all() else cand[good]
        xb = np.ascontiguousarray(x if good.all() else x[good], dtype=np.float32)
        if rows.size == 0:
            return raw, obs, exp
        yhat = np.empty(rows.size)
        step = max(int(self.block_rows), 1)
        for i in range(0, rows.size, step):
            blk = xb[i:i + step]
            pred = self.session.run([self.output_name], {self.input_name: blk})[0]
            yhat[i:i + blk.shape[0]] = np.asarray(pred, dtype=np.float64).reshape(blk.shape[0], -1)[:, 0]
        bad = ~np.isfinite(yhat)
        if bad.any():
            # A NaN forecast would silently blind the detector, a +inf one make every residual look
            # normal: either way the model cannot judge, which is a detector failure (counted in
            # health()["detectors"], logged, disabled after max_consecutive_failures), not a quiet NaN.
            raise NonFiniteModelOutput(
                f"model {self.source} gave {int(bad.sum())} non-finite forecast(s) of {rows.size} "
                f"for finite inputs (first: {yhat[np.argmax(bad)]!r})")
        level = xb.mean(axis=1, dtype=np.float64)
        e = self.sign * (y[rows] - yhat)
        if self.one_sided == "upper":
            e = np.maximum(e, 0.0)
        elif self.one_sided == "lower":
            e = np.maximum(-e, 0.0)
        else:
            e = np.abs(e)
        r = e / (self.relative_rms * np.maximum(np.abs(level), self.level_floor))
        good = np.isfinite(r)  # a model that outputs NaN / inf cannot judge
        raw[rows] = np.where(good, r, np.nan)
        obs[rows] = y[rows]
        exp[rows] = np.where(good, yhat, np.nan)
        return raw, obs, exp


class NonFiniteModelOutput(ValueError):
    """An ONNX model returned NaN or ±inf for finite inputs (raised from ``score``: a detector failure)."""


@attrs.define(eq=False)
class ResidualDetector:
    """Forecast residuals of several metrics, calibrated, max over metrics, Šidák-corrected.

    Build it with :meth:`from_artifacts` (the ``ml`` plugin does, from the shipped
    models or from ``Monitor.from_model_dir``). Fitted attribute: ``overall_``.
    """

    forecasters: tuple[Forecaster, ...]
    name: str = "residual"
    kind: str = "residual"
    overall_: Calibration | None = None
    metrics: tuple[str, ...] = attrs.field(init=False)
    window: int = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        ms = [f.metric for f in self.forecasters]
        if len(set(ms)) != len(ms):
            raise ValueError(f"{self.name}: one forecaster per metric, got {ms}")
        self.metrics = tuple(ms)
        # x is the W samples before the newest one, y the newest: W + 1 samples.
        self.window = max((f.window + 1 for f in self.forecasters), default=1)

    @classmethod
    def from_artifacts(cls, artifacts: Iterable[LoadedArtifact], *, session: SessionConfig | None = None,
                       metrics: Mapping[str, MetricSpec] | None = None, name: str = "residual") -> ResidualDetector:
        """One detector over forecaster artifacts (one per metric). Raises on the first bad one."""
        cfg = session or SessionConfig()
        specs = dict(metrics or {})
        fcs = []
        for art in artifacts:
            fc = Forecaster.from_artifact(art, cfg, specs.get(_metric_of(art)))
            fcs.append(fc)
        return cls(forecasters=tuple(fcs), name=name)

    @property
    def sources(self) -> tuple[str, ...]:
        """``name@version`` of each forecaster artifact."""
        return tuple(f.source for f in self.forecasters)

    # -- scoring ----------------------------------------------------------------
    def raw(self, view: DetectorView) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw residual scores, observed and forecast values, each (N, K)."""
        n, k = view.n, len(self.forecasters)
        raw = np.full((n, k), np.nan)
        obs = np.full((n, k), np.nan)
        exp = np.full((n, k), np.nan)
        if n == 0:
            return raw, obs, exp
        for j, fc in enumerate(self.forecasters):
            m = view.metric_index(fc.metric)
            if m is None or view.window < fc.window + 1:
                continue
            seg = view.values[:, -(fc.window + 1):, m]
            raw[:, j], obs[:, j], exp[:, j] = fc.raw(seg, view.capabilities[:, m])
        return raw, obs, exp

    def score(self, view: DetectorView) -> DetectorOutput:
        raw, obs, exp = self.raw(view)
        ms = self.metric_scores(raw)
        return DetectorOutput(scores=self._combine(ms), metrics=self.metrics, metric_scores=ms,
                              observed=obs, expected=exp)

    def metric_scores(self, raw: np.ndarray) -> np.ndarray:
        out = np.empty_like(raw)
        for j, fc in enumerate(self.forecasters):
            out[:, j] = fc.calibration.transform(raw[:, j])
        return out

    def _best(self, ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        judged = ~np.isnan(ms)
        k = judged.sum(axis=1)
        best = np.where(k > 0, np.max(np.where(judged, ms, -1.0), axis=1, initial=-1.0), np.nan)
        return best, k

    def _combine(self, ms: np.ndarray) -> np.ndarray:
        best, k = self._best(ms)
        if self.overall_ is not None:
            return np.where(k > 0, self.overall_.transform(_tail(best)), np.nan)
        with np.errstate(invalid="ignore"):
            return np.where(k > 0, np.power(best, np.maximum(k, 1)), np.nan)

    # -- fitting the second stage ---------------------------------------------------
    def fit(self, views: Iterable[DetectorView]) -> ResidualDetector:
        """Fit ``overall_``, the table of the max calibrated metric score, on views of normal data.

        Per-metric calibrations stay those of the artifacts. Needs at least 100
        endpoint-ticks judged on at least two metrics; otherwise ``overall_`` stays
        ``None`` (Šidák).
        """
        bests = []
        for v in views:
            best, k = self._best(self.metric_scores(self.raw(v)[0]))
            bests.append(best[k > 1])
        b = np.concatenate(bests) if bests else np.array([])
        self.overall_ = Calibration.fit(_tail(b)) if np.isfinite(b).sum() >= 100 else None
        return self

    def params_to_dict(self) -> dict[str, Any]:
        return {"sources": list(self.sources),
                "overall": self.overall_.to_dict() if self.overall_ is not None else None}

    def load_params(self, d: Mapping[str, Any]) -> None:
        """Load ``overall_`` fitted for exactly these artifact versions; otherwise keep Šidák."""
        if list(d.get("sources", [])) != list(self.sources):
            log.warning("%s: calibration was fitted for %s, these models are %s; using the Šidák correction",
                        self.name, d.get("sources"), list(self.sources))
            self.overall_ = None
            return
        ov = d.get("overall")
        self.overall_ = Calibration.from_dict(ov) if ov else None


def _metric_of(art: LoadedArtifact) -> str:
    ms = art.manifest.get("inputs", {}).get("metrics", [])
    return str(ms[0]) if ms else ""


def _tail(s: np.ndarray) -> np.ndarray:
    return -np.log10(np.clip(1.0 - np.asarray(s, dtype=np.float64), 1e-12, 1.0))

