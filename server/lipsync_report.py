"""The per-clip lip-sync report: every /p b m/ in the clip, its word, time and frame, and whether the lips closed.

Measured on the final motion (after the artist controls and the transcript's closures), by the one
definition of a closure in ``wav2sem_contract.lipsync``. The bilabials come from the transcript's
forced alignment when a transcript was given and fits the audio, else from the words PocketSphinx
recognises, force-aligned to the audio. Recognised words were chosen over PocketSphinx's phone
recognition (allphone mode with its own phone language model): on the VOCA recording the words'
alignment found all 5 bilabials at the transcript's times, the phone recogniser 2 (and one that is
not there); on the synthetic sample sentence neither finds any, as neither recognises that voice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from wav2sem_contract.errors import Cancelled, Wav2SemError
from wav2sem_contract.lipsync import (
    BILABIALS,
    CLOSED_THRESHOLD,
    REPORT_MARK,
    REPORT_VERSION,
    is_closed,
    judged_frames,
    middle_frame,
)

from .align import SAMPLE_RATE, force_align, recognise, to_pcm
from .models.host import Progress, no_progress

NOT_MEASURED = "closure is measured on control results only"
# The report's recognition skips PocketSphinx's second (flat-lexicon) pass and caps the HMMs searched per
# frame: a third less time (10 s of speech: 6.4 s instead of 9.6 s on a loaded 2-core machine) and the same
# words on the VOCA recording (the second pass turned "Ron's" into "rollins"); the forced alignment after it
# places the phones either way.
SEARCH = {"fwdflat": False, "maxhmmpf": 3000}
# Long clips are recognised in pieces of 10-15 s cut in pauses: Cancel is honoured between pieces (one
# PocketSphinx call cannot be interrupted), and a forced alignment's cost grows faster than its length.
PIECE_S, MIN_PIECE_S = 15.0, 10.0
QUIET_S = 0.25
# (phone, word, start s, end s)
WordPhone = tuple[str, str, float, float]


def with_words(phones: Sequence[tuple[str, float, float]], words: Sequence[str]) -> list[WordPhone]:
    """Aligned phones with the word each is in ("" where the aligner gave none)."""
    words = list(words) + [""] * max(0, len(phones) - len(words))
    return [(str(p), str(w), float(s), float(e)) for (p, s, e), w in zip(phones, words, strict=False)]


def pieces(audio: np.ndarray, rate: int = SAMPLE_RATE) -> list[tuple[int, int]]:
    """(start, end) samples of the pieces recognition takes one at a time: the whole clip up to ``PIECE_S``,
    else cuts at the quietest quarter second between ``MIN_PIECE_S`` and ``PIECE_S`` into each piece (a
    pause between words; a stop's closure is shorter)."""
    n = len(audio)
    if n <= PIECE_S * rate:
        return [(0, n)]
    hop = rate // 100
    frames = n // hop
    power = np.mean(np.square(audio[: frames * hop].reshape(frames, hop), dtype=np.float64), axis=1)
    width = int(round(QUIET_S * 100))
    quiet = np.convolve(power, np.ones(width) / width, mode="same")  # mean power over a quarter second
    out, start = [], 0
    while n - start > PIECE_S * rate:
        lo, hi = (start + int(MIN_PIECE_S * rate)) // hop, min(frames, (start + int(PIECE_S * rate)) // hop)
        cut = (lo + int(np.argmin(quiet[lo:hi]))) * hop
        out.append((start, cut))
        start = cut
    out.append((start, n))
    return out


def recognised_phones(audio: np.ndarray, progress: Progress = no_progress) -> tuple[list[WordPhone], str]:
    """The phones of the words PocketSphinx recognises in 16 kHz mono ``audio``, force-aligned, and a note
    ('' when it worked). Never raises for speech it cannot make out; only when PocketSphinx is missing or
    ``progress`` says the request was cancelled (asked between pieces)."""
    phones: list[WordPhone] = []
    heard, lost = 0, 0
    cuts = pieces(audio)
    for i, (a, b) in enumerate(cuts):
        progress("report", i / len(cuts))
        pcm = to_pcm(audio[a:b])
        words = recognise(pcm, **SEARCH)
        heard += len(words)
        if not words:
            continue
        try:
            found = force_align(pcm, words)
        except Wav2SemError:
            lost += len(words)
            continue
        offset = a / SAMPLE_RATE
        phones += [(p, w, s + offset, e + offset) for p, w, s, e in with_words(found.phones, found.phone_words)]
    if not heard:
        return [], "no words were recognised in the audio"
    notes = []
    if lost:
        notes.append(f"{lost} of the {heard} recognised words could not be aligned with the audio")
    if not any(p[0] in BILABIALS for p in phones):
        notes.append(f"no /p b m/ in the {heard} words recognised; give the transcript for a complete check")
    return phones, "; ".join(notes)


def build_report(kind: str, arrays: dict[str, np.ndarray], fps: float, phones: Sequence[WordPhone],
                 source: str, note: str = "") -> dict[str, Any]:
    """The report (format: ``wav2sem_contract.lipsync``) of a result's arrays for the bilabials in ``phones``."""
    frames = int(len(arrays["offsets" if kind == "offsets" else "weights"]))
    names = [str(n) for n in arrays.get("names", [])] if kind == "controls" else []
    close = arrays["weights"][:, names.index("mouthClose")] if "mouthClose" in names else None
    if close is None:
        why = NOT_MEASURED if kind != "controls" else "this model has no mouthClose control"
        note = f"{note}; {why}" if note else why
    entries = []
    for phone, word, start, end in phones:
        if phone not in BILABIALS:
            continue
        entry: dict[str, Any] = {"phone": phone, "word": word, "start": round(start, 3), "end": round(end, 3),
                                 "frame": middle_frame(start, end, frames, fps), "peak_close": None,
                                 "closed": None, "source": source}
        if close is not None and frames:
            span = judged_frames(start, end, frames, fps)
            entry["peak_close"] = round(float(np.max(close[span])), 3)
            entry["closed"] = is_closed(close, span)
        entries.append(entry)
    measured = close is not None
    return {"report": REPORT_MARK, "version": REPORT_VERSION, "source": source, "fps": float(fps), "frames": frames,
            "threshold": CLOSED_THRESHOLD, "measured": measured, "note": note, "bilabials": len(entries),
            "closed": sum(1 for e in entries if e["closed"]) if measured else None, "entries": entries}


def lipsync_report(kind: str, arrays: dict[str, np.ndarray], fps: float, audio: np.ndarray,
                   transcript: dict | None, progress: Progress = no_progress,
                   recognised: tuple[list[WordPhone], str] | None = None) -> dict[str, Any]:
    """The report for one generation: the transcript's aligned phones when it was used, else recognition
    (``recognised``: its phones and note when this generation already ran it)."""
    if transcript and not transcript.get("notice") and transcript.get("phones"):
        phones = with_words(transcript["phones"], transcript.get("phone_words", []))
        return build_report(kind, arrays, fps, phones, "transcript")
    if recognised is not None:
        return build_report(kind, arrays, fps, recognised[0], "recognised", recognised[1])
    try:
        phones, note = recognised_phones(audio, progress)
    except Cancelled:
        raise
    except Wav2SemError as exc:  # PocketSphinx is not installed: the result stands, the report says why
        return build_report(kind, arrays, fps, [], "none", f"{exc.message} {exc.hint}".strip())
    return build_report(kind, arrays, fps, phones, "recognised", note)
