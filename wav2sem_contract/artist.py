"""Artist controls at generation time: articulation strength, smoothing, per-control gains.

Stdlib only: the add-on parses the panel's gain text with ``parse_gains`` and the server checks the
names against its model's controls with ``check_gain_names``; both refuse in one sentence.
The defaults (strength 1, smoothing 0, no gains) leave the result exactly as the model made it.
"""

from __future__ import annotations

import math

from .errors import Wav2SemError

DEFAULT_STRENGTH = 1.0
STRENGTH_RANGE = (0.0, 2.0)  # 0: the neutral pose; 2: twice the model's articulation (then clipped)
# Smoothing is the standard deviation, in seconds, of a zero-phase Gaussian along time. 0.25 s is
# already a mumble (a syllable lasts about 0.2 s), so the range stops there.
SMOOTHING_RANGE = (0.0, 0.25)
GAIN_RANGE = (0.0, 4.0)


def _bad(message: str, hint: str) -> Wav2SemError:
    return Wav2SemError("bad_request", message, hint)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_gains(gains: object) -> dict[str, float]:
    """``gains`` as {name: gain}, refused in one sentence unless names are text and gains in GAIN_RANGE."""
    if not isinstance(gains, dict):
        raise _bad(f"The gains must be a table of control names and numbers, not {type(gains).__name__}.",
                   "Pass e.g. --gain jawOpen=1.2.")
    for name, gain in gains.items():
        if not isinstance(name, str) or not name.strip():
            raise _bad(f"A gain names no control ({name!r}).", "Write NAME=VALUE, e.g. jawOpen=1.2.")
        if not (_number(gain) and GAIN_RANGE[0] <= gain <= GAIN_RANGE[1]):
            raise _bad(f"The gain of '{name}' must be a number from {GAIN_RANGE[0]:g} to {GAIN_RANGE[1]:g}, "
                       f"not {gain!r}.", "Pass e.g. --gain jawOpen=1.2 (1: unchanged).")
    return {name: float(gain) for name, gain in gains.items()}


def parse_gains(items: str | list[str]) -> dict[str, float]:
    """``"jawOpen=1.2, mouthSmile_L=0.8"`` (the panel's field) or ``["jawOpen=1.2", ...]`` (repeated
    ``--gain``) as {name: gain}; the mapping's ``name * gain`` idea, one control per item."""
    if isinstance(items, str):
        items = items.split(",")
    gains: dict[str, float] = {}
    for item in items:
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        try:
            gain = float(value) if sep else float("nan")
        except ValueError:
            gain = float("nan")
        if not name.strip() or not math.isfinite(gain):
            raise _bad(f"The gain '{item.strip()}' is not NAME=VALUE.", "Write e.g. jawOpen=1.2, mouthSmile_L=0.8.")
        gains[name.strip()] = gain
    return check_gains(gains)


def format_gains(gains: dict[str, float]) -> str:
    """The panel's text for ``gains`` (what ``parse_gains`` reads back)."""
    return ", ".join(f"{name}={gain:g}" for name, gain in gains.items())


def check_gain_names(gains: dict[str, float], names: list[str]) -> None:
    """Refuse gains for controls the model does not have, naming the ones it has."""
    unknown = [n for n in gains if n not in names]
    if unknown:
        raise _bad(f"This model has no control named {', '.join(repr(n) for n in unknown)}; "
                   f"its controls are {', '.join(names)}.", "Give gains for those names only.")
