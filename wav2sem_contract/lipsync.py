"""The lip-sync report: when a bilabial counts as closed, and the report's JSON file.

numpy + stdlib only. One definition of a closure serves the server's per-clip report
(``server/lipsync_report.py``), the training evaluation (``training/eval/transcript.py``,
``training/data/visemes.py``) and the add-on's panel: a /p b m/ is closed when mouthClose passes
``CLOSED_THRESHOLD`` at one of the frames it contains (frames k with start <= k / fps < end).

A report (``dict``, saved as ``<result>.lipsync.json`` next to a result by ``infer`` and batch.py,
and inside the result's ``.npz``) is::

    {"report": "wav2sem lip sync", "version": 1, "source": "transcript" | "recognised" | "none", "fps": 30.0, "frames": T,
     "threshold": 0.5, "measured": true, "note": "", "bilabials": N, "closed": n,
     "entries": [{"phone": "P", "word": "pam", "start": 2.5, "end": 2.6, "frame": 77,
                  "peak_close": 0.97, "closed": true, "source": "transcript"}, ...]}

``frame`` is 0-based in the result (its middle, at the result's fps); ``closed`` and ``peak_close``
are null where the result has no mouthClose (vertex offsets: ``measured`` false, ``note`` says so).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import Wav2SemError

BILABIALS = ("P", "B", "M")
CLOSED_THRESHOLD = 0.5
REPORT_VERSION = 1
REPORT_MARK = "wav2sem lip sync"  # the "report" field: a file without it is not ours to replace or remove
SUFFIX = ".lipsync.json"


# ------------------------------------------------------------------------------------ the definition
def span_frames(start: float, end: float, n_frames: int, fps: float) -> np.ndarray:
    """The frames k < n_frames with start <= k / fps < end (empty when none samples the span)."""
    k0 = max(0, math.ceil(float(start) * fps - 1e-9))
    k1 = min(int(n_frames), math.ceil(float(end) * fps - 1e-9))  # first frame with k/fps >= end
    return np.arange(k0, max(k0, k1), dtype=np.int64)


def closure_frames(phones: Iterable[Sequence], n_frames: int, fps: float) -> list[np.ndarray]:
    """For each bilabial (P B M) in ``phones`` ((phone, start s, end s, ...)), in order, its frames."""
    return [span_frames(p[1], p[2], n_frames, fps) for p in phones if str(p[0]) in BILABIALS]


def is_closed(close: np.ndarray, frames: np.ndarray, threshold: float = CLOSED_THRESHOLD) -> bool:
    """Does mouthClose pass ``threshold`` at one of ``frames``?"""
    return bool(np.any(np.asarray(close)[frames] > threshold))


def closure_hits(close: np.ndarray, phones: Iterable[Sequence], fps: float,
                 threshold: float = CLOSED_THRESHOLD) -> list[bool]:
    """Per /p b m/ that contains a frame: is it closed (``is_closed``)?"""
    return [is_closed(close, f, threshold) for f in closure_frames(phones, len(close), fps) if f.size]


def middle_frame(start: float, end: float, n_frames: int, fps: float) -> int:
    """The frame nearest the middle of a span, inside the result."""
    return min(max(int(n_frames) - 1, 0), max(0, int(round(0.5 * (float(start) + float(end)) * fps))))


def judged_frames(start: float, end: float, n_frames: int, fps: float) -> np.ndarray:
    """The frames a report judges a bilabial on: its own (``span_frames``), or, for one shorter than a
    frame that no frame samples, the frame nearest its middle (the evaluation leaves those out; a report
    that skipped them would hide a closure the animator may need to fix)."""
    frames = span_frames(start, end, n_frames, fps)
    if frames.size or n_frames <= 0:
        return frames
    return np.array([middle_frame(start, end, n_frames, fps)], dtype=np.int64)


# ------------------------------------------------------------------------------------ the report file
def report_path(result: str | Path) -> Path:
    """``x.npz`` -> ``x.lipsync.json`` (any other suffix is replaced the same way)."""
    result = Path(result)
    return result.with_name(result.stem + SUFFIX)


def write_report(result: str | Path, report: dict[str, Any]) -> Path:
    """Write ``report`` atomically next to ``result`` (a reader never sees half a file); its path."""
    path = report_path(result)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise Wav2SemError("result_unwritable", f"The lip-sync report could not be written to '{path}' "
                           f"({exc.strerror or exc}).", "Choose an output folder you can write to.") from exc
    return path


def is_report_file(path: str | Path) -> bool:
    """Whether ``path`` holds a report this project wrote: the mark, or (reports from before the mark)
    version 1 with the report's own fields."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict):
        return False
    return data.get("report") == REPORT_MARK or (
        data.get("version") == 1 and {"source", "threshold", "entries", "bilabials"} <= set(data))


def save_beside(result: str | Path, report: dict[str, Any] | None) -> None:
    """``report`` next to ``result`` (``write_report``); with none, an earlier run's report there is removed,
    since it would describe another result, but only when it is one of ours (``is_report_file``): a user's
    own file of that name stays."""
    if report is not None:
        write_report(result, report)
    elif is_report_file(report_path(result)):
        report_path(result).unlink(missing_ok=True)


def summary_line(report: dict[str, Any] | None, first_frame: float = 0.0, frame_scale: float = 1.0,
                 most: int = 3) -> str:
    """One line: 'lip sync: 7 of 8 bilabials closed; open: "map" 3.41 s (frame 102)'.

    Frames are the result's, shifted and scaled to a scene's when ``first_frame`` / ``frame_scale``
    are given (the add-on's Timing).
    """
    if not report:
        return "lip sync: no report"
    entries = report.get("entries") or []
    where = {"transcript": "aligned from the transcript", "recognised": "recognised in the audio"}.get(
        report.get("source", ""), "")
    note = report.get("note") or ""
    if not entries:
        return f"lip sync: no bilabials to check ({note or 'no /p b m/ found'})"
    if not report.get("measured", True):
        where = f" {where}" if where else ""
        return f"lip sync: {len(entries)} bilabials{where}, closure not measured" + (f" ({note})" if note else "")
    missed = [e for e in entries if e.get("closed") is False]
    line = f"lip sync: {len(entries) - len(missed)} of {len(entries)} bilabials closed"
    if missed:
        shown = ", ".join(f'"{e.get("word") or "?"}" {e["start"]:.2f} s '
                          f'(frame {round(first_frame + e["frame"] * frame_scale)})' for e in missed[:most])
        more = f" and {len(missed) - most} more" if len(missed) > most else ""
        line += f"; open: {shown}{more}"
    return line


def heard_closures_line(info: dict[str, Any] | None) -> str:
    """One line on what ``close_recognised`` did, from the result's ``recognised_closures`` provenance
    ('' when it was not asked for, or a transcript that fits made the closures instead)."""
    if not info:
        return ""
    line = f"recognised words: {info.get('closures', 0)} lip closures enforced at their /p b m/"
    return f"{line} ({info['note']})" if info.get("note") else line
