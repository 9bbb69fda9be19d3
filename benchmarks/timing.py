"""What the benchmarks share: a timed fresh process, and cores kept busy for a 'busy' row."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], cwd: Path = ROOT) -> float:
    """Wall seconds of ``cmd`` run to its end; a failure stops the benchmark with its message."""
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {(proc.stderr or proc.stdout).strip()[-800:]}")
    return elapsed


@contextlib.contextmanager
def busy_cores(on: bool = True) -> Iterator[None]:
    """One spinning process per core while the block runs (``on``), as on a user's machine that is rarely idle."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)] \
        if on else []
    try:
        yield
    finally:
        for proc in spinners:
            proc.kill()
            proc.wait()
