"""A procedural stylised head for the demo and tests: no third-party asset.

A deformed sphere (metres, z up, facing -y as Blender's front view sees it) with a chin, a
nose, brows and a real mouth opening: along the lip line the upper and lower lips are
separate vertex rows, so the jaw can open. The lip and chin landmarks are known by
construction and stored as the ``W2S ...`` vertex groups the articulation rig reads.

``head_build`` makes the demo's character variants (``HeadStyle``): other proportions and grid
sizes, lips rolled into the mouth with volume, and eye openings made the same way as the mouth
(a doubled row), whose lids wrap round the eyeball's sphere so that a blink slides them over it.
``head_geometry`` is the plain default head the landmark and rig tests know.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

N_AZIMUTH = 72
N_ELEVATION = 48
MOUTH_ELEVATION = -0.42  # radians below the equator
MOUTH_HALF_WIDTH = 0.42  # radians of azimuth either side of the front
EYE_ELEVATION = 0.1
EYE_AZIMUTH = 0.4  # radians either side of the front
EYE_HALF_WIDTH = 0.21  # radians of azimuth: the opening from corner to corner
EYE_OPEN = (0.05, 0.03)  # radians the upper and lower lid margins part at the middle of the eye


@dataclass(frozen=True)
class HeadStyle:
    """Proportions (metres) and build options of a procedural head; the defaults are the plain head."""

    width: float = 0.078  # half-width at the ears
    depth: float = 0.098  # half-depth, front to back
    height: float = 0.118  # half-height
    jaw_narrowing: float = 0.35  # how much the jaw narrows towards the chin
    nose: float = 0.018
    chin: float = 0.01
    n_azimuth: int | None = None  # None: N_AZIMUTH
    n_elevation: int | None = None  # None: N_ELEVATION
    lip_roll: float = 0.0  # metres the lip margins tuck in (and the lips bulge); 0: flat lips
    eye_radius: float = 0.0  # metres; 0: no eye openings


@dataclass
class Eye:
    """One eye opening: the eyeball's centre and radius, the direction it faces, and the lids."""

    side: str  # "L" (+x, the character's left) or "R"
    centre: np.ndarray
    radius: float
    forward: np.ndarray
    upper: list[int]  # vertices of the upper lid's margin, corner to corner
    lower: list[int]  # vertices of the lower lid's margin, in the same columns


@dataclass
class HeadBuild:
    verts: np.ndarray  # (V, 3)
    faces: list[tuple[int, ...]]
    landmarks: dict[str, list[int]]
    params: np.ndarray  # (V, 2) azimuth and elevation each vertex was made from (before any warp)
    columns: np.ndarray  # (V,) grid column of each vertex (-1: the poles)
    lower_side: np.ndarray  # (V,) bool: the lower copy of a doubled row (lower lip, lower lid)
    eyes: list[Eye] = field(default_factory=list)
    lip_faces: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # (F,) faces on the lips


def _shape(phi: np.ndarray, theta: np.ndarray, style: HeadStyle = HeadStyle()) -> np.ndarray:
    """Surface points for azimuth ``phi`` (0 = front, -y) and elevation ``theta``."""
    front = np.cos(phi).clip(0, 1)
    below = (-theta).clip(0, None)
    width = style.width * (1 - style.jaw_narrowing * below**2 * front)  # jaw narrows towards the chin
    depth = style.depth * (1 + 0.06 * front**4 * np.exp(-((theta + 0.15) / 0.25) ** 2))  # nose region
    height = style.height
    r_xy = np.cos(theta)
    x = width * r_xy * np.sin(phi)
    y = -depth * r_xy * np.cos(phi)
    z = np.broadcast_to(height * np.sin(theta), x.shape)
    # nose, brows and chin as smooth bumps on the front
    nose = style.nose * np.exp(-(phi / 0.13) ** 2 - ((theta + 0.1) / 0.12) ** 2)
    brow = 0.006 * np.exp(-((np.abs(phi) - 0.35) / 0.2) ** 2 - ((theta - 0.22) / 0.06) ** 2)
    chin = style.chin * np.exp(-(phi / 0.35) ** 2 - ((theta + 0.78) / 0.12) ** 2)
    lips = 0.006 * np.exp(-(phi / 0.4) ** 2 - ((theta - MOUTH_ELEVATION) / 0.07) ** 2)
    y = y - (nose + brow + chin + lips) * front
    return np.stack([x, y, z], axis=-1)


