"""The lip-sync report in the scene: stored with the .blend, listed in the panel, each entry a jump to its frame.

The server measures it (``server/lipsync_report.py``); here its frames, which are the result's, are
mapped to scene frames with the same ``Timing`` the writers key with, so an entry's frame is the
frame whose key shows that bilabial. The full report is kept as JSON too (batch.py writes it next
to each output .blend).
"""

from __future__ import annotations

import json
from typing import Any

from wav2sem_contract.lipsync import summary_line

from .writers.base import Timing

CLOSED_STATES = [
    ("CLOSED", "Closed", "mouthClose passes the threshold at one of the bilabial's frames"),
    ("OPEN", "Open", "the lips stay apart through the bilabial: fix this frame"),
    ("UNMEASURED", "Not Measured", "the result has no mouthClose (a vertex model)"),
]


def scene_frame(frame: int, timing: Timing) -> int:
    """A result frame -> the nearest scene frame, as the writers place its key."""
    return int(round(timing.first_frame + frame * timing.fps / timing.model_fps))


def store(settings, report: dict[str, Any] | None, timing: Timing, object_name: str = "") -> str:
    """Replace the scene's report with ``report`` (None: clear it); the summary line, in scene frames."""
    settings.lipsync.clear()
    settings.lipsync_index = 0
    if report is None:
        settings.lipsync_summary = settings.lipsync_json = settings.lipsync_object = ""
        return ""
    for entry in report.get("entries", []):
        item = settings.lipsync.add()
        item.phone = str(entry.get("phone", ""))
        item.word = str(entry.get("word") or "")
        item.start = float(entry.get("start", 0.0))
        item.end = float(entry.get("end", 0.0))
        item.frame = scene_frame(int(entry.get("frame", 0)), timing)
        closed = entry.get("closed")
        item.state = "UNMEASURED" if closed is None else "CLOSED" if closed else "OPEN"
        peak = entry.get("peak_close")
        item.peak_close = -1.0 if peak is None else float(peak)
    line = summary_line(report, timing.first_frame, timing.fps / timing.model_fps)
    settings.lipsync_summary = line
    settings.lipsync_json = json.dumps(report)
    settings.lipsync_object = object_name
    return line


def row_text(item) -> str:
    """An entry as the panel lists it: "p  'people'  1.23 s  frame 37"."""
    word = f"'{item.word}'" if item.word else "?"
    return f"{item.phone.lower()}  {word}  {item.start:.2f} s  frame {item.frame}"
