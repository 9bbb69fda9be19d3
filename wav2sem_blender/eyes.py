"""Find a head's eyes on its geometry (numpy only): eyeballs are separate, roughly spherical parts.

FLAME, ICT FaceKit and most character heads model each eyeball as its own connected part of the
mesh (FLAME: two 546-vertex spheres). Parts that are sphere-like, eye-sized (0.1 to 0.45 mouth widths
in radius) and where eyes sit relative to the mouth (above it, to either side) are eye parts; on each
side the largest is the eyeball, whose centre and radius place the lid fields, and all of them stay
still when the lids move. The lid margins of the open eye are read off the geometry: the part of the
eyeball's front that no skin covers. A head without eyeball parts has no eyes to blink.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wav2sem_contract.articulation import MouthFrame
from wav2sem_contract.upper_face import EYE_LATERAL, EYE_UP, OPEN_LOWER, OPEN_UPPER, Eyes

from .landmarks import _components


@dataclass(frozen=True)
class EyeParts:
    eyes: Eyes | None
    fixed: np.ndarray  # (V,) bool: the eye parts' vertices
    note: str


def _edges(tris: np.ndarray) -> np.ndarray:
    return np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])


def _sphere(points: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Least-squares sphere (centre, radius, relative rms misfit) through ``points``."""
    a = np.c_[2 * points, np.ones(len(points))]
    b = (points**2).sum(1)
    sol = np.linalg.lstsq(a, b, rcond=None)[0]
    centre = sol[:3]
    radius = float(np.sqrt(max(sol[3] + centre @ centre, 0.0)))
    if radius == 0.0:
        return centre, 0.0, np.inf
    misfit = float(np.sqrt(np.mean((np.linalg.norm(points - centre, axis=1) - radius) ** 2)) / radius)
    return centre, radius, misfit


def _covered(origins: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Whether a ray from each origin along +z (the face's forward, local coordinates) hits one of the
    triangles ``tris`` (M, 3, 3): Moller-Trumbore, all pairs at once (a few hundred of each)."""
    a, e1, e2 = tris[:, 0], tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]
    direction = np.array([0.0, 0.0, 1.0])
    p = np.cross(direction, e2)
    det = (e1 * p).sum(1)
    ok = np.abs(det) > 1e-12
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = origins[:, None, :] - a[None]
    u = (s * p[None]).sum(2) * inv
    q = np.cross(s, e1[None])
    v = (q * direction).sum(2) * inv
    t = (q * e2[None]).sum(2) * inv
    hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 1e-9)
    return hit.any(1)


def _margins(q: np.ndarray, tris: np.ndarray, eyeball: np.ndarray, skin: np.ndarray) -> tuple[float, float]:
    """Heights (eye radii) of the open eye's upper and lower lid over the eyeball's middle: the highest
    and lowest front eyeball points that no skin triangle covers from the front. ``q``: vertices
    relative to the eye centre in eye radii, in the mouth frame (lateral, up, forward)."""
    ball = np.where(eyeball)[0]
    front = ball[(q[ball, 2] > 0.3) & (np.abs(q[ball, 0]) < 0.35)]
    near = skin & (np.linalg.norm(q, axis=1) < 2.5)
    faces = tris[near[tris].all(1)]
    if len(front) < 4 or len(faces) == 0:
        return OPEN_UPPER, OPEN_LOWER
    order = np.argsort(q[front, 1])
    heights, seen = q[front, 1][order], ~_covered(q[front][order], q[faces])
    # the opening is the longest run of uncovered points bottom to top: a ray slipping through a
    # seam between two lid triangles is not an opening
    best, start = (0, 0), None
    for k, s in enumerate(np.append(seen, False)):
        if s and start is None:
            start = k
        elif not s and start is not None:
            best, start = max(best, (k - start, start)), None
    length, first = best
    if length < 2 or heights[first + length - 1] - heights[first] < 0.15:
        return OPEN_UPPER, OPEN_LOWER
    return float(heights[first + length - 1]), float(heights[first])


def find_eyes(vertices: np.ndarray, tris: np.ndarray, frame: MouthFrame) -> EyeParts:
    """The eyes of a head whose mouth frame is known, or ``eyes=None`` with a note saying why not."""
    vertices = np.asarray(vertices, float)
    n = len(vertices)
    label = _components(n, _edges(np.asarray(tris)))
    ids, counts = np.unique(label, return_counts=True)
    local = frame.local(vertices)
    w = frame.width
    candidates = []
    for part, count in zip(ids, counts, strict=True):
        if count < 12 or count > 0.3 * n:
            continue
        members = label == part
        centre, radius, misfit = _sphere(vertices[members])
        c = frame.local(centre[None])[0]
        eye_sized = 0.1 * w < radius < 0.45 * w and misfit < 0.15
        placed = 0.25 * w < abs(c[0]) < 1.1 * w and 0.8 * w < c[1] < 2.2 * w
        if eye_sized and placed:
            candidates.append((count, part, centre, radius, c))
    fixed = np.zeros(n, bool)
    chosen = {}
    for side, sign in (("L", 1.0), ("R", -1.0)):
        mine = [c for c in candidates if np.sign(c[4][0]) == sign]
        if mine:
            chosen[side] = max(mine, key=lambda c: c[0])
            for c in mine:
                if np.linalg.norm(c[2] - chosen[side][2]) < 1.5 * chosen[side][3]:
                    fixed |= label == c[1]
    if not chosen:
        return EyeParts(None, fixed, "no eyeballs found (separate sphere-like parts beside the nose), "
                                     "so no eye keys; brows, cheeks and nose only")
    skin = ~fixed
    if len(chosen) == 1:  # mirror the one found across the mouth's midline
        side, other = ("L", "R") if "L" in chosen else ("R", "L")
        count, part, centre, radius, c = chosen[side]
        mirrored = frame.world(c * np.array([-1.0, 1.0, 1.0])) + frame.centre
        chosen[other] = (count, None, mirrored, radius, c * np.array([-1.0, 1.0, 1.0]))
    radius = float(np.mean([chosen["L"][3], chosen["R"][3]]))
    part = chosen["L"][1] if chosen["L"][1] is not None else chosen["R"][1]
    centre_local = frame.local(chosen["L" if chosen["L"][1] is not None else "R"][2][None])[0]
    upper, lower = _margins((local - centre_local) / radius, np.asarray(tris), label == part, skin)
    eyes = Eyes(chosen["L"][2], chosen["R"][2], radius, upper, lower)
    gap = (chosen["L"][4] - chosen["R"][4]) / w
    note = (f"eyes found: radius {radius / w:.2f} mouth widths, {abs(gap[0]):.2f} apart, open from "
            f"{lower:+.2f} to {upper:+.2f} radii")
    expected = 2 * EYE_LATERAL, EYE_UP
    if abs(abs(gap[0]) - expected[0]) > 0.8:
        note += " (unusually far apart for the mouth's size: check the eyeBlink keys)"
    return EyeParts(eyes, fixed, note)