def _outward(points: np.ndarray, style: HeadStyle) -> np.ndarray:
    """Approximate outward normals: those of the ellipsoid the head is made from."""
    n = points / np.array([style.width, style.depth, style.height]) ** 2
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def _lip_profile(phi: np.ndarray, t: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Outward offset (in units of the style's lip_roll) at elevation ``t`` from the lip line: the
    margins roll in, the lips bulge just above and below them, fading out at the corners."""
    fade = np.sqrt(np.clip(1 - (phi / (MOUTH_HALF_WIDTH * 1.1)) ** 2, 0, 1))
    margin = np.exp(-((t / 0.02) ** 2))
    peak = np.where(lower, np.exp(-(((t + 0.045) / 0.035) ** 2)) * 1.1, np.exp(-(((t - 0.035) / 0.028) ** 2)))
    return fade * (1.4 * peak - margin)


def head_build(style: HeadStyle = HeadStyle()) -> HeadBuild:
    """The head of ``style`` with everything the demo needs to dress and rig it."""
    n_az = style.n_azimuth or N_AZIMUTH
    n_el = style.n_elevation or N_ELEVATION
    phis = np.linspace(-np.pi, np.pi, n_az, endpoint=False)
    thetas = np.linspace(-np.pi / 2 + 0.05, np.pi / 2 - 0.05, n_el)
    mouth_row = int(np.argmin(np.abs(thetas - MOUTH_ELEVATION)))
    thetas[mouth_row] = MOUTH_ELEVATION
    eye_row = -1
    if style.eye_radius:
        eye_row = int(np.argmin(np.abs(thetas - EYE_ELEVATION)))
        thetas[eye_row] = EYE_ELEVATION
    index = np.arange(n_el * n_az).reshape(n_el, n_az)
    params = [np.stack(np.broadcast_arrays(phis[None, :], thetas[:, None]), -1).reshape(-1, 2)]
    columns = [np.tile(np.arange(n_az), n_el)]
    rows = [np.repeat(np.arange(n_el), n_az)]
    # The lip line: strictly inside the mouth the row is doubled (upper lip / lower lip); the
    # first columns outside it are the corners, where the lips meet. The eyes' rows the same way.
    inside = [c for c in range(n_az) if abs(phis[c]) < MOUTH_HALF_WIDTH]
    outside = sorted((c for c in range(n_az) if c not in inside), key=lambda c: abs(phis[c]))
    corners = outside[:2]
    copies: dict[tuple[int, int], int] = {}
    split = {(mouth_row, c) for c in inside}
    eye_cols = {}
    if eye_row >= 0:
        for side, sign in (("L", 1.0), ("R", -1.0)):
            eye_cols[side] = [c for c in range(n_az) if abs(phis[c] - sign * EYE_AZIMUTH) < EYE_HALF_WIDTH]
            split |= {(eye_row, c) for c in eye_cols[side]}
    base = n_el * n_az
    for k, (r, c) in enumerate(sorted(split)):
        copies[(r, c)] = base + k
    copy_keys = sorted(split)
    params.append(np.array([(phis[c], thetas[r]) for r, c in copy_keys]).reshape(-1, 2))
    columns.append(np.array([c for _, c in copy_keys], int))
    rows.append(np.array([r for r, _ in copy_keys], int))
    params, columns, rows = np.concatenate(params), np.concatenate(columns), np.concatenate(rows)
    lower_side = np.zeros(len(params), bool)
    lower_side[base:] = True
    warped = params.copy()
    if eye_row >= 0:  # open the eyes: the lids part, the rows above and below make room
        for sign in (1.0, -1.0):
            u = (params[:, 0] - sign * EYE_AZIMUTH) / EYE_HALF_WIDTH
            profile = np.clip(1 - u**2, 0, None)
            d = params[:, 1] - EYE_ELEVATION
            up = (d > 0) | ((d == 0) & ~lower_side)
            fall = np.exp(-((d / 0.06) ** 2))
            warped[:, 1] += np.where(up, EYE_OPEN[0], -EYE_OPEN[1]) * profile * fall
    verts = _shape(warped[:, 0], warped[:, 1], style)
    mouth_split = (rows == mouth_row) & np.isin(columns, inside)
    verts[mouth_split & ~lower_side, 2] += 0.0005
    verts[mouth_split & lower_side, 2] -= 0.0005
    if style.lip_roll:
        t = params[:, 1] - MOUTH_ELEVATION
        lower = (t < 0) | (mouth_split & lower_side)
        offset = style.lip_roll * _lip_profile(params[:, 0], t, lower)
        verts += offset[:, None] * _outward(verts, style)
    eyes = []
    if eye_row >= 0:
        for side, sign in (("L", 1.0), ("R", -1.0)):
            spot = _shape(np.array(sign * EYE_AZIMUTH), np.array(EYE_ELEVATION), style)
            normal = _outward(spot, style)
            centre = spot - normal * (style.eye_radius - 0.002)  # the eyeball's front 2 mm past the skin
            # the lids (and everything near the eye) wrap the eyeball with a little room, smoothly
            shell, soft = style.eye_radius + 0.0012, 0.002
            rel = verts - centre
            dist = np.linalg.norm(rel, axis=1)
            near = dist < shell + 6 * soft
            wrapped = 0.5 * (dist + shell + np.sqrt((dist - shell) ** 2 + soft**2))
            verts[near] = centre + rel[near] / dist[near, None] * wrapped[near, None]
            cols = eye_cols[side]
            eyes.append(Eye(side, centre, style.eye_radius, np.array([-sign * 0.05, -1.0, 0.0]) / np.hypot(0.05, 1),
                            [int(index[eye_row, c]) for c in cols], [copies[(eye_row, c)] for c in cols]))
    faces = []
    for r in range(n_el - 1):
        for c in range(n_az):
            c2 = (c + 1) % n_az
            quad = [index[r, c], index[r, c2], index[r + 1, c2], index[r + 1, c]]
            # faces just below a doubled row hang from its lower copy
            quad[2], quad[3] = copies.get((r + 1, c2), quad[2]), copies.get((r + 1, c), quad[3])
            faces.append(tuple(int(i) for i in quad))
    # reverse so normals point outwards (rows go up, columns go anticlockwise seen from above)
    faces = [f[::-1] for f in faces]
    bottom, top = len(verts), len(verts) + 1
    verts = np.concatenate([verts, [[0, 0, -style.height], [0, 0, style.height]]])
    params = np.concatenate([params, [[0.0, -np.pi / 2], [0.0, np.pi / 2]]])
    columns = np.concatenate([columns, [-1, -1]])
    lower_side = np.concatenate([lower_side, [False, False]])
    for c in range(n_az):
        c2 = (c + 1) % n_az
        faces.append((bottom, int(index[0, c2]), int(index[0, c])))
        faces.append((top, int(index[-1, c]), int(index[-1, c2])))
    front = int(np.argmin(np.abs(phis)))
    chin_row = int(np.argmin(np.abs(thetas + 0.8)))
    left = max(corners, key=lambda c: phis[c])  # +x is the character's left (facing -y)
    right = min(corners, key=lambda c: phis[c])
    landmarks = {
        "W2S mouth_corner_L": [int(index[mouth_row, left])],
        "W2S mouth_corner_R": [int(index[mouth_row, right])],
        "W2S lip_upper": [int(index[mouth_row, front])],
        "W2S lip_lower": [copies[(mouth_row, front)]],
        "W2S chin": [int(index[chin_row, front])],
    }
    # the lips' faces: an ellipse round the slit, taller below (the lower lip is the fuller)
    centres = np.array([params[list(f)].mean(0) for f in faces])
    t = centres[:, 1] - MOUTH_ELEVATION
    reach = np.where(t < 0, 0.07, 0.06)
    lip_faces = (centres[:, 0] / (MOUTH_HALF_WIDTH * 1.08)) ** 2 + (t / reach) ** 2 < 1
    return HeadBuild(np.asarray(verts, np.float64), faces, landmarks, params, columns, lower_side, eyes, lip_faces)


def head_geometry() -> tuple[np.ndarray, list[tuple[int, ...]], dict[str, list[int]]]:
    """(vertices (V, 3), faces, landmark vertex indices by group name) of the plain head."""
    build = head_build()
    return build.verts, build.faces, build.landmarks


def make_head_object(name: str = "Head", build: HeadBuild | None = None):
    """The head as a Blender object with its landmark vertex groups and smooth shading."""
    import bpy

    build = build or head_build()
    me = bpy.data.meshes.new(name)
    me.from_pydata(build.verts.tolist(), [], build.faces)
    me.update()
    if hasattr(me, "shade_smooth"):
        me.shade_smooth()
    ob = bpy.data.objects.new(name, me)
    bpy.context.scene.collection.objects.link(ob)
    for group, indices in build.landmarks.items():
        ob.vertex_groups.new(name=group).add(indices, 1.0, "REPLACE")
    return ob
