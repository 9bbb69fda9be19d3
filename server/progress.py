"""Console progress for the command line: one tqdm bar on stderr across the pipeline stages."""

from __future__ import annotations

import sys

from tqdm import tqdm

# Share of the bar each stage takes; decoding dominates on CPU.
STAGES = {"audio": (0.0, 0.02), "encode": (0.02, 0.15), "decode": (0.15, 1.0)}


class ConsoleProgress:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and sys.stderr is not None and sys.stderr.isatty()  # no \r spam in logs
        self.bar: tqdm | None = None

    def __enter__(self) -> ConsoleProgress:
        if self.enabled:
            self.bar = tqdm(
                total=1000,
                file=sys.stderr,
                mininterval=0.5,
                bar_format="{desc:8} {percentage:3.0f}%|{bar}| {elapsed}<{remaining}",
            )
        return self

    def __call__(self, stage: str, fraction: float) -> None:
        if self.bar is None:
            return
        lo, hi = STAGES.get(stage, (0.0, 1.0))
        target = int(1000 * (lo + (hi - lo) * min(max(fraction, 0.0), 1.0)))
        self.bar.set_description_str(stage, refresh=False)
        if target > self.bar.n:
            self.bar.update(target - self.bar.n)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
