"""Shape keys for the performance layer's controls on a procedural head (``head.head_build``).

The server's performance layer animates keys named like ARKit's (``eyeBlink_L``, ``browInnerUp``
...; ``wav2sem_contract.performance``); a head without them shows only the head motion. The
procedural head knows its eyes and brows by construction, so here each key is made from that:

* the lids turn about the eyeball's centre (about its sideways axis), so a blink slides the lid
  over the eyeball instead of through it; a blink brings the upper margin down most of the way
  and the lower one up the rest (they meet), the skin above and below following with a falloff;
* brows, cheeks and nose are smooth bumps moved up, down or inwards in object space.
"""

from __future__ import annotations

import numpy as np

from wav2sem_contract.performance import PERFORMANCE_CONTROLS

from .head import EYE_AZIMUTH, EYE_ELEVATION, HeadBuild

BLINK_UPPER = 0.86  # share of the closing the upper lid makes (real lids: most of it)
BLINK_OVERLAP = 0.02  # the margins pass each other a little, so a closed eye shows no crack


def _rotate(points: np.ndarray, centre: np.ndarray, axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rodrigues' rotation of each point about ``axis`` through ``centre`` by its own angle."""
    p = points - centre
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    return centre + p * cos + np.cross(axis, p) * sin + axis * (p @ axis)[:, None] * (1 - cos)


def _lid_keys(build: HeadBuild) -> dict[str, np.ndarray]:
    verts, theta = build.verts, build.params[:, 1]
    keys = {}
    for eye in build.eyes:
        axis = np.cross(eye.forward, [0.0, 0.0, 1.0])
        axis /= np.linalg.norm(axis)  # sideways through the eyeball's centre
        # each column's opening: the angle (about that axis) from its upper to its lower margin
        angle_of = {}
        for u, lo in zip(eye.upper, eye.lower, strict=True):
            a, b = verts[u] - eye.centre, verts[lo] - eye.centre
            a, b = a - (a @ axis) * axis, b - (b @ axis) * axis
            angle_of[int(build.columns[u])] = float(np.arctan2(np.cross(a, b) @ axis, a @ b))
        opening = np.array([angle_of.get(int(c), 0.0) for c in build.columns])
        d = theta - EYE_ELEVATION
        upper = (d > 0) | ((d == 0) & ~build.lower_side)
        fall = np.exp(-((d / 0.05) ** 2))  # columns outside the eye have no opening: they stay
        up_w, low_w = np.where(upper, fall, 0.0), np.where(upper, 0.0, fall)
        # (share of the opening the upper lid closes, share the lower lid closes); negative opens
        for name, up, low in (("eyeBlink", BLINK_UPPER + BLINK_OVERLAP, 1 - BLINK_UPPER), ("eyeWide", -0.3, 0.0),
                              ("eyeSquint", 0.1, 0.3)):
            angle = opening * (up * up_w - low * low_w)
            moved = np.flatnonzero(angle)
            delta = np.zeros_like(verts)
            delta[moved] = _rotate(verts[moved], eye.centre, axis, angle[moved]) - verts[moved]
            keys[f"{name}_{eye.side}"] = delta
    return keys


def _bump(build: HeadBuild, phi0: float, theta0: float, spread: tuple[float, float]) -> np.ndarray:
    phi, theta = build.params[:, 0], build.params[:, 1]
    return np.exp(-(((phi - phi0) / spread[0]) ** 2) - ((theta - theta0) / spread[1]) ** 2)


def performance_keys(build: HeadBuild, height: float = 0.118) -> dict[str, np.ndarray]:
    """(V, 3) deltas for each performance control this head can play (all of them when it has eyes)."""
    if not build.eyes:
        return {}
    keys = _lid_keys(build)
    s = height / 0.118  # the bumps' sizes follow the head's
    brow_row = EYE_ELEVATION + 0.13
    up, down = np.array([0, 0, 1.0]), np.array([0, 0, -1.0])
    inner = _bump(build, 0.0, brow_row, (0.3, 0.07))
    keys["browInnerUp"] = 0.004 * s * inner[:, None] * up
    for side, sign in (("L", 1.0), ("R", -1.0)):
        toward_mid = np.array([-sign, 0, 0])
        outer = _bump(build, sign * (EYE_AZIMUTH + 0.12), brow_row, (0.16, 0.07))
        brow = _bump(build, sign * EYE_AZIMUTH * 0.8, brow_row, (0.22, 0.07))
        cheek = _bump(build, sign * (EYE_AZIMUTH + 0.05), EYE_ELEVATION - 0.2, (0.18, 0.09))
        nose = _bump(build, sign * 0.1, -0.1, (0.07, 0.06))
        keys[f"browOuterUp_{side}"] = 0.004 * s * outer[:, None] * up
        keys[f"browDown_{side}"] = s * brow[:, None] * (0.003 * down + 0.0015 * toward_mid)
        keys[f"cheekSquint_{side}"] = s * cheek[:, None] * np.array([0, -0.001, 0.0025])
        keys[f"noseSneer_{side}"] = s * nose[:, None] * np.array([0, -0.0005, 0.002])
    assert set(keys) == set(PERFORMANCE_CONTROLS)
    return keys
