"""A dependency-free progress bar on stderr (the device install has no tqdm). Quiet when not a TTY
unless forced, so JSON on stdout and CI logs stay clean."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


class Progress:
    def __init__(self, total: int | None, desc: str = "", enabled: bool | None = None, every_s: float = 0.2) -> None:
        self.total, self.desc, self.n = total, desc, 0
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.t0 = self._last = time.perf_counter()
        self.every_s = every_s

    def update(self, k: int = 1, note: str = "") -> None:
        self.n += k
        now = time.perf_counter()
        if self.enabled and (now - self._last >= self.every_s or (self.total and self.n >= self.total)):
            self._last = now
            rate = self.n / max(now - self.t0, 1e-9)
            if self.total:
                frac = self.n / self.total
                bar = "#" * int(24 * frac) + "-" * (24 - int(24 * frac))
                eta = (self.total - self.n) / max(rate, 1e-9)
                line = f"\r{self.desc} [{bar}] {self.n}/{self.total} {rate:.1f}/s eta {eta:.0f}s {note}"
            else:
                line = f"\r{self.desc} {self.n} {rate:.1f}/s {note}"
            sys.stderr.write(line[:160])
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def track(items: Iterable[T], total: int | None = None, desc: str = "", enabled: bool | None = None) -> Iterator[T]:
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    bar = Progress(total, desc, enabled)
    try:
        for it in items:
            yield it
            bar.update()
    finally:
        bar.close()


def log_step(message: str) -> None:
    """A one-line progress message for long steps without a count (export, conversion)."""
    sys.stderr.write(f"[aligngemini] {message}\n")
    sys.stderr.flush()
