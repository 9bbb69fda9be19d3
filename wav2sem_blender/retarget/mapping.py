"""Control weights onto any rig's shape keys, by name: identity, or a user-editable mapping.

A mapping is text, one rule per line::

    # source control = target key [* gain], ...
    jawOpen = aa * 0.8, oh * 0.3
    mouthClose = Lips_Closed

Several sources landing on one target are summed, then clipped to [0, 1]. Names may contain
spaces (they are stripped at both ends) but not ``=``, ``,``, ``*`` or ``#``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from .transform import RetargetError

Mapping = dict[str, list[tuple[str, float]]]

# An example to edit: ARKit controls onto the five VRM-style vowel keys ("aa", "ih", "ou",
# "ee", "oh") that VRoid/VRM avatars have. The gains are a starting point, not a measurement:
# the jaw carries "aa", rounding carries "ou"/"oh", spreading carries "ih"/"ee".
ARKIT_TO_VISEMES: Mapping = {
    "jawOpen": [("aa", 1.0), ("oh", 0.2)],
    "mouthFunnel": [("oh", 0.8), ("ou", 0.3)],
    "mouthPucker": [("ou", 0.9)],
    "mouthStretch_L": [("ih", 0.4), ("ee", 0.2)],
    "mouthStretch_R": [("ih", 0.4), ("ee", 0.2)],
    "mouthSmile_L": [("ee", 0.4), ("ih", 0.2)],
    "mouthSmile_R": [("ee", 0.4), ("ih", 0.2)],
    "mouthLowerDown_L": [("ee", 0.2)],
    "mouthLowerDown_R": [("ee", 0.2)],
    "mouthUpperUp_L": [("ih", 0.2)],
    "mouthUpperUp_R": [("ih", 0.2)],
}

_RULE = re.compile(r"^(?P<source>[^=,*]+?)\s*=\s*(?P<targets>.+)$")
_TARGET = re.compile(r"^(?P<name>[^=,*]+?)\s*(?:\*\s*(?P<gain>[^=,*]+))?$")


@dataclass
class MappedControls:
    weights: np.ndarray  # (T, K') float32, one column per name
    names: list[str]  # target keys that receive something, in target order
    missing: list[str]  # source controls that reach no target key
    unused: list[str]  # target keys that receive nothing
    unknown: list[str] = field(default_factory=list)  # names in the mapping or gains found nowhere


def _rule_error(number: int, line: str, why: str) -> RetargetError:
    return RetargetError(f"Line {number} of the mapping ('{line.strip()}') {why}; "
                         "write 'source = target * gain, target2'.")


def parse_mapping(text: str) -> Mapping:
    """Rules from text (see module doc); a source named on several lines collects all targets."""
    mapping: Mapping = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        rule = _RULE.match(line)
        if rule is None:
            raise _rule_error(number, raw, "has no 'source = target'")
        targets = []
        for part in rule["targets"].split(","):
            target = _TARGET.match(part.strip())
            if target is None:
                raise _rule_error(number, raw, f"has a malformed target '{part.strip()}'")
            gain = 1.0
            if target["gain"] is not None:
                try:
                    gain = float(target["gain"])
                except ValueError:
                    raise _rule_error(number, raw, f"has a gain that is not a number ('{target['gain']}')") from None
                if not np.isfinite(gain):
                    raise _rule_error(number, raw, "has a gain that is not finite")
            targets.append((target["name"], gain))
        mapping.setdefault(rule["source"], []).extend(targets)
    return mapping


def format_mapping(mapping: Mapping) -> str:
    """The text ``parse_mapping`` reads back to the same mapping (gains written with repr)."""
    def target(name: str, gain: float) -> str:
        return name if gain == 1.0 else f"{name} * {gain!r}"

    return "".join(f"{source} = {', '.join(target(n, g) for n, g in targets)}\n"
                   for source, targets in mapping.items() if targets)


def name_key(name: str) -> str:
    """Loose identity of a control name: case, separators and Left/Right spelling ignored.

    ``mouthSmile_L``, ``MouthSmileLeft``, ``mouth_smile.l`` all give ``mouthsmilel``.
    """
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    for long, short in (("left", "l"), ("right", "r")):
        if key.endswith(long):
            return key[: -len(long)] + short
    return key


def _resolver(names: list[str]):
    """name -> index in ``names``: exact match first, then the loose key (first one wins)."""
    exact = {n: i for i, n in reversed(list(enumerate(names)))}
    loose: dict[str, int] = {}
    for i, n in enumerate(names):
        loose.setdefault(name_key(n), i)

    def find(name: str) -> int | None:
        return exact[name] if name in exact else loose.get(name_key(name))

    return find


def _routes(names: list[str], mapping: Mapping | None, target_names: list[str]):
    """(source index, target index, gain) triples, and names in the mapping found nowhere."""
    find_target = _resolver(target_names)
    if mapping is None:
        hits = ((i, find_target(n)) for i, n in enumerate(names))
        return [(i, j, 1.0) for i, j in hits if j is not None], []
    find_source = _resolver(names)
    routes, unknown = [], []
    for source, targets in mapping.items():
        i = find_source(source)
        if i is None:
            unknown.append(source)
            continue
        for target, gain in targets:
            j = find_target(target)
            if j is None:
                unknown.append(target)
            else:
                routes.append((i, j, float(gain)))
    return routes, unknown


def _time_constants(smoothing: dict[str, float] | float, names: list[str]) -> np.ndarray:
    if isinstance(smoothing, dict):
        find = _resolver(list(smoothing))
        keys = list(smoothing)
        taus = [smoothing[keys[i]] if (i := find(n)) is not None else 0.0 for n in names]
    else:
        taus = [smoothing] * len(names)
    taus = np.asarray(taus, dtype=np.float64)
    if not np.isfinite(taus).all() or (taus < 0).any():
        raise RetargetError("Smoothing time constants must be zero or positive seconds.")
    return taus


def zero_phase_lowpass(x: np.ndarray, tau: np.ndarray | float, fps: float) -> np.ndarray:
    """One-pole low-pass run forwards then backwards along axis 0 (no lag), per column.

    ``tau`` is the time constant in seconds (0: untouched). Each pass starts from the
    signal's own end value, so there is no ramp in from 0, and each output sample is a convex
    combination of inputs, so weights in [0, 1] stay there.
    """
    y = np.array(x, dtype=np.float64)
    squeeze = y.ndim == 1
    y = y.reshape(len(y), -1)
    tau = np.broadcast_to(np.asarray(tau, dtype=np.float64), (y.shape[1],))
    alpha = np.where(tau > 0, -np.expm1(-1.0 / (fps * np.maximum(tau, 1e-300))), 1.0)
    if len(y) > 1 and (alpha < 1).any():
        cols = np.flatnonzero(alpha < 1)
        a, z = alpha[cols], y[:, cols]
        for t in range(1, len(z)):
            z[t] = z[t - 1] + a * (z[t] - z[t - 1])
        for t in range(len(z) - 2, -1, -1):
            z[t] = z[t + 1] + a * (z[t] - z[t + 1])
        y[:, cols] = z
    return y[:, 0] if squeeze else y


def map_controls(weights: np.ndarray, names: list[str], mapping: Mapping | None, target_names: list[str], *,
                 gains: dict[str, float] | None = None, smoothing: dict[str, float] | float = 0.0,
                 fps: float = 30.0) -> MappedControls:
    """Source control curves (T, K) onto the target keys; ``mapping`` None matches by name.

    ``gains`` scale target keys (by target name), applied after summing and before clipping;
    ``smoothing`` is a zero-phase low-pass time constant in seconds, for all targets or per
    target name, applied last.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != len(names):
        raise RetargetError(f"There are {len(names)} control names for weights of shape {w.shape}.")
    if not (fps > 0):
        raise RetargetError("The frame rate must be positive.")
    names, target_names = [str(n) for n in names], [str(n) for n in target_names]
    routes, unknown = _routes(names, mapping, target_names)
    if not routes:
        sample = ", ".join(f"'{n}'" for n in list(target_names)[:5]) or "none"
        raise RetargetError(f"None of the controls match the rig's shape keys (it has {sample}"
                            f"{', ...' if len(target_names) > 5 else ''}); edit the mapping.")
    hit = sorted({j for _, j, _ in routes})
    column = {j: c for c, j in enumerate(hit)}
    out = np.zeros((len(w), len(hit)))
    for i, j, gain in routes:
        out[:, column[j]] += gain * w[:, i]
    out_names = [target_names[j] for j in hit]
    if gains:
        find = _resolver(out_names)
        for name, gain in gains.items():
            c = find(name)
            if c is None:
                unknown.append(name)
            else:
                out[:, c] *= float(gain)
    out = zero_phase_lowpass(np.clip(out, 0.0, 1.0), _time_constants(smoothing, out_names), fps)
    reached = {i for i, _, _ in routes}
    return MappedControls(
        weights=out.astype(np.float32),
        names=out_names,
        missing=[n for i, n in enumerate(names) if i not in reached],
        unused=[n for j, n in enumerate(target_names) if j not in column],
        unknown=unknown,
    )
