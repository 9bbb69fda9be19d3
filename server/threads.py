"""How many CPU threads each phase of an inference uses (``infer`` and ``serve`` alike).

Torch's intra-op pool splits every operation across all cores and waits for the slowest
part. The per-frame decoding loops run hundreds of tiny operations per frame: each one pays
a pool hand-off, and when another process holds a core, a descheduled worker stalls the
operation for a scheduler time slice. On 2 cores, the embedded default's decoder on a 10 s
clip took 0.22-0.26 s on one thread against 0.28-1.2 s on two; with two busy processes
beside it, 0.41-0.76 s against 4.3-10.5 s. The CodeTalker loop at official size (2 s clip)
took 5.9 s on one thread and 27 s on two. So the loops always run on one thread.

The encoders run fewer, larger operations, which gain from more cores, but only from cores
nobody else is using: with two busy processes the Whisper encoder took 0.85-2.0 s on one
thread against 1.1-3.7 s on two (idle: 0.57 s against 0.37 s). ``encoder_threads`` therefore
counts the cores that are free right now (Linux: the kernel's count of running tasks) and
uses those, never more than torch's configured count (which honours ``OMP_NUM_THREADS`` and
``torch.set_num_threads``). For a wav2vec2-base encoder the measurements (6.0-8.0 s busy
whichever rule) did not separate the rules on this shared machine.

On a GPU none of this applies and torch's defaults are left alone.

``POLICY`` selects the rule (``benchmarks/thread_policy.py`` times each): ``auto`` (the
above), ``all`` (loops on one thread, encoders on torch's count), ``one`` (one thread
throughout) and ``torch`` (torch's defaults everywhere: the behaviour before this module).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

POLICIES = ("auto", "all", "one", "torch")
POLICY = "auto"


def cpu_cores() -> int:
    """Cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _running_tasks() -> int | None:
    """Tasks running or ready to run on the whole machine now, this thread included (Linux)."""
    try:
        with open("/proc/stat", "rb") as fh:
            for line in fh:
                if line.startswith(b"procs_running"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def busy_cores(samples: int = 5, gap: float = 0.002) -> int | None:
    """Cores other work keeps busy, from a few readings 2 ms apart (the smallest: a reading can
    catch a task that is about to sleep). None where the OS does not tell."""
    readings = []
    for i in range(samples):
        value = _running_tasks()
        if value is None:
            return None
        readings.append(value)
        if i + 1 < samples:
            time.sleep(gap)
    return max(0, min(readings) - 1)  # minus this thread, which is running while it reads


def encoder_threads(ceiling: int | None = None) -> int:
    """Threads for a phase of large operations: the free cores, between 1 and ``ceiling``
    (default: torch's configured count)."""
    ceiling = torch.get_num_threads() if ceiling is None else ceiling
    if ceiling <= 1:
        return 1
    busy = busy_cores()
    if busy is None:  # no count of running tasks (not Linux): trust torch's setting
        return ceiling
    return max(1, min(ceiling, cpu_cores() - busy))


@contextmanager
def _threads(count: int) -> Iterator[None]:
    before = torch.get_num_threads()
    if count != before:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if count != before:
            torch.set_num_threads(before)


def _on_cpu(device: torch.device | str | None) -> bool:
    return device is None or torch.device(device).type == "cpu"


@contextmanager
def sequential(device: torch.device | str | None = None) -> Iterator[None]:
    """One intra-op thread for a per-frame loop on the CPU (see the module docstring)."""
    if not _on_cpu(device) or POLICY == "torch":
        yield
        return
    with _threads(1):
        yield


@contextmanager
def parallel(device: torch.device | str | None = None) -> Iterator[None]:
    """As many intra-op threads as there are free cores, for an encoder on the CPU."""
    if not _on_cpu(device) or POLICY in ("torch", "all"):
        yield
        return
    with _threads(1 if POLICY == "one" else encoder_threads()):
        yield
