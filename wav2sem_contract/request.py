"""One inference request, typed once: built by the add-on or the CLI, validated, sent, rebuilt.

``to_message`` / ``from_message`` are the only places the field list meets the wire format;
``validate`` refuses out-of-range values before any work (and before any large allocation).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .artist import DEFAULT_STRENGTH, SMOOTHING_RANGE, STRENGTH_RANGE, check_gains
from .errors import Wav2SemError
from .performance import DEFAULT_PERFORMANCE, SEED_RANGE

FPS_RANGE = (1.0, 240.0)
MAX_SECONDS_LIMIT = 3600.0
DEFAULT_MAX_SECONDS = 600.0
RESULT_REQUESTS = ("offsets", "compact")  # what a vertex model is asked for; control models answer controls
DEVICES = ("auto", "cpu", "cuda")
# exact: the model as trained (the default); fast: a measured approximation where one exists
# (int8 wav2vec2/HuBERT encoders on the CPU; the result's provenance says what it changed)
PRECISIONS = ("exact", "fast")
# A transcript is one dialogue line or a scene's worth; far more text than any audio limit could
# hold would only make the aligner slow, so it is bounded here, before any work.
MAX_TEXT_CHARS = 20000


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _bad(message: str, hint: str) -> Wav2SemError:
    return Wav2SemError("bad_request", message, hint)


@dataclass
class InferRequest:
    """Animate ``audio`` with the bundle at ``bundle``; the result goes to ``out`` (an ``.npz``)."""

    audio: str
    bundle: str = ""  # empty: the embedded default
    out: str = ""  # empty: a temporary file chosen by the server
    subject: str | int | None = None
    subject2: str | int | None = None
    blend: float = 1.0
    semantic: bool = True
    device: str = "auto"
    fps: float | None = None
    max_seconds: float = DEFAULT_MAX_SECONDS
    result: str = "offsets"  # or "compact": bias + weights @ basis
    precision: str = "exact"  # or "fast" (see PRECISIONS)
    # What is said (transcript-assisted mode: closures at the aligned /p b m/, the teacher's sentence
    # vector); None: audio only.
    text: str | None = None
    # The performance layer beyond the mouth (blinks, brows, head; wav2sem_contract.performance): its
    # intensity 0..1 (0, the wire default: none, so an older client gets exactly what it got before) and
    # the seed that fixes its random draws.
    performance: float = DEFAULT_PERFORMANCE
    seed: int = 0
    # Artist controls (wav2sem_contract.artist), applied on the server after the model: articulation
    # strength (1: as made), Gaussian smoothing in seconds (0: none), gains per named control ({}: none).
    strength: float = DEFAULT_STRENGTH
    smoothing: float = 0.0
    gains: dict[str, float] = field(default_factory=dict)
    # The lip-sync report (wav2sem_contract.lipsync): every /p b m/ and whether the lips closed. Without a
    # transcript it runs speech recognition, which costs time; False skips it.
    report: bool = True
    # Without a transcript (or when it did not fit the audio): also close the lips at every /p b m/ of the
    # words speech recognition hears, as a transcript's closures do. Off by default: a misheard word can
    # shut the lips where nothing is said (control models only; it shares the report's recognition).
    close_recognised: bool = False

    def validate(self) -> InferRequest:
        if not isinstance(self.audio, str) or not self.audio.strip():
            raise _bad("The request names no audio file (the 'audio' field is missing or empty).", "Pick an audio file.")
        if self.fps is not None and not (_number(self.fps) and FPS_RANGE[0] <= self.fps <= FPS_RANGE[1]):
            raise _bad(
                f"The frame rate must be between {FPS_RANGE[0]:g} and {FPS_RANGE[1]:g} fps, not {self.fps!r}.",
                "Pass --fps in that range, or leave it out for the model's own rate.",
            )
        if not (_number(self.max_seconds) and 0 < self.max_seconds <= MAX_SECONDS_LIMIT):
            raise _bad(
                f"The audio length limit must be above 0 and at most {MAX_SECONDS_LIMIT:g} s, not {self.max_seconds!r}.",
                "Pass a --max-seconds in that range (the default is 600).",
            )
        if not (_number(self.blend) and 0.0 <= self.blend <= 1.0):
            raise _bad(f"The style blend must be between 0 and 1, not {self.blend!r}.", "Pass --blend in 0..1.")
        if self.result not in RESULT_REQUESTS:
            raise _bad(f"Unknown result kind '{self.result}'.", "Use offsets or compact.")
        if self.device not in DEVICES:
            raise _bad(f"Unknown device '{self.device}'.", "Use auto, cpu or cuda.")
        if self.precision not in PRECISIONS:
            raise _bad(f"Unknown precision '{self.precision}'.", "Use exact or fast.")
        if not (_number(self.performance) and 0.0 <= self.performance <= 1.0):
            raise _bad(f"The performance intensity must be between 0 and 1, not {self.performance!r}.",
                       "Pass --performance in 0..1 (0: mouth only).")
        if not (isinstance(self.seed, int) and not isinstance(self.seed, bool)
                and SEED_RANGE[0] <= self.seed <= SEED_RANGE[1]):
            raise _bad(f"The seed must be a whole number from {SEED_RANGE[0]} to {SEED_RANGE[1]}, not {self.seed!r}.",
                       "Pass --seed with such a number.")
        if not (_number(self.strength) and STRENGTH_RANGE[0] <= self.strength <= STRENGTH_RANGE[1]):
            raise _bad(f"The strength must be between {STRENGTH_RANGE[0]:g} and {STRENGTH_RANGE[1]:g}, "
                       f"not {self.strength!r}.", "Pass --strength in that range (1: as the model made it).")
        if not (_number(self.smoothing) and SMOOTHING_RANGE[0] <= self.smoothing <= SMOOTHING_RANGE[1]):
            raise _bad(f"The smoothing must be between {SMOOTHING_RANGE[0]:g} and {SMOOTHING_RANGE[1]:g} s, "
                       f"not {self.smoothing!r}.", "Pass --smoothing in seconds in that range (0: none).")
        self.gains = check_gains(self.gains)
        if self.text is not None and not isinstance(self.text, str):
            raise _bad(f"The transcript must be text, not {type(self.text).__name__}.", "Pass the words that are said.")
        if self.text is not None and len(self.text) > MAX_TEXT_CHARS:
            raise _bad(f"The transcript is {len(self.text)} characters long; at most {MAX_TEXT_CHARS} are accepted.",
                       "Pass the words of this recording only.")
        for name in ("subject", "subject2"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (str, int)) or isinstance(value, bool)):
                raise _bad(f"The '{name}' field must be a style name or index, not {value!r}.", "")
        return self

    def to_message(self, request_id: str | int | None = None) -> dict[str, Any]:
        """The ``infer`` message; unset optional fields are left out."""
        message: dict[str, Any] = {"type": "infer"}
        if request_id is not None:
            message["id"] = request_id
        for name, value in asdict(self).items():
            if value is not None and value != "" and value != {}:  # no gains: nothing for an older server
                message[name] = value
        return message

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> InferRequest:
        """The request an ``infer`` message describes, each field's type checked, then validated."""
        if "audio" not in message:
            raise _bad("The request has no 'audio' field.", "Send the audio file's path in 'audio'.")
        values = {}
        for f in fields(cls):
            if f.name not in message or message[f.name] is None:
                continue
            value, types = message[f.name], _TYPES[f.name]
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                raise _bad(f"The request's '{f.name}' field has the wrong type ({type(value).__name__}).",
                           "Update the add-on.")
            values[f.name] = value
        return cls(**values).validate()


_TYPES: dict[str, tuple[type, ...]] = {
    "audio": (str,), "bundle": (str,), "out": (str,), "subject": (str, int), "subject2": (str, int),
    "blend": (int, float), "semantic": (bool,), "device": (str,), "fps": (int, float),
    "max_seconds": (int, float), "result": (str,), "precision": (str,), "text": (str,),
    "performance": (int, float), "seed": (int,), "strength": (int, float), "smoothing": (int, float),
    "gains": (dict,), "report": (bool,), "close_recognised": (bool,),
}
