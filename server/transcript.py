"""Transcript-assisted mode: what a known dialogue line adds to audio-only lip sync.

Given the words that are said, PocketSphinx force-aligns them (``server/align.py``) and:

(a) ``enforce_closures``: at every aligned /p b m/ the lips close for certain. mouthClose (and
    mouthPress) are raised and the lip-apart controls (jawOpen, mouthLowerDown, mouthUpperUp,
    mouthFunnel) lowered towards the bilabial targets of the training visemes, through an
    envelope that is 1 over the phone and falls to 0 with raised-cosine ramps: never a step,
    and every blended value stays between the model's own value and the target, so in [0, 1];
(b) the teacher's embedding of the given sentence replaces the semantic vector the model
    predicts from audio (``server/teacher.py``; the pipeline passes it to the host).

An alignment that fails or does not fit the audio (a wrong transcript) is not used: the result
is the audio-only one with a one-line notice (``TranscriptAlignment.notice``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from wav2sem_contract.errors import Wav2SemError

from .align import Alignment, Phone, force_align, recognise, to_pcm, unknown_words, words_of

BILABIALS = ("P", "B", "M")
# Where the lips go at a closure: the bilabial targets of training/data/visemes.py (P B M), the
# most closed of the three for each control. None: the control is left as the model has it (the
# lips keep their rounding or spreading while closed, as in the training targets).
CLOSURE_TARGETS = {
    "mouthClose": ("raise", 1.0),
    "mouthPress_L": ("raise", 0.35),
    "mouthPress_R": ("raise", 0.35),
    "jawOpen": ("lower", 0.07),
    "mouthLowerDown_L": ("lower", 0.0),
    "mouthLowerDown_R": ("lower", 0.0),
    "mouthUpperUp_L": ("lower", 0.0),
    "mouthUpperUp_R": ("lower", 0.0),
    "mouthFunnel": ("lower", 0.0),
}
# Raised-cosine ramp on each side of a closure (2.4 frames at 30 fps), shortened to half the
# neighbouring phone (never below 2 frames) so that a vowel between two closures still opens.
RAMP_S = 0.08
# A transcript fits the audio when its forced alignment scores per 10 ms frame no more than this
# below the alignment of the words PocketSphinx recognises by itself, and its words cover most of
# the speech. Measured on 32 synthetic clips (4 voices) and the VOCA recording: right transcripts
# -3.7 to +1.1 (but up to 23 for espeak-ng's Scottish voice, which PocketSphinx models poorly),
# another sentence 33 and above; coverage 0.74-1.0 right, down to 0.24 for a two-word transcript.
MAX_SCORE_DROP = 28.0
MIN_SPEECH_COVERAGE = 0.5
MAX_UNKNOWN_SHARE = 0.25


@dataclass
class TranscriptAlignment:
    """What the aligner made of a transcript: usable phones, or a notice saying why not."""

    words: int  # words in the transcript
    aligned: int = 0  # words placed in the audio
    phones: list[Phone] = field(default_factory=list)
    phone_words: list[str] = field(default_factory=list)  # the word each phone is in ("" for pauses)
    notice: str = ""  # one line, set when the transcript is not used (audio-only fallback)
    unknown: list[str] = field(default_factory=list)  # words left out: not in the aligner's dictionary
    score_drop: float | None = None  # per-frame score below the recognised words' alignment
    coverage: float | None = None  # share of the speech inside aligned words

    @property
    def ok(self) -> bool:
        return not self.notice and bool(self.phones)

    def summary(self) -> dict:
        """What the result's provenance records about the alignment."""
        out = {"words": self.words, "aligned_words": self.aligned, "used": self.ok}
        if self.unknown:
            out["unknown_words"] = self.unknown
        if self.score_drop is not None:
            out["score_drop_per_frame"] = round(self.score_drop, 2)
        if self.coverage is not None:
            out["speech_coverage"] = round(self.coverage, 3)
        if self.notice:
            out["notice"] = self.notice
        return out


def speech_frames(audio: np.ndarray, frame_s: float = 0.01) -> np.ndarray:
    """Boolean per 10 ms frame: louder than 30 dB below the clip's loud frames (its 95th percentile)."""
    n = int(round(frame_s * 16000))
    frames = len(audio) // n
    if frames == 0:
        return np.zeros(0, dtype=bool)
    rms = np.sqrt(np.mean(np.square(audio[: frames * n].reshape(frames, n), dtype=np.float64), axis=1)) + 1e-12
    level = 20 * np.log10(rms)
    return level > np.percentile(level, 95) - 30.0


def _coverage(audio: np.ndarray, alignment: Alignment) -> float:
    speech = speech_frames(audio)
    if not speech.any():
        return 0.0
    inside = np.zeros_like(speech)
    for _, start, end in alignment.word_times:
        inside[int(round(start * 100)) : int(round(end * 100))] = True
    return float((speech & inside).sum() / speech.sum())


