"""Progress for long steps: a bar on a terminal, periodic counts with rate and ETA in logs.

Snakemake scripts send stderr to the rule's log file, which is not a terminal, so there the
same call prints one line every `every_s` seconds instead of a bar full of carriage returns.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger("piimem")


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """Counts work done; call `update(n)` as items finish, `close()` at the end."""

    def __init__(self, total: int | None, desc: str, unit: str = "it", every_s: float = 10.0):
        self.total, self.desc, self.unit, self.every_s = total, desc, unit, every_s
        self.done = 0
        self.start = self.last = time.monotonic()
        self._bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr)

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        text = f"{self.desc}: {self.done:,}"
        if self.total:
            text += f"/{self.total:,} ({100 * self.done / self.total:.1f} %)"
        text += f" {self.unit}, {rate:,.1f} {self.unit}/s, elapsed {_duration(elapsed)}"
        if self.total and rate > 0:
            text += f", ETA {_duration((self.total - self.done) / rate)}"
        return text

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            log.info(self.line())

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        log.info(self.line() + " (done)")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track(items: Iterable[T], total: int | None, desc: str, unit: str = "it", every_s: float = 10.0) -> Iterator[T]:
    """Iterate over `items`, reporting progress as they are consumed."""
    with Progress(total, desc, unit, every_s) as progress:
        for item in items:
            yield item
            progress.update()
