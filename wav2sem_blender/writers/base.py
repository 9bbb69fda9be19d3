"""What every writer shares: when the frames land (``Timing``) and what it reports (``Summary``).

A writer is a module with ``SPEC`` (a ``WriterSpec``), ``write(obj, result, timing) -> Summary``
and ``clear(obj)``, listed once in ``registry.py``; optionally ``check(obj)`` (a refusal known before
inference) and ``prepare(obj, result) -> result`` (its refusals and conversions of the result, which
the operator runs before it removes an earlier run's output; ``write`` must still accept the raw result).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class WriterSpec:
    mode: str  # the enum value in the panel and the operator (e.g. "COMPACT")
    cli: str  # the name batch.py takes (e.g. "compact")
    label: str
    description: str
    request: str  # what a vertex model is asked for: "compact" or "offsets" (control models answer controls)


@dataclass(frozen=True)
class Timing:
    """Model frame i lands on scene frame ``first_frame + i * fps / model_fps`` (fractional when rates differ)."""

    model_fps: float
    first_frame: float
    fps: float

    def frames(self, n: int) -> np.ndarray:
        return self.first_frame + np.arange(n, dtype=np.float64) * (self.fps / self.model_fps)

    def last_frame(self, n: int) -> float:
        return float(self.first_frame + (n - 1) * self.fps / self.model_fps)


@dataclass
class Summary:
    frames: int
    last_frame: float
    detail: str = ""  # e.g. "17 keys, max error 0.001 mm"
    notes: list[str] = field(default_factory=list)  # things the user should know (replaced curves, a rig added)
    files: list[str] = field(default_factory=list)  # files written beside the scene (a point cache)
