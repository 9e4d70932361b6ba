"""Progress of a long step (storing images, embedding a test set) that reads well in a terminal and in a log file.

On a terminal: a tqdm bar on stderr. Elsewhere (Snakemake and SLURM log files): one plain line at most every
``interval_s`` seconds, and a last line with the total and the time taken when the step took that long; no
carriage returns. A step shorter than ``interval_s`` prints nothing there.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import IO, Any

LOG_INTERVAL_S = 30.0
"""Seconds between two plain progress lines in a log file."""


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


class Progress:
    """Counts ``unit`` done towards ``total`` (None: unknown) under ``label``; use as a context manager and call
    :meth:`update`. ``stream``: where to report (default: stderr); nothing is reported when not ``enabled``."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        unit: str = "images",
        *,
        interval_s: float = LOG_INTERVAL_S,
        stream: IO[str] | None = None,
        enabled: bool = True,
    ) -> None:
        self.label, self.total, self.unit, self.interval_s = label, total, unit, interval_s
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.done = 0
        self._bar: Any = None
        self._started = self._last = 0.0
        self._lines = 0

    def __enter__(self) -> Progress:
        self._started = self._last = time.monotonic()
        if self.enabled and self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=self.label, unit=self.unit, file=self.stream, leave=False)
        return self

    def update(self, n: int = 1) -> None:
        """``n`` more ``unit`` done."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if self.enabled and now - self._last >= self.interval_s:
            self._last = now
            self._lines += 1
            share = f" ({100 * self.done / self.total:.0f} %)" if self.total else ""
            of = f" of {self.total:,}" if self.total is not None else ""
            self._write(f"{self.label}: {self.done:,}{of} {self.unit}{share}, {_duration(now - self._started)}")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._lines and exc_type is None:
            self._write(f"{self.label}: {self.done:,} {self.unit} in {_duration(time.monotonic() - self._started)}")

    def _write(self, line: str) -> None:
        print(line, file=self.stream, flush=True)
