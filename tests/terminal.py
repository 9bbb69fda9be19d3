"""Run a command with its stderr on a real pseudo-terminal (stdlib ``os.openpty``), as a user's
terminal would be, and collect what it drew there."""

from __future__ import annotations

import os
import select
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class TerminalRun:
    returncode: int
    screen: str  # everything written to the terminal, carriage returns included
    stdout: str


def run_on_terminal(argv: list[str], cwd: Path, timeout: float = 300.0,
                    watch: Callable[[int], None] | None = None) -> TerminalRun:
    """``argv`` with stderr on a fresh pseudo-terminal and stdout on a pipe; killed after ``timeout``.
    ``watch(pid)`` is called about every 0.2 s while it runs.

    The terminal is left at the size a fresh one reports (0 columns), which is what some
    terminals and remote shells report too: the bar must still be drawn there.
    """
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed its end
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
            if watch is not None:
                watch(proc.pid)
        else:
            proc.kill()
            raise TimeoutError(f"{argv[:4]} did not finish within {timeout:.0f} s")
        stdout = proc.communicate(timeout=30)[0]
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return TerminalRun(proc.returncode, b"".join(chunks).decode("utf-8", "replace"), stdout.decode())
