"""Each stage alone on the view of one tick: the feature engine and every detector."""

from __future__ import annotations

from .common import TickSource, make_monitor, prefill, view_of

DETECTORS = ["rule", "spike", "changepoint", "continuity", "concurrency", "residual", "multivariate"]


class DetectorSuite:
    """``detector.score(view)`` for one tick of N endpoints (windows full, features computed)."""

    params = [DETECTORS, [1, 1_000, 10_000]]
    param_names = ["detector", "endpoints"]
    timeout = 600
    repeat = (1, 10, 10.0)

    def setup(self, name: str, n: int) -> None:
        mon = make_monitor(ml=name in ("residual", "multivariate"))
        dets = {d.name: d for d in mon.detectors}
        if name not in dets:
            raise NotImplementedError(f"detector {name!r} not available (ML models not shipped?)")
        self.det = dets[name]
        src = TickSource(n)
        prefill(mon, src)
        self.view = view_of(mon, src)
        self.det.score(self.view)  # lazy initialisation (onnxruntime) outside the timing

    def time_score(self, name: str, n: int) -> None:
        self.det.score(self.view)


class FeatureSuite:
    """``FeatureEngine.compute`` of one tick: the window features every detector reads."""

    params = [1, 1_000, 10_000, 100_000]
    param_names = ["endpoints"]
    timeout = 600
    repeat = (1, 10, 10.0)

    def setup(self, n: int) -> None:
        mon = make_monitor(ml=False)
        src = TickSource(n)
        prefill(mon, src)
        self.engine = mon.features
        self.values, self.ts = mon.store.window_of(mon.store.lookup(src.ids))

    def time_compute(self, n: int) -> None:
        self.engine.compute(self.values, self.ts)

    def peakmem_compute(self, n: int) -> None:
        self.engine.compute(self.values, self.ts)


class ResidualBlockSuite:
    """The residual detector on one tick of 10 000 endpoints, forecasters run in blocks of ``rows``.

    ``rows`` = 1 000 000: one ``session.run`` per metric for the whole tick (before issue #12).
    Time and peak memory: onnxruntime keeps every intermediate tensor of a call.
    """

    params = [[64, 256, 1_024, 4_096, 1_000_000], [10_000]]
    param_names = ["rows", "endpoints"]
    timeout = 600
    repeat = (1, 10, 10.0)

    def setup(self, rows: int, n: int) -> None:
        mon = make_monitor(ml=True)
        dets = {d.name: d for d in mon.detectors}
        if "residual" not in dets:
            raise NotImplementedError("residual detector not available (ML models not shipped?)")
        self.det = dets["residual"]
        for fc in self.det.forecasters:
            fc.block_rows = rows
        src = TickSource(n)
        prefill(mon, src)
        self.view = view_of(mon, src)
        self.det.score(self.view)

    def time_score(self, rows: int, n: int) -> None:
        self.det.score(self.view)

    def peakmem_score(self, rows: int, n: int) -> None:
        self.det.score(self.view)
