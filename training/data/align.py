"""Phone timings for speech without native ones: PocketSphinx (PyPI ``pocketsphinx`` 5.1.1).

Its wheel ships an en-US acoustic model and CMUdict, so this runs offline. With a transcript
the words are force-aligned; without one they are recognised first and then aligned, which
is enough to find where the bilabials are in real speech (measured on flite's own timings:
median boundary error 8 ms, see the README).
"""

from __future__ import annotations

import re

import numpy as np

from wav2sem_contract.controls import PHONES
from wav2sem_contract.errors import Wav2SemError

from .voices import map_phone

SAMPLE_RATE = 16000


def _phone(name: str) -> str:
    """PocketSphinx's ARPAbet name -> the project's phone set (fillers such as +NSN+ are pauses)."""
    name = name.upper()
    if name in PHONES:
        return name
    return "SIL" if name.startswith("+") else map_phone("flite", name)


# Forced alignment searches a single word sequence, so wide beams cost little; the default ones
# lose the path on unusual voices (measured: espeak-ng's sample sentence fails without them).
ALIGN_BEAMS = {"beam": 1e-100, "wbeam": 1e-80, "pbeam": 1e-100}


def _decoder(**beams):
    try:
        from pocketsphinx import Decoder
    except ImportError:
        raise Wav2SemError("aligner_missing", "The PocketSphinx aligner is not installed.",
                           "Install the train extra: pip install -e '.[train]'.") from None
    return Decoder(samprate=SAMPLE_RATE, bestpath=False, loglevel="FATAL", **beams)


def _decode(decoder, pcm: bytes) -> None:
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()


def align(audio: np.ndarray, text: str | None = None) -> tuple[list[str], list[tuple[str, float, float]]]:
    """(words, phones as (ARPAbet phone or SIL, start s, end s)) for 16 kHz mono float audio."""
    pcm = (np.clip(np.asarray(audio, dtype=np.float32), -1, 1) * 32767).astype("<i2").tobytes()
    if text is None:
        recogniser = _decoder()
        _decode(recogniser, pcm)
        hyp = recogniser.hyp()
        text = hyp.hypstr if hyp is not None else ""
    decoder = _decoder(**ALIGN_BEAMS)
    words = [w for w in re.sub(r"[^a-z' ]+", " ", text.lower()).split() if w]
    if not words:
        raise Wav2SemError("align_failed", "No words were recognised in the audio.", "Pass the transcript.")
    try:
        decoder.set_align_text(" ".join(words))
    except (RuntimeError, KeyError) as exc:
        raise Wav2SemError("align_failed", f"PocketSphinx cannot align this text ({exc}).",
                           "Check the transcript's words are English dictionary words.") from None
    _decode(decoder, pcm)
    try:
        decoder.set_alignment()
    except RuntimeError:
        raise Wav2SemError("align_failed", "PocketSphinx could not align the words with the audio.",
                           "Check that the transcript matches what is said.") from None
    _decode(decoder, pcm)
    phones = []
    for word in decoder.get_alignment():
        for phone in word:
            start = phone.start / 100.0  # 10 ms frames
            phones.append((_phone(phone.name), start, start + phone.duration / 100.0))
    return words, phones
