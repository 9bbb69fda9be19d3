"""Shape-key deltas for the performance layer's face controls (blinks, eyes, brows, cheeks, nose), numpy only.

The mouth rig (``articulation.py``) gives a frame and a scale from the mouth; the eyes add their
centres, their radius and where the lids are (``Eyes``: found on the geometry by the add-on, see
``wav2sem_blender/eyes.py``). Every control is a smooth displacement field of the skin in the mouth's
frame (lateral towards the character's left, up, forward), sized by the eye radius around the eyes
and by the mouth width elsewhere, so any head of any scale works:

* ``eyeBlink``: the upper lid comes down over the eyeball to a line a quarter of the way up the
  opening (real blinks are mostly upper-lid travel), staying on the eyeball's surface;
* ``eyeWide`` / ``eyeSquint``: the upper lid up a third of the opening / the lower lid and the skin
  under the eye up;
* brows, cheeks and nose: local raises and frowns above the eyes, under them and beside the nose.

The amplitudes are a stylised adult face's (a brow raise of about a tenth of the mouth width, 5 mm on
a 5 cm mouth), not measured from any person.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .articulation import MouthFrame, _smooth

EYE_CONTROLS = ("eyeBlink_L", "eyeBlink_R", "eyeWide_L", "eyeWide_R", "eyeSquint_L", "eyeSquint_R")
FACE_CONTROLS = ("browInnerUp", "browOuterUp_L", "browOuterUp_R", "browDown_L", "browDown_R",
                 "cheekSquint_L", "cheekSquint_R", "noseSneer_L", "noseSneer_R")

# A stylised adult face, in mouth widths from the mouth centre (lateral, up) and eye radii; used where
# a head has no eyeballs to find (then only the brows, cheeks and nose get keys).
EYE_LATERAL, EYE_UP, EYE_RADIUS = 0.6, 1.37, 0.245
OPEN_UPPER, OPEN_LOWER = 0.2, -0.45  # lid margins above / below the eye centre, in eye radii


@dataclass(frozen=True)
class Eyes:
    """Both eyes of a head: centres (world, 3-vectors), the eyeball radius, and the lid margins of the
    open eye (heights above the centre along the face's up axis, in eye radii)."""

    left: np.ndarray
    right: np.ndarray
    radius: float
    upper: float = OPEN_UPPER
    lower: float = OPEN_LOWER
    found: bool = True  # False: placed from the mouth's proportions (no eyeballs on the mesh)


def estimated_eyes(vertices: np.ndarray, frame: MouthFrame) -> Eyes:
    """Eyes where a stylised face has them, pushed back from the skin in front of them by a radius."""
    w = frame.width
    local = frame.local(np.asarray(vertices, float))
    centres = []
    for side in (1.0, -1.0):
        x, y = side * EYE_LATERAL * w, EYE_UP * w
        near = np.hypot(local[:, 0] - x, local[:, 1] - y) < 0.3 * w
        surface = local[near, 2].max() if near.any() else 0.0
        centres.append(frame.world(np.array([x, y, surface - EYE_RADIUS * w])) + frame.centre)
    return Eyes(centres[0], centres[1], EYE_RADIUS * w, found=False)


def _gauss(a: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-((a / sigma) ** 2))


def _lid_fields(q: np.ndarray, eyes: Eyes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """For points ``q`` (N, 3) relative to one eye centre, in eye radii: how far the upper lid travels
    down and the lower lid up to close the eye, the upper- and lower-lid weights, and the line where
    the lids meet (a tenth of the way up the opening: real blinks are mostly upper-lid travel)."""
    x, y, z = q[:, 0], q[:, 1], q[:, 2]
    meet = eyes.lower + 0.1 * (eyes.upper - eyes.lower)
    shape = np.sqrt(np.clip(1 - (x / 1.05) ** 2, 0, 1))  # the opening narrows to the corners
    top = meet + (eyes.upper - meet) * shape  # the upper margin above x
    bottom = meet + (eyes.lower - meet) * shape
    in_front = _smooth(z, -0.3, 0.2) * _smooth(np.abs(x), 1.5, 1.0)
    above = (y > meet) * in_front * _smooth(y - top, 1.5, 0.0)  # the upper lid, fading up to the brow
    below = (y <= meet) * in_front * _smooth(bottom - y, 1.0, 0.0)
    # the upper lid overlaps the lower one a little in the middle, so no seam stays open
    down = np.minimum(y - meet, top - meet).clip(0, None) + 0.1 * (eyes.upper - eyes.lower) * shape
    up = np.minimum(meet - y, meet - bottom).clip(0, None)
    return down, up, above, below * shape, meet


def _on_eyeball(q: np.ndarray, moved_y: np.ndarray, outside: np.ndarray) -> np.ndarray:
    """Forward push (eye radii) that keeps skin moved to ``moved_y`` on or in front of the eyeball."""
    keep = 1.04  # the lid's thickness over the cornea
    need = np.sqrt(np.clip(keep**2 - q[:, 0] ** 2 - moved_y**2, 0, None))
    return np.where(outside & (q[:, 2] > 0), (need - q[:, 2]).clip(0, None), 0.0)


def face_deltas(vertices: np.ndarray, frame: MouthFrame, eyes: Eyes | None,
                fixed: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Vertex displacements (V, 3) at weight 1 for the performance controls this head can show: all of
    ``FACE_CONTROLS``, and ``EYE_CONTROLS`` when ``eyes`` were found on the mesh. ``fixed`` marks vertices
    that never move (the eyeballs themselves)."""
    vertices = np.asarray(vertices, dtype=np.float64)
    local = frame.local(vertices)
    w = frame.width
    place = eyes if eyes is not None else estimated_eyes(vertices, frame)
    r = place.radius
    skin = np.ones(len(vertices)) if fixed is None else (~np.asarray(fixed, bool)).astype(float)
    deltas: dict[str, np.ndarray] = {}

    def world(vectors: np.ndarray) -> np.ndarray:
        return frame.world(vectors * skin[:, None])

    eye_local = {"L": frame.local(place.left[None])[0], "R": frame.local(place.right[None])[0]}
    eye_y = (eye_local["L"][1] + eye_local["R"][1]) / 2
    half_span = abs(eye_local["L"][0] - eye_local["R"][0]) / 2
    face_front = _smooth(local[:, 2] - (eye_local["L"][2] + eye_local["R"][2]) / 2, -1.6 * r, -0.6 * r)
    if eyes is not None and eyes.found:
        for side, centre in eye_local.items():
            q = (local - centre) / r
            down, up, above, below, meet = _lid_fields(q, eyes)
            outside = np.linalg.norm(q, axis=1) >= 0.95  # socket pockets inside the eyeball stay hidden
            move = up * below - down * above
            push = _on_eyeball(q, q[:, 1] + move, outside) * ((above + below) > 0)
            deltas[f"eyeBlink_{side}"] = world(np.stack([np.zeros_like(move), move, push], -1) * r)
            wide = 0.35 * (eyes.upper - meet) * above
            deltas[f"eyeWide_{side}"] = world(np.stack([np.zeros_like(wide), wide, np.zeros_like(wide)], -1) * r)
            lift = 0.25 * (eyes.upper - eyes.lower) * below + 0.12 * _gauss(q[:, 1] + 1.4, 0.6) * _gauss(q[:, 0], 1.2)
            lift = lift * _smooth(q[:, 2], -0.3, 0.2)
            push = _on_eyeball(q, q[:, 1] + lift, outside) * (below > 0)
            deltas[f"eyeSquint_{side}"] = world(np.stack([np.zeros_like(lift), lift, push], -1) * r)

    x, y = local[:, 0], local[:, 1]
    brow_y = eye_y + 2.0 * r
    inner = _gauss(x, 0.55 * half_span) * _gauss(y - brow_y, 1.0 * r) * face_front
    deltas["browInnerUp"] = world(np.stack([0 * x, 0.1 * w * inner, 0 * x], -1))
    for side, sign in (("L", 1.0), ("R", -1.0)):
        ex = eye_local[side][0]
        outer = _gauss(x - (ex + sign * 0.5 * r), 1.1 * r) * _gauss(y - brow_y, 1.0 * r) * face_front
        deltas[f"browOuterUp_{side}"] = world(np.stack([0 * x, 0.08 * w * outer, 0 * x], -1))
        frown = _gauss(x - (ex - sign * 0.5 * r), 1.0 * r) * _gauss(y - (brow_y - 0.3 * r), 0.9 * r) * face_front
        deltas[f"browDown_{side}"] = world(np.stack([-sign * 0.03 * w * frown, -0.07 * w * frown,
                                                     -0.01 * w * frown], -1))
        cheek = _gauss(x - ex, 1.3 * r) * _gauss(y - (eye_y - 1.7 * r), 0.9 * r) * face_front
        deltas[f"cheekSquint_{side}"] = world(np.stack([0 * x, 0.05 * w * cheek, 0.01 * w * cheek], -1))
        nose_y = (frame.lip_line + 0.7 * w + eye_y - 0.6 * r) / 2
        wing = _gauss(x - sign * 0.22 * w, 0.12 * w) * _gauss(y - nose_y, 0.35 * w) * face_front
        deltas[f"noseSneer_{side}"] = world(np.stack([0 * x, 0.06 * w * wing, -0.01 * w * wing], -1))
    return deltas
