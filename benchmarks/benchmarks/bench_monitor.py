"""Monitor.observe: one tick of the whole stack (validation to alert events)."""

from __future__ import annotations

from .common import has_module, warm_monitor


class TickSuite:
    """One steady-state tick of N endpoints with every detector (ML ones when their models are shipped).

    ``time_observe_tick`` uses ``observe_columns``, the columnar path for fleets;
    ``TickRecordsSuite`` measures the per-record path. Windows are full before the
    first timed tick (see ``common.warm_monitor``); every call is a new tick.
    """

    params = [1, 1_000, 10_000, 100_000]
    param_names = ["endpoints"]
    timeout = 900
    number = 1  # each call advances the Monitor by one tick; never repeat a tick
    repeat = (1, 5, 20.0)
    warmup_time = 0

    def setup(self, n: int) -> None:
        if not has_module("ocad.core"):
            raise NotImplementedError("ocad-core is not installed")
        self.mon, self.src = warm_monitor(n)
        self.mon.observe_columns(*self.src.next())  # first scored tick: lazy initialisation

    def time_observe_tick(self, n: int) -> None:
        self.mon.observe_columns(*self.src.next())

    def peakmem_observe_tick(self, n: int) -> None:
        self.mon.observe_columns(*self.src.next())


class TickRecordsSuite:
    """``Monitor.observe`` on a list of record dicts (what a collector sends per sample)."""

    params = [1, 1_000]
    param_names = ["endpoints"]
    timeout = 300
    number = 1
    repeat = (1, 20, 10.0)
    warmup_time = 0

    def setup(self, n: int) -> None:
        self.mon, self.src = warm_monitor(n)
        self.mon.observe(self.src.next_records())

    def time_observe_records(self, n: int) -> None:
        self.mon.observe(self.src.next_records())


class CoreTickSuite:
    """The same tick without the ML detectors: what ocad-core alone costs."""

    params = [1, 10_000]
    param_names = ["endpoints"]
    timeout = 300
    number = 1
    repeat = (1, 10, 10.0)
    warmup_time = 0

    def setup(self, n: int) -> None:
        self.mon, self.src = warm_monitor(n, ml=False)
        self.mon.observe_columns(*self.src.next())

    def time_observe_tick(self, n: int) -> None:
        self.mon.observe_columns(*self.src.next())
