"""Speech with exact phone timings from the Debian TTS engines: flite, eSpeak NG and Festival.

Every voice returns ``(audio, sample_rate, phones)``: float32 mono at 16 kHz, peak-normalised to
``PEAK`` (-6 dBFS, headroom for the corpus's gain augmentation), and ``phones`` a contiguous list of
``(PHONE, start_s, end_s)`` from 0 to the end of the audio, in :data:`server.controls.PHONES`
(ARPAbet without stress, pauses as ``SIL``). The timings are each engine's own segmentation:

- flite (Debian ``flite``): ``flite -voice X -psdur`` prints ``phone:end_time`` for every segment;
- eSpeak NG (Debian ``espeak-ng``): ``libespeak-ng.so.1`` through ctypes with phoneme events (see
  ``espeak.py``), each phoneme starting at its event's ``audio_position`` and ending where the next one
  starts, except that a stop's silent closure is moved from the previous phone into the stop;
- Festival (Debian ``festival`` + voices): one batch process per list of sentences, ``utt.save.segs``
  writes the segment end times.

Voices are named ``<engine>:<name>``: ``flite:slt``, ``espeak:en-us+f3``, ``festival:kal_diphone``.
"""

from __future__ import annotations

import functools
import logging
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from training.data import espeak
from wav2sem_contract.controls import PHONES
from wav2sem_contract.errors import Wav2SemError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
PEAK = 10 ** (-6 / 20)  # -6 dBFS

Phone = tuple[str, float, float]
Synthesis = tuple[np.ndarray, int, list[Phone]]

ENGINES = ("flite", "espeak", "festival")
APT_PACKAGES = {
    "flite": "flite",
    "espeak": "espeak-ng",
    "festival": "festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts festlex-cmu",
}

FLITE_VOICES = ("slt", "rms", "awb", "kal16")
# Mean F0 of each flite voice (measured) for pitch variation; rms ignores int_f0_target_mean.
FLITE_F0 = {"slt": 170.0, "awb": 130.0, "kal16": 90.0, "rms": None}

