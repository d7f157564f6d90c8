"""Progress of long commands, on a terminal and in log files alike.

On a terminal this is a tqdm bar. Written to a file or a pipe (a batch job's log, `nbp ... 2> log`) a bar
is a stream of carriage returns, and tqdm would show nothing at all; there the progress is a plain line
at the start, every `every` seconds and at the end.
"""

from __future__ import annotations

import sys
import time
from typing import Iterable, TextIO


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
             enabled: bool = True, stream: TextIO | None = None, every: float = 30.0, **bar_options):
    """A progress bar over `iterable` (or updated by hand with `.update(n)`), whatever stderr is."""
    from tqdm import tqdm

    stream = stream or sys.stderr
    if not enabled:
        return tqdm(iterable, total=total, disable=True)
    if stream.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, file=stream, **bar_options)
    return LogProgress(iterable, total=total, desc=desc, unit=unit, stream=stream, every=every)


class LogProgress:
    """The part of tqdm's interface the commands use, written as whole lines."""

    def __init__(self, iterable=None, *, total=None, desc="", unit="it", stream=None, every=30.0):
        self.iterable = iterable
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.desc, self.unit, self.stream, self.every = desc, unit, stream or sys.stderr, every
        self.n, self.postfix, self.closed = 0, "", False
        self.started = self.last = time.monotonic()
        self._write()

    def _write(self) -> None:
        done = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        postfix = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {done} {self.unit}{share}, {time.monotonic() - self.started:.0f} s{postfix}",
              file=self.stream, flush=True)

    def _maybe_write(self) -> None:
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._write()

    def update(self, n: int = 1) -> None:
        self.n += n
        self._maybe_write()

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.postfix = text
        self._maybe_write()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._write()

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
