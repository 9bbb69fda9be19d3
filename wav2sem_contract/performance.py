"""The performance layer's names: what the server's procedural face and head motion drives (stdlib only).

The layer is everything beyond the mouth (blinks, brows, eye widening, cheeks, nose, head nods),
computed by the server from the audio's prosody and returned next to the motion in the result
(``performance_weights`` (T, P) in [0, 1] with ``performance_names`` (P,), and ``head_rotation``
(T, 3) radians). Names follow ARKit's, like the mouth controls, and never overlap them, so the
layer can never move the mouth.
"""

from __future__ import annotations

from .controls import CONTROLS

PERFORMANCE_CONTROLS = [
    "eyeBlink_L",
    "eyeBlink_R",
    "eyeWide_L",
    "eyeWide_R",
    "eyeSquint_L",
    "eyeSquint_R",
    "browInnerUp",
    "browOuterUp_L",
    "browOuterUp_R",
    "browDown_L",
    "browDown_R",
    "cheekSquint_L",
    "cheekSquint_R",
    "noseSneer_L",
    "noseSneer_R",
]

# head_rotation's three columns: Euler XYZ angles added to the head's own rotation, in Blender's
# convention for a head facing -Y with Z up: X nods (chin down is positive), Y tilts towards a
# shoulder, Z turns left/right.
HEAD_AXES = ("nod", "tilt", "turn")

# Result arrays of the layer (absent when the request's performance is 0).
WEIGHTS, NAMES, HEAD = "performance_weights", "performance_names", "head_rotation"

DEFAULT_PERFORMANCE = 0.0  # the wire default: a request that does not ask gets exactly the mouth, as before
SEED_RANGE = (0, 2**31 - 1)

assert not set(PERFORMANCE_CONTROLS) & set(CONTROLS), "the performance layer must never name a mouth control"


def key_candidates(name: str) -> list[list[str]]:
    """Shape-key names that can play control ``name``, best first: the name itself, else its left and
    right halves (ARKit has one ``browInnerUp``; rigs such as ICT FaceKit split it into ``_L``/``_R``)."""
    options = [[name]]
    if not name.endswith(("_L", "_R")):
        options.append([f"{name}_L", f"{name}_R"])
    return options
