"""Progress with a rate and an ETA for every long loop (prepare, train, evaluate, probe,
AVA training and evaluation, distinit_targets): one implementation.

    progress = Progress(total=400)               # units: steps, clips, videos ...
    for batch in dataset:
        ...
        progress.update(len(batch))
        if progress.due(30):                     # the first unit, then every 30 s, the last
            log(f"evaluated {progress.line('clips')}")
    # -> "evaluated 120/400 clips, 3.1 clips/s, elapsed 0:00:41, ETA 0:01:30"

The rate leaves out the first update: the first step or batch of a TensorFlow loop also
traces and compiles its graph (seconds to minutes), which a rate from the start would spread
over the whole run. It is measured from the end of the first update, so the ETA is unknown
("?") until a second one. `skip_first=False` counts from the start instead (units that each
carry their own start-up cost, e.g. the endpoints of a probe sweep).

A leaf of the package (no TensorFlow, no d3d_tf import): `clock` is injectable for tests.
"""
from __future__ import annotations

import math
import time


def hms(seconds: float | None) -> str:
    """`H:MM:SS` of a duration in seconds (rounded); `?` for None or NaN."""
    if seconds is None or math.isnan(seconds):
        return "?"
    seconds = max(0, round(seconds))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Counts units of work done toward `total` (None: unknown) and estimates the time left.

    Times are seconds of `clock` (default `time.monotonic`).
    """

    def __init__(self, total: int | None, *, skip_first: bool = True, clock=time.monotonic):
        self.total = total
        self.clock = clock
        self.done = 0
        self.start = clock()
        # (time, done) the rate counts from: the start, or the end of the first update.
        self._base = None if skip_first else (self.start, 0)
        self._last_due = None

    def update(self, n: int = 1) -> None:
        """`n` more units are done."""
        self.done += n
        if self._base is None:
            self._base = (self.clock(), self.done)

    def elapsed(self) -> float:
        """Seconds since the start (the first update included)."""
        return self.clock() - self.start

    def rate(self) -> float | None:
        """Units per second since the end of the first update (or the start); None until
        there is a unit and a second to measure."""
        if self._base is None:
            return None
        t0, done0 = self._base
        dt, units = self.clock() - t0, self.done - done0
        return units / dt if units > 0 and dt > 0 else None

    def eta(self) -> float | None:
        """Seconds left at the measured rate: 0 once `total` is reached; None when the total
        or the rate is unknown."""
        if self.total is None:
            return None
        if self.done >= self.total:
            return 0.0
        rate = self.rate()
        return (self.total - self.done) / rate if rate else None

    def due(self, interval: float) -> bool:
        """Whether a progress line is due: at the first call, then once `interval` seconds
        have passed since the last line, and when `total` is reached."""
        now = self.clock()
        finished = self.total is not None and self.done >= self.total
        if self._last_due is None or finished or now - self._last_due >= interval:
            self._last_due = now
            return True
        return False

    def line(self, unit: str) -> str:
        """`12/240 steps, 3.1 steps/s, elapsed 0:00:05, ETA 0:01:14`."""
        rate = self.rate()
        count = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        speed = "?" if rate is None else f"{rate:.0f}" if rate >= 100 else f"{rate:.3g}"
        speed = f"{speed} {unit}/s"
        return f"{count} {unit}, {speed}, elapsed {hms(self.elapsed())}, ETA {hms(self.eta())}"