def align_transcript(audio: np.ndarray, text: str) -> TranscriptAlignment:
    """Force-align ``text`` to 16 kHz mono ``audio`` and check the alignment fits; never raises for a
    transcript that does not fit (the notice says so), only when the aligner is not installed."""
    words = words_of(text)
    result = TranscriptAlignment(words=len(words))
    if not words:
        result.notice = "Transcript ignored: it has no words; the lip sync is from the audio alone."
        return result
    result.unknown = sorted(set(unknown_words(words)))
    known = [w for w in words if w not in result.unknown]
    if len(words) - len(known) > MAX_UNKNOWN_SHARE * len(words):
        result.notice = (f"Transcript ignored: {len(words) - len(known)} of its {len(words)} words are not in the "
                         "aligner's English dictionary; the lip sync is from the audio alone.")
        return result
    pcm = to_pcm(audio)
    try:
        given = force_align(pcm, known)
    except Wav2SemError:
        result.notice = "Transcript ignored: it could not be aligned with the audio; the lip sync is from the audio alone."
        return result
    heard = recognise(pcm)
    if heard and heard != known:
        try:
            reference = force_align(pcm, heard)
            result.score_drop = (reference.score / max(reference.frames, 1)) - (given.score / max(given.frames, 1))
        except Wav2SemError:
            result.score_drop = None
    result.coverage = _coverage(audio, given)
    if result.score_drop is not None and result.score_drop > MAX_SCORE_DROP or result.coverage < MIN_SPEECH_COVERAGE:
        result.notice = ("Transcript ignored: it does not match what is said in the audio; the lip sync is from the "
                         "audio alone.")
        return result
    result.aligned = len(given.word_times)
    result.phones = given.phones
    result.phone_words = given.phone_words
    return result


# ------------------------------------------------------------------------------------ closures
def _raised_cosine(distance: np.ndarray, ramp: float) -> np.ndarray:
    """1 at distance 0, 0 at ``ramp`` and beyond, C1 in between."""
    if ramp <= 0:
        return (distance <= 0).astype(np.float64)
    x = np.clip(distance / ramp, 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * x))


def closure_envelope(phones: list[Phone], n_frames: int, fps: float, ramp_s: float = RAMP_S) -> tuple[np.ndarray, int]:
    """(envelope (n_frames,) in [0, 1], number of closures): 1 over the inner frames of each bilabial
    (at least the one nearest its middle, so every closure is seen), raised-cosine ramps beside them,
    sampled at the frame times k / fps."""
    times = np.arange(n_frames, dtype=np.float64) / fps
    env = np.zeros(n_frames, dtype=np.float64)
    count = 0
    ordered = sorted(phones, key=lambda p: (p[1], p[2]))
    shortest = 2.0 / fps  # ramps of 2 frames or more: one frame moves the envelope by at most 0.71
    for i, (phone, start, end) in enumerate(ordered):
        if phone not in BILABIALS or n_frames == 0:
            continue
        # The plateau: the frames at least half a frame inside the phone, else the one nearest its middle.
        # Aligned boundaries are off by up to a frame (90th percentile 31-34 ms against the engines' own
        # timings), so a plateau on the phone's edge frames would close the lips inside the next vowel.
        k0 = max(0, math.ceil((start + 0.5 / fps) * fps - 1e-9))
        k1 = min(n_frames - 1, math.floor((end - 0.5 / fps) * fps + 1e-9))
        if k1 < k0:
            k0 = k1 = min(n_frames - 1, max(0, int(round(0.5 * (start + end) * fps))))
        a, b = k0 / fps, k1 / fps
        before = ordered[i - 1] if i > 0 else None
        after = ordered[i + 1] if i + 1 < len(ordered) else None
        # a ramp reaches no further than the middle of its neighbouring phone (a vowel between two
        # closures still opens), but is never shorter than two frames (no pop)
        left = min(ramp_s, 0.5 * (before[2] - before[1])) if before and before[0] not in BILABIALS else ramp_s
        right = min(ramp_s, 0.5 * (after[2] - after[1])) if after and after[0] not in BILABIALS else ramp_s
        left, right = max(left, shortest), max(right, shortest)
        g = np.where(times < a, _raised_cosine(a - times, left),
                     np.where(times > b, _raised_cosine(times - b, right), 1.0))
        env = np.maximum(env, g)
        count += 1
    return env, count


def enforce_closures(weights: np.ndarray, names: list[str], phones: list[Phone], fps: float,
                     ramp_s: float = RAMP_S) -> tuple[np.ndarray, int]:
    """Control weights (T, K) with the lips closed at every bilabial in ``phones``; (weights, closures).

    Each touched control becomes ``(1 - g) w + g * max(w, target)`` (raised) or ``... min(w, target)``
    (lowered) with the envelope ``g``: continuous, between the model's value and the target.
    """
    out = np.array(weights, dtype=np.float32, copy=True)
    env, count = closure_envelope(phones, out.shape[0], fps, ramp_s)
    if count == 0:
        return out, 0
    g = env.astype(np.float32)
    for j, name in enumerate(names):
        rule = CLOSURE_TARGETS.get(str(name))
        if rule is None:
            continue
        how, target = rule
        w = out[:, j]
        goal = np.maximum(w, target) if how == "raise" else np.minimum(w, target)
        out[:, j] = (1.0 - g) * w + g * goal
    return np.clip(out, 0.0, 1.0), count


def teacher_vector(text: str):
    """The teacher's unit-norm embedding of the transcript as a (384,) float tensor (what the default's
    semantic stage was trained to predict from the audio)."""
    import torch

    from .teacher import sentence_embeddings

    return torch.from_numpy(sentence_embeddings([text])[0])
