"""Audio loading for the model: any readable file -> validated mono float32 at 16 kHz.

numpy, soundfile and soxr only (no torch), so it stays cheap to import and easy to test.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from wav2sem_contract.errors import AudioError
from wav2sem_contract.paths import not_regular

SAMPLE_RATE = 16000
DEFAULT_MAX_SECONDS = 600.0
MIN_SECONDS = 0.2
SILENCE_DBFS = -60.0
# Refused from the header, before any sample is decoded (a forged header must not cost memory).
MAX_CHANNELS = 32
MAX_SAMPLE_RATE = 384_000
_BLOCK_FRAMES = 1 << 16  # decode in blocks mixed down at once: memory stays ~ mono size

_FORMATS_HINT = (
    "Use a WAV, FLAC, OGG or MP3 file, or convert it first, "
    "e.g. `ffmpeg -i input.m4a -ar 16000 -ac 1 output.wav`."
)

PathLike = str | os.PathLike[str]


def path_kind(path: PathLike) -> str | None:
    """What a path is when it is not a regular file ("a folder", "a named pipe (FIFO)", ...); None if it is one.

    Never opens the path: opening a FIFO blocks until a writer appears.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"not accessible ({exc.strerror})"
    return not_regular(mode)


def _check_exists(path: Path) -> None:
    # The full path (not just the name) so the user can see where we looked.
    kind = path_kind(path)
    if kind == "missing":
        raise AudioError(
            "audio_missing",
            f"The audio file '{path}' does not exist.",
            "Check the path, or pick the file again.",
        )
    if kind == "a folder":
        raise AudioError(
            "audio_missing",
            f"The audio path '{path}' is a folder, not a file.",
            "Pick an audio file inside it instead.",
        )
    if kind is not None:
        raise AudioError(
            "audio_not_file",
            f"The audio path '{path}' is {kind}, not a regular file.",
            "Pick a regular audio file (WAV, FLAC, OGG or MP3).",
        )


def _unreadable(path: Path, detail: str) -> AudioError:
    return AudioError(
        "audio_unreadable",
        f"'{path.name}' is not a readable audio file ({detail}).",
        _FORMATS_HINT,
    )


def _open(path: Path) -> sf.SoundFile:
    _check_exists(path)
    try:
        return sf.SoundFile(path)
    except PermissionError as exc:
        raise AudioError(
            "audio_unreadable",
            f"'{path.name}' cannot be opened (permission denied).",
            "Check the file's permissions.",
        ) from exc
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError, OSError, EOFError) as exc:
        raise _unreadable(path, _short_reason(exc)) from exc


def _short_reason(exc: BaseException) -> str:
    # libsndfile's text is "Error opening '<path>': <reason>"; keep only the reason, the path is already named,
    # and fold its sentences into one so the message stays a single sentence.
    text = str(exc).strip()
    if "possibly a pipe" in text:  # libsndfile's words for an unknown format; the path is known to be a file
        return "not a recognised audio format"
    reason = text.rsplit(": ", 1)[-1] if ": " in text else text
    reason = reason.replace(". ", "; ").rstrip(".").strip()
    return reason or type(exc).__name__


def duration_seconds(path: PathLike) -> float:
    """Duration in seconds, read from the file header (nothing is decoded)."""
    path = Path(path)
    with _open(path) as f:
        return f.frames / f.samplerate if f.samplerate > 0 else 0.0


def _check_layout(path: Path, channels: int, samplerate: int) -> None:
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(
            "audio_unsupported",
            f"'{path.name}' has {channels} channels; at most {MAX_CHANNELS} are accepted.",
            "Mix it down to mono or stereo first, e.g. `ffmpeg -i input.wav -ac 1 output.wav`.",
        )
    if not 1 <= samplerate <= MAX_SAMPLE_RATE:
        raise AudioError(
            "audio_unsupported",
            f"'{path.name}' has a sample rate of {samplerate} Hz; the limit is {MAX_SAMPLE_RATE} Hz.",
            "Resample it first, e.g. `ffmpeg -i input.wav -ar 16000 output.wav`.",
        )


