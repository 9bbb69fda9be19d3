"""Word and phone timings from speech: PocketSphinx (PyPI ``pocketsphinx`` 5.1.1).

Its wheel ships an en-US acoustic model and CMUdict, so this runs offline. With a transcript
the words are force-aligned; without one they are recognised first and then aligned, which
is enough to find where the bilabials are in real speech (measured on flite's own timings:
median boundary error 8 ms, see the README). The server's transcript mode
(``server/transcript.py``) and the training tools both use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from wav2sem_contract.controls import PHONES
from wav2sem_contract.errors import Wav2SemError

SAMPLE_RATE = 16000
FRAME_S = 0.01  # PocketSphinx's frame: 10 ms

# Forced alignment searches a single word sequence, so wide beams cost little; the default ones
# lose the path on unusual voices (measured: espeak-ng's sample sentence fails without them).
ALIGN_BEAMS = {"beam": 1e-100, "wbeam": 1e-80, "pbeam": 1e-100}

Phone = tuple[str, float, float]


@dataclass
class Alignment:
    """A forced alignment: the words that were aligned, their phones, and PocketSphinx's score."""

    words: list[str]  # the words given to the aligner, in order
    word_times: list[tuple[str, float, float]] = field(default_factory=list)  # (word, start s, end s), no pauses
    phones: list[Phone] = field(default_factory=list)  # (phone or SIL, start s, end s), pauses included
    phone_words: list[str] = field(default_factory=list)  # the word each phone is in ("" for pauses)
    score: int = 0  # acoustic log-score of the whole path (PocketSphinx's log base 1.0001)
    frames: int = 0  # 10 ms frames the path covers


def phone_name(name: str) -> str:
    """PocketSphinx's ARPAbet name -> the project's phone set (fillers such as +NSN+ and SIL are pauses)."""
    name = name.upper()
    if name in PHONES:
        return name
    return "SIL"  # the en-us model's only other units are fillers (+NSN+, +SPN+, ...)


def words_of(text: str) -> list[str]:
    """The dictionary spelling of a transcript: lower case, letters and apostrophes only."""
    return [w for w in re.sub(r"[^a-z' ]+", " ", text.lower()).split() if w.strip("'")]


def to_pcm(audio: np.ndarray) -> bytes:
    """16 kHz mono float audio -> the 16-bit little-endian PCM PocketSphinx reads."""
    return (np.clip(np.asarray(audio, dtype=np.float32), -1, 1) * 32767).astype("<i2").tobytes()


def decoder(**options):
    """A PocketSphinx decoder, or one plain sentence saying how to install it."""
    try:
        from pocketsphinx import Decoder
    except ImportError:
        raise Wav2SemError("aligner_missing", "The PocketSphinx aligner (transcript mode) is not installed.",
                           "Install it into the server's Python: pip install pocketsphinx==5.1.1 "
                           "(the add-on's Set Up does).") from None
    return Decoder(samprate=SAMPLE_RATE, bestpath=False, loglevel="FATAL", **options)


def _decode(dec, pcm: bytes) -> None:
    dec.start_utt()
    dec.process_raw(pcm, full_utt=True)
    dec.end_utt()


def recognise(pcm: bytes, **search) -> list[str]:
    """The words PocketSphinx hears (its default en-US language model), in dictionary spelling; ``search``:
    decoder options (the transcript's fit check was measured with the defaults)."""
    dec = decoder(**search)
    _decode(dec, pcm)
    hyp = dec.hyp()
    return words_of(hyp.hypstr if hyp is not None else "")


def unknown_words(words: list[str]) -> list[str]:
    """The words CMUdict (PocketSphinx's dictionary) has no pronunciation for."""
    dec = decoder(lm=None)  # the dictionary only: loading the language model costs most of a second
    return [w for w in words if dec.lookup_word(w) is None]


def force_align(pcm: bytes, words: list[str]) -> Alignment:
    """Force-align ``words`` (dictionary spelling) to the audio; Wav2SemError 'align_failed' when it cannot."""
    if not words:
        raise Wav2SemError("align_failed", "No words were recognised in the audio.", "Pass the transcript.")
    dec = decoder(lm=None, **ALIGN_BEAMS)  # alignment searches the given words only: no language model
    try:
        dec.set_align_text(" ".join(words))
    except (RuntimeError, KeyError) as exc:
        raise Wav2SemError("align_failed", f"PocketSphinx cannot align this text ({exc}).",
                           "Check the transcript's words are English dictionary words.") from None
    _decode(dec, pcm)
    try:
        dec.set_alignment()
    except RuntimeError:
        raise Wav2SemError("align_failed", "PocketSphinx could not align the words with the audio.",
                           "Check that the transcript matches what is said.") from None
    _decode(dec, pcm)
    result = Alignment(words=list(words))
    for word in dec.get_alignment():
        start, end = word.start * FRAME_S, (word.start + word.duration) * FRAME_S
        result.score += int(word.score)
        result.frames += int(word.duration)
        name = re.sub(r"\(\d+\)$", "", word.name)  # "to(2)": CMUdict's second pronunciation
        if not name.startswith(("<", "+", "[")):  # <sil>, <s>, fillers
            result.word_times.append((name, start, end))
        spoken = "" if name.startswith(("<", "+", "[")) else name
        for phone in word:
            p0 = phone.start * FRAME_S
            result.phones.append((phone_name(phone.name), p0, p0 + phone.duration * FRAME_S))
            result.phone_words.append(spoken)
    return result


def align(audio: np.ndarray, text: str | None = None) -> tuple[list[str], list[Phone]]:
    """(words, phones as (ARPAbet phone or SIL, start s, end s)) for 16 kHz mono float audio."""
    pcm = to_pcm(audio)
    words = recognise(pcm) if text is None else words_of(text)
    return words, force_align(pcm, words).phones