ESPEAK_LANGUAGES = (
    "en-us",
    "en",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
# The variant set the corpus combines with every language by default ("" is the plain voice).
ESPEAK_VARIANTS = ("", "+m3", "+f3", "+klatt4")

FESTIVAL_VOICES = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")
FESTIVAL_DIRS = {
    "kal_diphone": "english/kal_diphone",
    "ked_diphone": "english/ked_diphone",
    "cmu_us_slt_arctic_hts": "us/cmu_us_slt_arctic_hts",
}
FESTIVAL_ROOT = Path("/usr/share/festival/voices")
# int_lr_params of the diphone voices (their own .scm files); the HTS voice has no pitch or rate control.
FESTIVAL_F0 = {"kal_diphone": (105.0, 14.0), "ked_diphone": (105.0, 15.0)}


@dataclass(frozen=True)
class Prosody:
    """Engine-side prosody. ``rate`` > 1 is faster speech; ``pitch`` scales the mean F0 (1 = the voice's own)."""

    rate: float = 1.0
    pitch: float = 1.0

    def to_dict(self) -> dict[str, float]:
        return {"rate": round(self.rate, 4), "pitch": round(self.pitch, 4)}


# ------------------------------------------------------------------------------ phone mapping

# flite and Festival (the "radio" phone set of kal/ked/slt-hts): ARPAbet in lower case plus allophones.
_RADIO_MAP = {p.lower(): p for p in PHONES if p != "SIL"} | {
    "ax": "AH",
    "axr": "ER",
    "ix": "IH",
    "dx": "D",  # flap, "butter": the tongue tap looks like T/D
    "el": "L",
    "em": "M",
    "en": "N",
    "nx": "N",
    "hv": "HH",
    "pau": "SIL",
    "h#": "SIL",
    "brk": "SIL",
    "brth": "SIL",
    "ssil": "SIL",
    "sil": "SIL",
}

# eSpeak NG's English phoneme mnemonics (phsource/ph_english*) -> ARPAbet. Diphthongs that end in an
# r-colouring (near, square, cure, fire) keep their first vowel: one phone per event.
ESPEAK_MAP = {
    # pauses
    "_": "SIL",
    "_:": "SIL",
    "_!": "SIL",
    "_|": "SIL",
    "_^_": "SIL",
    "_#": "SIL",
    "": "SIL",
    ";": "SIL",  # the short break before a vowel-initial word ("the ; import")
    # schwas and weak vowels
    "@": "AH",
    "@2": "AH",
    "@5": "AH",
    "@-": "AH",
    "a#": "AH",
    "I2": "IH",
    "I#": "IH",
    "I2#": "IH",
    "i": "IY",
    "i#": "IY",
    "u": "UW",
    "@L": "L",  # syllabic l, "bottle"
    "@r": "ER",
    "3": "ER",  # r-coloured schwa, "better" (en-us)
    "3:": "ER",  # nurse
    "3:r": "ER",
    "VR": "ER",  # Scottish r-coloured strut, "worry"
    "IR": "ER",  # Scottish "virtue"
    "@R": "ER",
    "ER": "ER",
    # monophthongs
    "a": "AE",
    "aa": "AE",  # bath (en-us)
    "a2": "AE",
    "A:": "AA",
    "A@": "AA",  # start
    "A:r": "AA",
    "A#": "AA",
    "0": "AA",  # lot (en-us unrounded; rp rounded but open)
    "0#": "AA",
    "O": "AO",
    "O:": "AO",
    "O@": "AO",  # north
    "o@": "AO",
    "O2": "AO",
    "o": "OW",
    "V": "AH",  # strut
    "E": "EH",
    "E2": "EH",
    "E3": "EH",
    "e": "EH",
    "e@": "EH",  # square
    "I": "IH",
    "i:": "IY",
    "i@": "IY",  # near
    "i@3": "IY",
    "I@": "IH",
    "U": "UH",
    "U@": "UH",  # cure
    "u:": "UW",
    "u@": "UW",
    # diphthongs
    "aI": "AY",
    "aI@": "AY",
    "aI3": "AY",
    "aI2": "AY",
    "eI": "EY",
    "oU": "OW",
    "oU#": "OW",
    "@U": "OW",
    "aU": "AW",
    "aU@": "AW",
    "OI": "OY",
    "e#": "EY",
    # consonants
    "p": "P",
    "b": "B",
    "t": "T",
    "d": "D",
    "k": "K",
    "g": "G",
    "f": "F",
    "v": "V",
    "T": "TH",
    "D": "DH",
    "s": "S",
    "z": "Z",
    "S": "SH",
    "Z": "ZH",
    "h": "HH",
    "tS": "CH",
    "dZ": "JH",
    "m": "M",
    "n": "N",
    "N": "NG",
    "l": "L",
    "r": "R",
    "w": "W",
    "j": "Y",
    # allophones and rarities
    "t#": "T",  # flap, "city" (en-us)
    "d#": "D",
    "*": "D",  # tap
    "?": "T",  # glottal stop
    "r-": "R",  # linking r
    "l/": "L",
    "l#": "L",
    "l/2": "L",
    "n-": "N",
    "m-": "M",
    "w#": "W",
    "W": "W",  # "which" with hw
    "x": "K",  # "loch"
    "C": "HH",  # "huge" (palatal fricative)
    "z#": "Z",
    "s#": "S",
    "hw": "W",
    "j#": "Y",
    "t2": "T",
    "t[": "T",  # dental t (en-029)
    "d[": "D",
    "d2": "D",
    "k#": "K",
    "nj": "N",
}

_PHONE_SET = frozenset(PHONES)
_unknown_lock = threading.Lock()
_unknown_seen: set[tuple[str, str]] = set()


def _nearest(symbol: str) -> str:
    """A sensible ARPAbet phone for an unmapped symbol: its longest known prefix, else a schwa."""
    letters = "".join(ch for ch in symbol if ch.isalpha())
    for n in range(len(letters), 0, -1):
        cand = letters[:n].upper()
        if cand in _PHONE_SET and cand != "SIL":
            return cand
    return "AH"


def map_phone(engine: str, symbol: str) -> str:
    """Map one engine symbol to the project's phone set (unknown symbols are logged once)."""
    table = ESPEAK_MAP if engine == "espeak" else _RADIO_MAP
    key = symbol if engine == "espeak" else symbol.lower()
    phone = table.get(key)
    if phone is None and engine == "espeak":
        # espeak sometimes appends length/stress marks to a mnemonic; try without them.
        stripped = key.rstrip(";'`,")
        phone = table.get(stripped)
    if phone is None:
        phone = _nearest(symbol)
        with _unknown_lock:
            if (engine, symbol) not in _unknown_seen:
                _unknown_seen.add((engine, symbol))
                log.warning("unknown %s phone symbol %r mapped to %s", engine, symbol, phone)
    return phone


def tidy_phones(phones: Sequence[Phone], duration: float) -> list[Phone]:
    """Make a phone list contiguous from 0 to ``duration``: clamp to the audio, drop empty phones, fill gaps
    and the edges with SIL, merge neighbouring SILs. Times are rounded to 0.1 ms."""
    out: list[list] = []
    t = 0.0
    for name, start, end in phones:
        start, end = max(float(start), t), min(float(end), duration)
        if end - start <= 1e-6:
            continue
        if start - t > 1e-6:
            out.append(["SIL", t, start])
        out.append([name, start, end])
        t = end
    if duration - t > 1e-6:
        out.append(["SIL", t, duration])
    merged: list[list] = []
    for p in out:
        if merged and p[0] == "SIL" and merged[-1][0] == "SIL":
            merged[-1][2] = p[2]
        else:
            merged.append(p)
    result = [(n, round(s, 4), round(e, 4)) for n, s, e in merged]
    if result:  # rounding must not open a gap or overshoot
        result[-1] = (result[-1][0], result[-1][1], round(duration, 4))
    return result


def _finish(audio: np.ndarray, sr: int, phones: Sequence[Phone]) -> Synthesis:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim > 1:
        audio = audio.mean(axis=1, dtype=np.float32)
    if sr != SAMPLE_RATE:
        audio = soxr.resample(audio, sr, SAMPLE_RATE, quality="HQ").astype(np.float32)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 0:
        audio = (audio * (PEAK / peak)).astype(np.float32)
    return audio, SAMPLE_RATE, tidy_phones(phones, audio.size / SAMPLE_RATE)


def _require(engine: str, ok: bool, what: str) -> None:
    if not ok:
        raise Wav2SemError(
            "engine_missing",
            f"The {engine} speech engine is not available ({what}).",
            f"Install it with `sudo apt-get install {APT_PACKAGES[engine]}`.",
        )


# ------------------------------------------------------------------------------------- flite


@functools.cache
def flite_voices() -> tuple[str, ...]:
    """The flite voices this machine has (of FLITE_VOICES); empty without flite."""
    exe = shutil.which("flite")
    if not exe:
        return ()
    try:
        out = subprocess.run([exe, "-lv"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    have = set(out.split(":", 1)[-1].split())
    return tuple(v for v in FLITE_VOICES if v in have)


def flite_synth(text: str, voice: str = "slt", prosody: Prosody = Prosody()) -> Synthesis:
    """Synthesise with the flite CLI; timings from ``-psdur``."""
    exe = shutil.which("flite")
    _require("flite", exe is not None, "no `flite` program")
    cmd = [exe, "-voice", voice, "-psdur"]
    if prosody.rate != 1.0:
        cmd += ["--setf", f"duration_stretch={1.0 / prosody.rate:.4f}"]
    if prosody.pitch != 1.0 and FLITE_F0.get(voice):
        cmd += ["--setf", f"int_f0_target_mean={FLITE_F0[voice] * prosody.pitch:.1f}"]
    with tempfile.TemporaryDirectory(prefix="w2s-flite-") as tmp:
        wav = Path(tmp) / "out.wav"
        # A leading space keeps a text that starts with "-" from being read as an option.
        arg = " " + text if text.startswith("-") else text
        proc = subprocess.run(cmd + ["-t", arg, "-o", str(wav)], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0 or not wav.exists():
            raise RuntimeError(f"flite failed ({proc.returncode}): {proc.stderr.strip()[:200]}")
        audio, sr = sf.read(wav, dtype="float32")
    phones: list[Phone] = []
    t = 0.0
    for item in proc.stdout.split():
        sym, _, end = item.rpartition(":")
        try:
            end_s = float(end)
        except ValueError:
            continue
        phones.append((map_phone("flite", sym), t, end_s))
        t = end_s
    return _finish(audio, sr, phones)


# ------------------------------------------------------------------------------------ espeak

ESPEAK_RATE = espeak.DEFAULT_RATE  # words per minute
ESPEAK_PITCH = espeak.DEFAULT_PITCH  # 0..100


def espeak_available() -> bool:
    return espeak.library_available()


def espeak_voice_exists(voice: str) -> bool:
    return espeak.voice_exists(voice)


def espeak_raw(text: str, voice: str = "en-us", prosody: Prosody = Prosody()) -> tuple[np.ndarray, int, list]:
    """Raw library output: (audio at espeak's rate, that rate, [(start_ms, mnemonic), ...]).

    Deterministic: each utterance is spoken from the library's freshly initialised state (see espeak.py)."""
    _require("espeak", espeak_available(), "libespeak-ng.so.1 not found")
    rate = int(round(ESPEAK_RATE * prosody.rate))
    pitch = int(round(min(max(ESPEAK_PITCH * prosody.pitch, 0), 100)))
    samples, sr, events = espeak.synth(text, voice, rate, pitch)
    audio = np.frombuffer(samples, dtype="<i2").astype(np.float32) / 32768.0
    return audio, sr, events


_CLOSURE_STOPS = frozenset({"P", "T", "K", "CH", "B", "D", "G", "JH"})
_CLOSURE_QUIET = 10 ** (-60 / 20)  # espeak writes digital silence in a stop's closure
_CLOSURE_MAX_S = 0.12
_CLOSURE_AFTER_PAUSE_S = 0.06


def _move_closures(audio: np.ndarray, sr: int, phones: list[Phone]) -> list[Phone]:
    """eSpeak's event for a stop marks its release; a silent closure before it (always for /p t k/, often
    for /b d g/) is reported as part of the previous phone. For lip motion the closure is the stop (the lips
    shut for /p/), so move the boundary back to where that digital silence begins, as flite and Festival
    segment it. A voiced closure (not silent) is left where it is."""
    if not phones:
        return phones
    frame = max(int(0.002 * sr), 1)
    out = [list(p) for p in phones]
    for k in range(1, len(out)):
        name, start, _ = out[k]
        prev = out[k - 1]
        if name not in _CLOSURE_STOPS:
            continue
        limit = _CLOSURE_AFTER_PAUSE_S if prev[0] == "SIL" else _CLOSURE_MAX_S
        floor = max(prev[1] + (0.0 if prev[0] == "SIL" else 0.02), start - limit)
        t = int(start * sr)
        lo = int(floor * sr)
        while t - frame >= lo and np.max(np.abs(audio[t - frame : t])) < _CLOSURE_QUIET:
            t -= frame
        new_start = t / sr
        if new_start < start:
            prev[2] = new_start
            out[k][1] = new_start
    return [(p[0], p[1], p[2]) for p in out]


def espeak_synth(text: str, voice: str = "en-us", prosody: Prosody = Prosody()) -> Synthesis:
    """Synthesise in-process with libespeak-ng; a phoneme ends where the next one starts, and a stop
    starts where its silent closure does (see ``_move_closures``)."""
    audio, sr, events = espeak_raw(text, voice, prosody)
    duration = audio.size / sr
    phones: list[Phone] = []
    for k, (ms, sym) in enumerate(events):
        start = ms / 1000.0
        end = events[k + 1][0] / 1000.0 if k + 1 < len(events) else duration
        phones.append((map_phone("espeak", sym), start, end))
    return _finish(audio, sr, _move_closures(audio, sr, phones))


# ---------------------------------------------------------------------------------- festival


@functools.cache
def festival_voices() -> tuple[str, ...]:
    """The Festival voices this machine has (of FESTIVAL_VOICES); empty without festival."""
    if not shutil.which("festival"):
        return ()
    return tuple(v for v in FESTIVAL_VOICES if (FESTIVAL_ROOT / FESTIVAL_DIRS[v]).is_dir())


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _festival_script(texts: Sequence[str], voice: str, prosodies: Sequence[Prosody], tmp: Path) -> str:
    lines = [f"(voice_{voice})"]
    for i, (text, pro) in enumerate(zip(texts, prosodies, strict=True)):
        lines.append(f"(Parameter.set 'Duration_Stretch {1.0 / pro.rate:.4f})")
        if voice in FESTIVAL_F0:
            mean, std = FESTIVAL_F0[voice]
            lines.append(
                f"(set! int_lr_params '((target_f0_mean {mean * pro.pitch:.1f}) (target_f0_std {std})"
                " (model_f0_mean 170) (model_f0_std 34)))"
            )
        lines.append(f"(set! utt1 (eval (list 'Utterance 'Text {_scheme_string(text)})))")
        lines.append("(utt.synth utt1)")
        lines.append("(utt.wave.resample utt1 16000)")
        lines.append(f"(utt.save.wave utt1 {_scheme_string(str(tmp / f'{i}.wav'))} 'riff)")
        lines.append(f"(utt.save.segs utt1 {_scheme_string(str(tmp / f'{i}.lab'))})")
    return "\n".join(lines) + "\n"


def festival_synth_batch(
    texts: Sequence[str], voice: str = "kal_diphone", prosodies: Sequence[Prosody] | None = None
) -> list[Synthesis | None]:
    """Synthesise several sentences in one ``festival -b`` process. A sentence Festival fails on is None.

    Festival stops at the first error (some inputs even crash it), so after a failure the rest of the
    batch runs again in a new process.
    """
    exe = shutil.which("festival")
    _require("festival", exe is not None, "no `festival` program")
    if voice not in FESTIVAL_VOICES:
        raise ValueError(f"unknown festival voice {voice!r}; choose from {', '.join(FESTIVAL_VOICES)}")
    prosodies = list(prosodies) if prosodies is not None else [Prosody()] * len(texts)
    if len(prosodies) != len(texts):
        raise ValueError("festival_synth_batch: one prosody per text")
    results: list[Synthesis | None] = []
    while len(results) < len(texts):
        first = len(results)
        with tempfile.TemporaryDirectory(prefix="w2s-festival-") as tmp_name:
            tmp = Path(tmp_name)
            script = tmp / "batch.scm"
            script.write_text(_festival_script(texts[first:], voice, prosodies[first:], tmp), encoding="utf-8")
            try:
                proc = subprocess.run(
                    [exe, "-b", str(script)],
                    capture_output=True,
                    text=True,
                    timeout=60 + 30 * (len(texts) - first),
                    cwd=tmp,
                )
                detail = proc.stderr.strip()[-200:] or f"exit status {proc.returncode}"
            except subprocess.TimeoutExpired:
                detail = "timed out"
            for i in range(len(texts) - first):
                wav, lab = tmp / f"{i}.wav", tmp / f"{i}.lab"
                if not (wav.exists() and lab.exists()):
                    break
                audio, sr = sf.read(wav, dtype="float32")
                results.append(_finish(audio, sr, _parse_segs(lab.read_text(encoding="utf-8", errors="replace"))))
        if len(results) < len(texts):  # the sentence after the last good one failed
            log.warning("festival:%s failed on %r: %s", voice, texts[len(results)], detail)
            results.append(None)
    return results


def _parse_segs(text: str) -> list[Phone]:
    """An ESPS label file (``utt.save.segs``): a header up to ``#``, then ``end_time colour phone`` lines."""
    _, _, body = text.partition("#\n")
    phones: list[Phone] = []
    t = 0.0
    for line in body.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        end = float(parts[0])
        phones.append((map_phone("festival", parts[2]), t, end))
        t = end
    return phones


def festival_synth(text: str, voice: str = "kal_diphone", prosody: Prosody = Prosody()) -> Synthesis:
    result = festival_synth_batch([text], voice, [prosody])[0]
    if result is None:
        raise RuntimeError(f"festival:{voice} could not synthesise {text!r}")
    return result


# ------------------------------------------------------------------------------- voice names


def split_voice(key: str) -> tuple[str, str]:
    engine, sep, name = key.partition(":")
    if not sep or engine not in ENGINES or not name:
        raise ValueError(f"bad voice name {key!r}: expected <engine>:<voice> with engine in {', '.join(ENGINES)}")
    return engine, name


def engine_available(engine: str) -> bool:
    if engine == "flite":
        return bool(flite_voices())
    if engine == "espeak":
        return espeak_available()
    if engine == "festival":
        return bool(festival_voices())
    raise ValueError(f"unknown engine {engine!r}")


def engine_voices(engine: str) -> list[str]:
    """The default voice list of an engine on this machine (``engine:name`` keys)."""
    if engine == "flite":
        return [f"flite:{v}" for v in flite_voices()]
    if engine == "espeak":
        if not espeak_available():
            return []
        return [
            f"espeak:{lang}{var}"
            for lang in ESPEAK_LANGUAGES
            for var in ESPEAK_VARIANTS
            if espeak_voice_exists(lang + var)
        ]
    if engine == "festival":
        return [f"festival:{v}" for v in festival_voices()]
    raise ValueError(f"unknown engine {engine!r}")


def voice_available(key: str) -> bool:
    engine, name = split_voice(key)
    if engine == "flite":
        return name in flite_voices()
    if engine == "espeak":
        return espeak_voice_exists(name)
    return name in festival_voices()


def expand_voices(specs: Sequence[str]) -> tuple[list[str], list[str]]:
    """Expand engine names ("espeak") to their default voices; keep explicit keys ("flite:slt").

    Returns (voices, skipped engines). A whole engine that is not installed is skipped with a warning;
    an explicit voice that is not available raises.
    """
    voices: list[str] = []
    skipped: list[str] = []
    for spec in specs:
        spec = spec.strip()
        if not spec:
            continue
        if ":" not in spec:
            if spec not in ENGINES:
                raise ValueError(f"unknown engine {spec!r}; choose from {', '.join(ENGINES)}")
            found = engine_voices(spec)
            if not found:
                log.warning(
                    "speech engine %s is not installed; skipped (apt-get install %s)", spec, APT_PACKAGES[spec]
                )
                skipped.append(spec)
            voices.extend(v for v in found if v not in voices)
            continue
        engine, _ = split_voice(spec)
        _require(engine, engine_available(engine), "not installed")
        if not voice_available(spec):
            raise Wav2SemError(
                "voice_missing",
                f"The voice '{spec}' is not available on this machine.",
                f"Pick one of: {', '.join(engine_voices(engine))}.",
            )
        if spec not in voices:
            voices.append(spec)
    return voices, skipped


def synthesize(key: str, text: str, prosody: Prosody = Prosody()) -> Synthesis:
    """One sentence with one voice (``flite:slt``, ``espeak:en-us+f3``, ``festival:kal_diphone``)."""
    engine, name = split_voice(key)
    if engine == "flite":
        return flite_synth(text, name, prosody)
    if engine == "espeak":
        return espeak_synth(text, name, prosody)
    return festival_synth(text, name, prosody)


def synthesize_batch(key: str, texts: Sequence[str], prosodies: Sequence[Prosody]) -> list[Synthesis | None]:
    """Several sentences with one voice; Festival runs them in one process. A failed sentence is None."""
    engine, name = split_voice(key)
    if engine == "festival":
        return festival_synth_batch(texts, name, prosodies)
    out: list[Synthesis | None] = []
    for text, pro in zip(texts, prosodies, strict=True):
        try:
            out.append(synthesize(key, text, pro))
        except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
            log.warning("%s failed on %r: %s", key, text, exc)
            out.append(None)
    return out


def engine_versions() -> dict[str, str]:
    """Engine versions for the manifest (best effort)."""
    out: dict[str, str] = {}
    for engine, cmd in (("flite", ["flite", "--version"]), ("espeak", ["espeak-ng", "--version"])):
        if shutil.which(cmd[0]):
            try:
                lines = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()
                out[engine] = next((ln.strip() for ln in lines if "version" in ln.lower()), lines[0] if lines else "")
            except (OSError, subprocess.SubprocessError):
                pass
    if shutil.which("festival"):
        try:
            text = subprocess.run(["festival", "--version"], capture_output=True, text=True, timeout=10).stdout
            out["festival"] = text.strip().splitlines()[0] if text.strip() else ""
        except (OSError, subprocess.SubprocessError):
            pass
    return out
