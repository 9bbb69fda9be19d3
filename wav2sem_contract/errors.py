"""User-facing failures: one plain sentence, a machine-readable code and a hint.

Stdlib only: the Blender add-on imports this module too, so a failure raised in the
server can be re-raised on the Blender side with the same code and text.
"""

from __future__ import annotations


class Wav2SemError(Exception):
    """A failure the user can act on.

    ``code`` is stable (scripts and tests match on it), ``message`` says what is wrong in
    one sentence, ``hint`` says what to do about it.
    """

    def __init__(self, code: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "hint": self.hint}

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


class AudioError(Wav2SemError):
    """The audio file cannot be used (unreadable, silent, too short/long, non-finite)."""


class ModelError(Wav2SemError):
    """A checkpoint, bundle or encoder folder is missing, incomplete or inconsistent."""


class Cancelled(Wav2SemError):
    """The running request was cancelled by the client."""

    def __init__(self, message: str = "The request was cancelled.") -> None:
        super().__init__("cancelled", message, "")
