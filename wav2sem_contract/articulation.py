"""Shape-key deltas for the control set from a handful of mouth landmarks (numpy only).

Any head works: the landmarks define a local frame (lateral axis from corner to corner, forward
from the corners towards the lips, up away from the chin) and a scale (the mouth
width), and every control is a smooth displacement field in that frame. The jaw is a rotation
about a lateral axis through a pivot behind and above the mouth, weighted by a mask that is 1
below the lip line and fades towards the neck and the back of the head; the lip controls are
local fields around the lips and corners, split into left/right halves where ARKit splits them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LANDMARKS = ("mouth_corner_L", "mouth_corner_R", "lip_upper", "lip_lower", "chin")
OPTIONAL_LANDMARKS = ("jaw_pivot",)

# FLAME / VOCA topology (5023 vertices). Found on the FLAME sample mesh: the mouth is the
# 32-vertex boundary loop of the mesh (the other loop is the neck); the corners are its
# extreme vertices across the face, the lip landmarks its midline vertices above and below
# the slit, the chin the most forward midline vertex 2.5-6 cm below the lower lip.
FLAME_VERTICES = 5023
FLAME_LANDMARKS = {
    "mouth_corner_L": 1572,
    "mouth_corner_R": 2708,
    "lip_upper": 3514,
    "lip_lower": 3497,
    "chin": 3400,
}

JAW_MAX_RADIANS = 0.26  # jawOpen = 1 opens ~15 degrees


class RigError(ValueError):
    """The landmarks cannot define a mouth (coincident, collinear, or the chin on the lip line)."""


@dataclass(frozen=True)
class MouthFrame:
    centre: np.ndarray  # between the corners
    lateral: np.ndarray  # towards the character's left corner
    up: np.ndarray
    forward: np.ndarray
    width: float  # corner to corner
    lip_line: float  # height of the slit (between the lip landmarks) above the centre
    lip_gap: float  # vertical distance between the lip landmarks
    pivot: np.ndarray

    def local(self, points: np.ndarray) -> np.ndarray:
        """Points as (lateral, up, forward) coordinates relative to the mouth centre."""
        p = points - self.centre
        return np.stack([p @ self.lateral, p @ self.up, p @ self.forward], axis=-1)

    def world(self, local_vectors: np.ndarray) -> np.ndarray:
        return (local_vectors[..., :1] * self.lateral + local_vectors[..., 1:2] * self.up
                + local_vectors[..., 2:3] * self.forward)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def mouth_frame(vertices: np.ndarray, landmarks: dict[str, np.ndarray]) -> MouthFrame:
    """The local frame and scale from landmark positions (each a 3-vector)."""
    missing = [n for n in LANDMARKS if n not in landmarks]
    if missing:
        raise RigError(f"missing landmarks: {', '.join(missing)}")
    left, right = np.asarray(landmarks["mouth_corner_L"], float), np.asarray(landmarks["mouth_corner_R"], float)
    upper, lower = np.asarray(landmarks["lip_upper"], float), np.asarray(landmarks["lip_lower"], float)
    chin = np.asarray(landmarks["chin"], float)
    width = float(np.linalg.norm(left - right))
    size = float(np.ptp(vertices, axis=0).max())
    if width < 1e-3 * size:
        raise RigError("the two mouth corners are at the same place")
    lateral = _unit(left - right)
    centre = (left + right) / 2
    # Forward: lips sit in front of the corners on any head (the mouth wraps round the teeth);
    # the head's centroid lies behind the mouth, which settles the sign when the lips are flat.
    ahead = (upper + lower) / 2 - centre
    ahead = ahead - (ahead @ lateral) * lateral
    if np.linalg.norm(ahead) < 0.05 * width:
        ahead = centre - vertices.mean(axis=0)
        ahead = ahead - (ahead @ lateral) * lateral
    if np.linalg.norm(ahead) < 1e-9 * width:
        raise RigError("the landmarks and the head lie on one line, so the face has no forward direction")
    forward = _unit(ahead)
    up = np.cross(forward, lateral)
    drop = (chin - centre) @ up
    if abs(drop) < 0.2 * width:
        raise RigError("the chin is on the line between the mouth corners")
    if drop > 0:  # the chin is below the mouth
        up = -up
    lip_line = float(((upper + lower) / 2 - centre) @ up)
    lip_gap = float((upper - lower) @ up)
    if lip_gap < 0:
        raise RigError("the upper lip landmark is below the lower lip landmark")
    if "jaw_pivot" in landmarks:
        pivot = np.asarray(landmarks["jaw_pivot"], float)
    else:  # roughly below the ear: behind the mouth and a little above it
        pivot = centre - 1.7 * width * forward + 0.6 * width * up
    return MouthFrame(centre, lateral, up, forward, width, lip_line, lip_gap, pivot)


def _smooth(x: np.ndarray, a: float, b: float) -> np.ndarray:
    """0 at a, 1 at b, smooth in between (a may exceed b for a falling edge)."""
    t = np.clip((x - a) / (b - a), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def jaw_weights(frame: MouthFrame, local: np.ndarray) -> np.ndarray:
    """How much each vertex follows the jaw: 1 on the chin and lower lip, 0 on the upper lip."""
    x, y, z = local[:, 0], local[:, 1] - frame.lip_line, local[:, 2]
    w = frame.width
    # the split is sharp between the lips and widens over the cheeks, where skin stretches
    spread = np.abs(x) / w
    band = frame.lip_gap / 2 + 0.002 * w + 0.45 * w * _smooth(spread, 0.45, 1.2)
    below = _smooth(-y, -band, band)
    pivot = frame.local(frame.pivot[None])[0]
    in_front = _smooth(z, pivot[2] + 0.3 * w, pivot[2] + 1.0 * w)
    throat = _smooth(y + frame.lip_line, -2.6 * w, -1.6 * w)  # the neck below the chin stays
    return below * in_front * throat


def _lip_fields(frame: MouthFrame, local: np.ndarray):
    x, y, z = local[:, 0], local[:, 1] - frame.lip_line, local[:, 2]
    w = frame.width
    front = _smooth(z, -0.8 * w, -0.25 * w)
    around = np.exp(-((x / (0.62 * w)) ** 2) - (y / (0.32 * w)) ** 2) * front
    jaw_side = jaw_weights(frame, local)
    upper, lower = around * (1 - jaw_side), around * jaw_side
    corner = np.exp(-(((np.abs(x) - 0.5 * w) / (0.28 * w)) ** 2) - (y / (0.3 * w)) ** 2) * front
    left = _smooth(x, -0.2 * w, 0.2 * w)
    return x, upper, lower, corner, left, 1 - left, w


def control_deltas(vertices: np.ndarray, frame: MouthFrame) -> dict[str, np.ndarray]:
    """Vertex displacements (V, 3) for each control at weight 1."""
    vertices = np.asarray(vertices, dtype=np.float64)
    local = frame.local(vertices)
    x, upper, lower, corner, left, right, w = _lip_fields(frame, local)
    deltas: dict[str, np.ndarray] = {}

    # jaw: rotate about the lateral axis through the pivot, the chin moving down
    jaw = jaw_weights(frame, local)
    q = local - frame.local(frame.pivot[None])[0]
    angle = JAW_MAX_RADIANS * jaw
    cos, sin = np.cos(angle), np.sin(angle)
    rotated = np.stack([q[:, 0], q[:, 1] * cos - q[:, 2] * sin, q[:, 1] * sin + q[:, 2] * cos], axis=-1)
    deltas["jawOpen"] = frame.world(rotated - q)

    def field(*parts) -> np.ndarray:
        out = np.zeros_like(local)
        for weight, vector in parts:
            out += weight[:, None] * np.asarray(vector, float)[None, :] * w
        return frame.world(out)

    inward = -np.sign(x)  # towards the midline
    half_gap = frame.lip_gap / w / 2 + 0.03
    deltas["mouthClose"] = field((upper, (0, -half_gap - 0.05, 0)), (lower, (0, half_gap + 0.05, 0)))
    deltas["mouthFunnel"] = field((upper, (0, 0.05, 0.12)), (lower, (0, -0.05, 0.12))) + frame.world(
        (corner * inward * 0.1 * w)[:, None] * np.array([1.0, 0, 0]))
    deltas["mouthPucker"] = field((upper, (0, -0.02, 0.15)), (lower, (0, 0.02, 0.15))) + frame.world(
        (corner * inward * 0.2 * w)[:, None] * np.array([1.0, 0, 0]))
    for side, mask, sign in (("L", left, 1.0), ("R", right, -1.0)):
        c = corner * mask
        deltas[f"mouthStretch_{side}"] = field((c, (sign * 0.12, -0.03, -0.02)))
        deltas[f"mouthSmile_{side}"] = field((c, (sign * 0.08, 0.1, -0.04)))
        deltas[f"mouthPress_{side}"] = field((upper * mask, (0, -0.025, -0.02)), (lower * mask, (0, 0.025, -0.02)))
        deltas[f"mouthUpperUp_{side}"] = field((upper * mask, (0, 0.08, 0.01)))
        deltas[f"mouthLowerDown_{side}"] = field((lower * mask, (0, -0.08, 0.01)))
    deltas["mouthRollLower"] = field((lower, (0, 0.03, -0.08)))
    deltas["mouthRollUpper"] = field((upper, (0, -0.03, -0.08)))
    return deltas
