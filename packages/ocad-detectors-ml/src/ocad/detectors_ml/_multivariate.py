"""MultivariateDetector: an Isolation Forest (ONNX) over an endpoint's window features.

The artifact (kind ``"multivariate"``, e.g. ``iforest-multivariate``) names its
input features in order (``inputs.features``, FeatureEngine names such as
``"udp_echo_rtt_ms:p99"``). Every tick, the N endpoints go through the session in
blocks of :data:`BLOCK_ROWS` rows (one ``session.run`` for up to ``BLOCK_ROWS``
endpoints; the imputed, scaled float32 copies of the features exist per block
only, which keeps a 100 000-endpoint tick ~150 MB smaller)::

    X      = features (N, F), float32, NaN where missing
    score  = model(X)                     # sklearn score_samples: higher = more normal
    raw    = -score
    s      = Calibration(manifest.calibration).transform(raw)

Missing metrics (explicit, never a silent zero-fill)
----------------------------------------------------
An endpoint that lacks a metric (a transport node has no eCPRI) has NaN for
that metric's features. Per endpoint, ``missing_fraction`` = share of the F
features that are NaN:

* ``missing_fraction > inputs.max_missing_fraction`` → score NaN ("cannot
  judge"): the model is not asked about a row it never saw the like of, and the
  composite renormalises over the detectors that can judge;
* otherwise each missing feature takes its imputation value,
  ``inputs.impute[feature]`` (the training median, which the scaler maps to
  "typical"): inside the graph when ``inputs.impute_in_graph`` is true (the
  detector then feeds NaN as is), else here before the call. An artifact with
  neither imputation values nor an in-graph imputation can only judge complete
  rows (``max_missing_fraction`` is taken as 0).

The scaler (``manifest.scaler``, ``{"type": "robust", "center", "scale"}``) is
applied here only when ``scaler_in_graph`` is false; it is always used for the
evidence.

Training / serving parity of the features
-----------------------------------------
The view's features are used as they are when they were computed the way the
training features were: same window length (``inputs.window``), same set of
metrics (the ``concurrency`` feature counts over all of them) and default
FeatureEngine parameters. Otherwise (e.g. the Monitor's window is longer because
another detector needs more history) the detector recomputes its features
from the last ``inputs.window`` samples with the training FeatureEngine settings.

Evidence
--------
``metrics`` are the model's feature names; ``observed`` is the feature value
(NaN where it was imputed), ``expected`` the scaler's center (the training
median), and ``metric_scores[i, j] = score_i * |z_ij| / max_j |z_ij|`` with the
robust ``z = (observed - center) / scale``: the most deviant feature carries
the endpoint's score, so the alert's evidence names it, e.g.
``udp_echo_rtt_ms:p99 observed 14.2 expected 3.1``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from ocad.core import MetricSpec, OcadArtifactError
from ocad.core.artifacts import LoadedArtifact
from ocad.core.pipeline import FeatureEngine
from ocad.core.plugins import ORAN_METRICS, Calibration, DetectorOutput, DetectorView

from . import _manifest as mf
from ._residual import NonFiniteModelOutput
from ._session import SessionConfig, load_session

__all__ = ["BLOCK_ROWS", "MULTIVARIATE_KIND", "MultivariateDetector"]

log = logging.getLogger("ocad.detectors_ml")

MULTIVARIATE_KIND = "multivariate"
BLOCK_ROWS = 4096  # rows per session.run: bounded copies; a tree ensemble's cost per call is small
_ENGINE_PARAMS = ("alpha", "cusum_k", "elevated_z", "rel_floor", "abs_floor")
_DEFAULT_ENGINE = {p: getattr(FeatureEngine(ORAN_METRICS[:1]), p) for p in _ENGINE_PARAMS}


@attrs.define(eq=False)
class MultivariateDetector:
    """Isolation-Forest anomaly score of each endpoint's feature vector (see module docs).

    Build it with :meth:`from_artifact`.
    """

    features: tuple[str, ...]
    session: Any  # onnxruntime.InferenceSession
    input_name: str
    output_name: str
    calibration: Calibration
    max_missing_fraction: float
    impute: np.ndarray | None  # (F,) float32, applied here (None: in the graph or not at all)
    center: np.ndarray | None  # (F,) evidence, and input scaling when scaler_in_graph is false
    scale: np.ndarray | None
    scale_input: bool
    engine: FeatureEngine  # the training FeatureEngine settings, for recomputing features
    train_window: int | None
    engine_default: bool
    source: str
    name: str = "multivariate"
    kind: str = "multivariate"
    metrics: tuple[str, ...] = ()
    window: int = 1
    block_rows: int = BLOCK_ROWS

    @classmethod
    def from_artifact(cls, art: LoadedArtifact, *, session: SessionConfig | None = None,
                      metrics: Mapping[str, MetricSpec] | None = None,
                      name: str = "multivariate") -> MultivariateDetector:
        """Check the manifest, open the session and check the graph's signature."""
        where = mf.label(art)
        if art.kind != MULTIVARIATE_KIND:
            raise OcadArtifactError(where, f"kind is {art.kind!r}, expected {MULTIVARIATE_KIND!r}")
        feats = mf.get(art, "inputs.features")
        if not isinstance(feats, list) or not feats or not all(isinstance(f, str) for f in feats) \
                or len(set(feats)) != len(feats):
            raise OcadArtifactError(where, "inputs.features must be a non-empty list of unique feature names")
        nf = len(feats)
        dtype = mf.get_str(art, "inputs.dtype", "float32")
        if dtype != "float32":
            raise OcadArtifactError(where, f"inputs.dtype = {dtype!r}: only float32 models are supported")
        model_metrics = [str(m) for m in mf.get(art, "inputs.metrics")]
        cal = mf.get_calibration(art)

        impute_map = mf.get(art, "inputs.impute", None)
        in_graph = bool(mf.get(art, "inputs.impute_in_graph", False))
        max_missing = mf.get_float(art, "inputs.max_missing_fraction", 0.0)
        if not 0.0 <= max_missing < 1.0:
            raise OcadArtifactError(where, f"inputs.max_missing_fraction = {max_missing} must be in [0, 1)")
        impute = None
        if impute_map is not None:
            if not isinstance(impute_map, Mapping) or set(impute_map) != set(feats):
                raise OcadArtifactError(where, "inputs.impute must map every feature in inputs.features "
                                        "to a number")
            impute = np.array([float(impute_map[f]) for f in feats], dtype=np.float32)
        if impute is None and not in_graph and max_missing > 0:
            log.warning("%s: max_missing_fraction %.2f but no imputation; only complete rows are judged",
                        where, max_missing)
            max_missing = 0.0

        center = scale = None
        sc = mf.get(art, "scaler", None)
        if sc is not None:
            if not isinstance(sc, Mapping) or sc.get("type") not in ("robust", "standard"):
                raise OcadArtifactError(where, f"scaler = {sc!r}: expected a robust or standard scaler")
            c = sc.get("center", sc.get("mean"))
            s = sc.get("scale")
            try:
                center = np.asarray(c, dtype=np.float64).reshape(nf)
                scale = np.asarray(s, dtype=np.float64).reshape(nf)
            except (TypeError, ValueError) as exc:
                raise OcadArtifactError(where, f"scaler center/scale must have {nf} numbers: {exc}") from exc
            if not (np.all(np.isfinite(center)) and np.all(np.isfinite(scale)) and np.all(scale > 0)):
                raise OcadArtifactError(where, "scaler center must be finite and scale finite and > 0")
        scale_input = sc is not None and not bool(mf.get(art, "scaler_in_graph", False))

        win = mf.get(art, "inputs.window", None)
        train_window = None if win is None else mf.get_int(art, "inputs.window", maximum=mf.MAX_WINDOW)
        fe = mf.get(art, "inputs.feature_engine", None)
        fe = dict(fe) if isinstance(fe, Mapping) else {}
        params = {p: float(fe[p]) for p in _ENGINE_PARAMS if p in fe}
        engine_metrics = [str(m) for m in fe.get("metrics", model_metrics)]
        specs = dict(metrics or {})
        oran = {s.name: s for s in ORAN_METRICS}
        engine = FeatureEngine([specs.get(m) or oran.get(m) or MetricSpec(m) for m in engine_metrics], **params)
        missing = [f for f in feats if f not in engine.names]
        if missing:
            raise OcadArtifactError(where, f"inputs.features {missing[:5]} are not FeatureEngine features of "
                                    f"metrics {engine_metrics}")
        engine_default = all(abs(getattr(engine, p) - v) <= 1e-12 for p, v in _DEFAULT_ENGINE.items())

        sess = load_session(art, session or SessionConfig())
        in_name, out_name = mf.graph_io(art, sess, where, nf, "N")
        return cls(features=tuple(feats), session=sess, input_name=in_name, output_name=out_name,
                   calibration=cal, max_missing_fraction=max_missing, impute=None if in_graph else impute,
                   center=center, scale=scale, scale_input=scale_input, engine=engine,
                   train_window=train_window, engine_default=engine_default,
                   source=f"{art.name}@{art.version}", name=name, metrics=tuple(model_metrics),
                   window=train_window or 1)

    # -- features ---------------------------------------------------------------------
    def feature_matrix(self, view: DetectorView) -> np.ndarray:
        """(N, F) float64 model features for the view, NaN where missing (see module docs)."""
        if self._view_features_match(view):
            x = view.features.columns(self.features)
        else:
            w = min(self.train_window or view.window, view.window)
            cols = [view.metric_index(m) for m in self.engine.metrics]
            vals = np.full((view.n, w, len(cols)), np.nan, dtype=np.float32)
            for j, c in enumerate(cols):
                if c is not None:
                    vals[:, :, j] = view.values[:, -w:, c]
            x = self.engine.compute(vals, view.ts[:, -w:]).columns(self.features)
        bad = ~np.isfinite(x)  # x is a fresh copy (FeatureFrame.columns gathers): clean it in place
        if bad.any():
            x[bad] = np.nan
        return x

    def _view_features_match(self, view: DetectorView) -> bool:
        # The samples the view's features were computed over (the Monitor's configured window,
        # which may be shorter than the view's values); unrecorded: the whole view.
        window = getattr(view.features, "window", None) or view.window
        if not self.engine_default or (self.train_window is not None and window != self.train_window):
            return False
        if "concurrency" in self.features and set(view.metrics) != set(self.engine.metrics):
            return False
        return all(f in view.features for f in self.features)

    # -- scoring ---------------------------------------------------------------------
    def raw(self, x: np.ndarray) -> np.ndarray:
        """Raw anomaly scores (N,) (``-score_samples``) of feature rows; NaN for rows not judged."""
        n, nf = x.shape
        raw = np.full(n, np.nan)
        if n == 0:
            return raw
        missing = np.isnan(x).sum(axis=1) / nf
        rows = np.flatnonzero(missing <= self.max_missing_fraction + 1e-12)
        if rows.size == 0:
            return raw
        step = max(int(self.block_rows), 1)
        for i in range(0, rows.size, step):
            blk = rows[i:i + step]
            xb = x[blk]
            if self.impute is not None:
                xb = np.where(np.isnan(xb), self.impute, xb)
            if self.scale_input:
                assert self.center is not None and self.scale is not None
                xb = (xb - self.center) / self.scale
            xb = np.ascontiguousarray(xb, dtype=np.float32)
            out = self.session.run([self.output_name], {self.input_name: xb})[0]
            r = -np.asarray(out, dtype=np.float64).reshape(blk.size, -1)[:, 0]
            bad = ~np.isfinite(r) & np.isfinite(xb).all(axis=1)
            if bad.any():  # a failure of the detector (counted and reported), not a silent NaN: see _residual
                raise NonFiniteModelOutput(f"model {self.source} gave {int(bad.sum())} non-finite score(s) of "
                                           f"{blk.size} (first: {-r[np.argmax(bad)]!r})")
            raw[blk] = np.where(np.isfinite(r), r, np.nan)
        return raw

    def score(self, view: DetectorView) -> DetectorOutput:
        x = self.feature_matrix(view)
        s = self.calibration.transform(self.raw(x))
        if self.center is None or self.scale is None:
            return DetectorOutput(scores=s, metrics=self.features, observed=x)
        # In place on one (N, F) array: on a large fleet each pass over it costs more than the model.
        ms = np.subtract(x, self.center)
        np.abs(ms, out=ms)
        ms /= self.scale  # z; NaN where the feature is missing
        zmax = np.fmax.reduce(ms, axis=1)  # NaN only where every feature is missing
        peak = zmax > 0
        ms /= np.where(peak, zmax, 1.0)[:, None]  # share of the most deviant feature
        flat = np.flatnonzero(~peak)  # no deviation at all (or nothing observed): an equal share
        if flat.size:
            ms[flat] = np.where(np.isnan(x[flat]), np.nan, 1.0)
        ms *= s[:, None]  # NaN score: NaN evidence
        expected = np.broadcast_to(self.center, x.shape)
        return DetectorOutput(scores=s, metrics=self.features, metric_scores=ms, observed=x, expected=expected)
