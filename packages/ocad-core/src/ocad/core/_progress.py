"""A dependency-free progress indicator for long CLI work (stderr only)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``with Progress(total, "scoring") as p: p.update(1)``; a bar on a TTY, 10% lines otherwise."""

    def __init__(self, total: int, label: str, *, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total = max(int(total), 1)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.done = 0
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_decile = -1
        self._t0 = time.perf_counter()
        self._last_draw = 0.0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled and not exc[0]:
            self.done = self.total
            self._draw(final=True)

    def update(self, n: int = 1) -> None:
        self.done = min(self.done + n, self.total)
        if self.enabled:
            self._draw()

    def _draw(self, final: bool = False) -> None:
        frac = self.done / self.total
        el = time.perf_counter() - self._t0
        if self._tty:
            now = time.perf_counter()
            if not final and now - self._last_draw < 0.1:
                return
            self._last_draw = now
            bar = "#" * int(frac * 30)
            eta = el / frac - el if frac > 0 else 0.0
            self.stream.write(f"\r{self.label}: [{bar:<30}] {frac:6.1%} {el:6.1f}s eta {eta:5.1f}s")
            if final:
                self.stream.write("\n")
            self.stream.flush()
        else:
            dec = int(frac * 10)
            if dec > self._last_decile:
                self._last_decile = dec
                self.stream.write(f"{self.label}: {frac:.0%} ({el:.1f}s)\n")
                self.stream.flush()
