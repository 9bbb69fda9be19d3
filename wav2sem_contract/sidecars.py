"""Which files in a folder of dialogue are audio, and where each one's transcript is.

One rule for both batch tools: ``wav2sem_blender/batch.py`` (Blender over many .blend files) and
``python -m server infer-many`` (a folder of audio to result files).
"""

from __future__ import annotations

from pathlib import Path

AUDIO_TYPES = {".wav", ".flac", ".ogg", ".mp3"}


def transcript_for(audio: Path, ignore: bool = False) -> tuple[str, Path | None]:
    """(the words said in ``audio``, the sidecar they came from): ``line01.txt`` (or ``line01.wav.txt``)
    next to ``line01.wav``; ('', None) when there is none or sidecars are ignored. Empty text means
    audio only: the .blend's own Transcript setting is never applied to a batch (it belongs to one line).
    Raises OSError or UnicodeDecodeError for a sidecar that cannot be read."""
    if ignore:
        return "", None
    for sidecar in (audio.with_suffix(".txt"), audio.with_name(audio.name + ".txt")):
        if sidecar.is_file():
            return sidecar.read_text(encoding="utf-8-sig"), sidecar
    return "", None