def _check_duration(path: Path, frames: int, samplerate: int, max_seconds: float) -> None:
    if frames <= 0:
        raise AudioError(
            "audio_empty",
            f"'{path.name}' contains no audio samples.",
            "Check that the recording was saved correctly, or pick another file.",
        )
    seconds = frames / samplerate
    if seconds < MIN_SECONDS:
        raise AudioError(
            "audio_too_short",
            f"'{path.name}' is too short ({seconds:.3f} s; the minimum is {MIN_SECONDS:g} s).",
            "Use a longer recording.",
        )
    if seconds > max_seconds:
        raise AudioError(
            "audio_too_long",
            f"'{path.name}' is too long ({seconds:.1f} s; the limit is {max_seconds:g} s).",
            "Split the file into shorter parts, or raise the limit with the `--max-seconds` option.",
        )


def load_audio(path: PathLike, *, max_seconds: float = DEFAULT_MAX_SECONDS) -> np.ndarray:
    """Read an audio file and return it as validated mono float32 at 16 kHz."""
    if not (isinstance(max_seconds, (int, float)) and math.isfinite(max_seconds) and max_seconds > 0):
        raise AudioError(
            "bad_request", f"The audio length limit must be a positive number of seconds, not {max_seconds!r}.",
            "Pass a positive --max-seconds (the default is 600).",
        )
    path = Path(path)
    with _open(path) as f:
        sr = f.samplerate
        # Refuse from the header before decoding, so a 3-hour or 1024-channel file costs nothing.
        _check_layout(path, f.channels, sr)
        _check_duration(path, f.frames, sr, max_seconds)
        mono = _read_mono(path, f)

    # A damaged file can decode to fewer frames than its header claims.
    _check_duration(path, mono.shape[0], sr, max_seconds)
    # Before resampling: the resampler would smear a NaN over its whole filter length.
    if not np.isfinite(mono).all():
        raise AudioError(
            "audio_nonfinite",
            f"'{path.name}' contains invalid samples (NaN or infinity).",
            "Re-export the audio from your editor, or pick another file.",
        )
    if sr != SAMPLE_RATE:
        mono = soxr.resample(mono, sr, SAMPLE_RATE, quality="VHQ")
    mono = np.ascontiguousarray(mono, dtype=np.float32)

    # Checked on what the model will see: a stereo file whose channels cancel is silent to it.
    peak = float(np.max(np.abs(mono))) if mono.size else 0.0
    peak_db = 20.0 * math.log10(peak) if peak > 0 else -math.inf
    if peak_db < SILENCE_DBFS:
        level = (
            "all samples are zero" if peak == 0 else f"peak {peak_db:.1f} dBFS, below {SILENCE_DBFS:g} dBFS"
        )
        raise AudioError(
            "audio_silent",
            f"'{path.name}' is silent ({level}).",
            "Check the recording level, or that you picked the right file.",
        )
    return mono


def _read_mono(path: Path, f: sf.SoundFile) -> np.ndarray:
    """Decode block by block, mixing channels down as it goes (a mono file is copied untouched)."""
    blocks = []
    try:
        while True:
            block = f.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
            if not len(block):
                break
            # Slice rather than average one channel so mono input is untouched; a NaN survives the mean.
            blocks.append(block[:, 0].copy() if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float32))
    except (sf.SoundFileError, RuntimeError, ValueError, EOFError, OSError) as exc:
        raise _unreadable(path, _short_reason(exc)) from exc
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


def normalize(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance, exactly as Wav2Vec2FeatureExtractor(do_normalize=True) computes it."""
    # transformers casts to float32 first and normalises in float32; doing the same keeps parity bit-exact.
    x = np.asarray(x, dtype=np.float32)
    return (x - x.mean()) / np.sqrt(x.var() + 1e-7)


def load_for_model(
    path: PathLike, *, max_seconds: float = DEFAULT_MAX_SECONDS, do_normalize: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Return (raw mono 16 kHz audio, model input values)."""
    raw = load_audio(path, max_seconds=max_seconds)
    return raw, (normalize(raw) if do_normalize else raw)
