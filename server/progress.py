"""Progress bars for the command lines (``python -m server``, ``python -m training``).

One tqdm bar on stderr, and only when stderr is a terminal: in a log file or a pipe the bars'
carriage returns would be noise, so there the commands print nothing but their final line.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm

# Share of the ``infer`` bar each stage takes. Rough on purpose: loading (importing torch and
# transformers) is most of a short run on the default model, decoding most of a long one with a
# big model; the bar therefore shows the stage and the elapsed time, never a time estimate.
STAGES = {
    "loading": (0.0, 0.4),
    "audio": (0.4, 0.45),
    "align": (0.45, 0.5),  # transcript mode only
    "encode": (0.5, 0.6),
    "decode": (0.6, 0.95),
    "compact": (0.95, 0.98),
    "report": (0.95, 0.98),  # the lip-sync report (after compact on vertex models: the bar waits there)
    "saving": (0.98, 1.0),
}
FALLBACK_SIZE = (80, 24)
TICK = 0.5  # seconds between redraws while one long call (an import, a file read) runs


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


def terminal_size() -> dict[str, int]:
    """tqdm's ``ncols``/``nrows`` for stderr's terminal, with 80 x 24 where it reports no size. A fresh
    pseudo-terminal says 0 x 0, and tqdm then draws nothing at all (it takes 0 rows to mean that
    no bar fits): the user sees one blank line."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
        columns, rows = size.columns, size.lines
    except (AttributeError, ValueError, OSError):
        columns = rows = 0
    return {"ncols": columns or int(os.environ.get("COLUMNS", "0") or 0) or FALLBACK_SIZE[0],
            "nrows": rows or int(os.environ.get("LINES", "0") or 0) or FALLBACK_SIZE[1]}


class _Bar(tqdm):
    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:  # the error line should stand alone, not under a half-full bar
            self.leave = False
        super().__exit__(exc_type, *exc)


def console_bar(iterable: Iterable[Any] | None = None, *, total: float | None = None, desc: str = "",
                unit: str = "it", enabled: bool = True, mininterval: float = 0.5, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr (over ``iterable``, or updated by hand up to ``total``), disabled (a no-op
    with the same methods, and iterating as the plain iterable) unless stderr is a terminal.

    Use it in a ``with`` block: an exception then wipes the bar, so that the command's one error
    line is not written after the bar's text on the same line.
    """
    on = enabled and stderr_is_terminal()
    size = terminal_size() if on else {}
    return _Bar(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, disable=not on,
                mininterval=mininterval, **size, **kwargs)


def console_write(text: str) -> None:
    """One line on stderr that does not tear an open bar (tqdm clears and redraws around it)."""
    tqdm.write(text, file=sys.stderr)


class _Ticker:
    """Redraws a bar every ``TICK`` seconds so its elapsed time moves while one call blocks."""

    def __init__(self, bar: tqdm) -> None:
        self.bar = bar
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="progress-ticker", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(TICK):
            self.bar.refresh()  # takes the bar's own lock, so it never interleaves with update()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


class ConsoleProgress:
    """The ``infer`` bar: a pipeline ``Progress`` callback (``progress(stage, fraction)``) that
    moves one bar across ``STAGES``, named after the current stage, from before the heavy
    imports to the saved file."""

    def __init__(self, enabled: bool = True, stages: dict[str, tuple[float, float]] | None = None) -> None:
        self.enabled = enabled
        self.stages = STAGES if stages is None else stages
        self.bar: tqdm | None = None  # None: no bar is drawn (disabled, or not a terminal)
        self._ticker: _Ticker | None = None

    def __enter__(self) -> ConsoleProgress:
        bar = console_bar(total=1000, desc=next(iter(self.stages), ""), enabled=self.enabled, mininterval=0.2,
                          bar_format="{desc:<8} {percentage:3.0f}%|{bar}| {elapsed}")
        if not bar.disable:
            self.bar, self._ticker = bar, _Ticker(bar)
        return self

    def __call__(self, stage: str, fraction: float) -> None:
        if self.bar is None:
            return
        lo, hi = self.stages.get(stage, (0.0, 1.0))
        target = int(1000 * (lo + (hi - lo) * min(max(fraction, 0.0), 1.0)))
        changed = self.bar.desc != stage
        self.bar.set_description_str(stage, refresh=False)
        if target > self.bar.n:
            self.bar.update(target - self.bar.n)
        if changed:  # a new stage shows at once, whatever mininterval says
            self.bar.refresh()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self._ticker is not None:
            self._ticker.close()
        if self.bar is not None:
            if exc_type is None:
                self.bar.update(self.bar.total - self.bar.n)
            self.bar.__exit__(exc_type, *exc)  # wiped on an error, as every console_bar

