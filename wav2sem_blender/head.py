"""A procedural stylised head for the demo and tests: no third-party asset.

A deformed sphere (metres, z up, facing -y as Blender's front view sees it) with a chin, a
nose, brows and a real mouth opening: along the lip line the upper and lower lips are
separate vertex rows, so the jaw can open. The lip and chin landmarks are known by
construction and stored as the ``W2S ...`` vertex groups the articulation rig reads.
"""

from __future__ import annotations

import numpy as np

N_AZIMUTH = 72
N_ELEVATION = 48
MOUTH_ELEVATION = -0.42  # radians below the equator
MOUTH_HALF_WIDTH = 0.42  # radians of azimuth either side of the front


def _shape(phi: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Surface points for azimuth ``phi`` (0 = front, -y) and elevation ``theta``."""
    front = np.cos(phi).clip(0, 1)
    below = (-theta).clip(0, None)
    width = 0.078 * (1 - 0.35 * below**2 * front)  # jaw narrows towards the chin
    depth = 0.098 * (1 + 0.06 * front**4 * np.exp(-((theta + 0.15) / 0.25) ** 2))  # nose region
    height = 0.118
    r_xy = np.cos(theta)
    x = width * r_xy * np.sin(phi)
    y = -depth * r_xy * np.cos(phi)
    z = np.broadcast_to(height * np.sin(theta), x.shape)
    # nose, brows and chin as smooth bumps on the front
    nose = 0.018 * np.exp(-(phi / 0.13) ** 2 - ((theta + 0.1) / 0.12) ** 2)
    brow = 0.006 * np.exp(-((np.abs(phi) - 0.35) / 0.2) ** 2 - ((theta - 0.22) / 0.06) ** 2)
    chin = 0.01 * np.exp(-(phi / 0.35) ** 2 - ((theta + 0.78) / 0.12) ** 2)
    lips = 0.006 * np.exp(-(phi / 0.4) ** 2 - ((theta - MOUTH_ELEVATION) / 0.07) ** 2)
    y = y - (nose + brow + chin + lips) * front
    return np.stack([x, y, z], axis=-1)


def head_geometry() -> tuple[np.ndarray, list[tuple[int, ...]], dict[str, list[int]]]:
    """(vertices (V, 3), faces, landmark vertex indices by group name)."""
    phis = np.linspace(-np.pi, np.pi, N_AZIMUTH, endpoint=False)
    thetas = np.linspace(-np.pi / 2 + 0.05, np.pi / 2 - 0.05, N_ELEVATION)
    mouth_row = int(np.argmin(np.abs(thetas - MOUTH_ELEVATION)))
    thetas[mouth_row] = MOUTH_ELEVATION
    grid = _shape(phis[None, :], thetas[:, None])  # (rows, cols, 3)
    index = np.arange(N_ELEVATION * N_AZIMUTH).reshape(N_ELEVATION, N_AZIMUTH)
    verts = list(grid.reshape(-1, 3))
    # The lip line: strictly inside the mouth the row is doubled (upper lip / lower lip); the
    # first columns outside it are the corners, where the lips meet.
    inside = [c for c in range(N_AZIMUTH) if abs(phis[c]) < MOUTH_HALF_WIDTH]
    outside = sorted((c for c in range(N_AZIMUTH) if c not in inside), key=lambda c: abs(phis[c]))
    corners = outside[:2]
    lower_copy = {}
    for c in inside:
        lower_copy[c] = len(verts)
        verts.append(grid[mouth_row, c] + np.array([0.0, 0.0, -0.0005]))
        verts[index[mouth_row, c]] = grid[mouth_row, c] + np.array([0.0, 0.0, 0.0005])
    faces = []
    for r in range(N_ELEVATION - 1):
        for c in range(N_AZIMUTH):
            c2 = (c + 1) % N_AZIMUTH
            quad = [index[r, c], index[r, c2], index[r + 1, c2], index[r + 1, c]]
            if r + 1 == mouth_row:  # faces just below the lip line hang from the lower lip
                quad[2], quad[3] = lower_copy.get(c2, quad[2]), lower_copy.get(c, quad[3])
            faces.append(tuple(int(i) for i in quad))
    # reverse so normals point outwards (rows go up, columns go anticlockwise seen from above)
    faces = [f[::-1] for f in faces]
    bottom, top = len(verts), len(verts) + 1
    verts += [np.array([0, 0, -0.118]), np.array([0, 0, 0.118])]
    for c in range(N_AZIMUTH):
        c2 = (c + 1) % N_AZIMUTH
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
        "W2S lip_lower": [lower_copy[front]],
        "W2S chin": [int(index[chin_row, front])],
    }
    return np.asarray(verts, dtype=np.float64), faces, landmarks


def make_head_object(name: str = "Head"):
    """The head as a Blender object with its landmark vertex groups and smooth shading."""
    import bpy

    verts, faces, landmarks = head_geometry()
    me = bpy.data.meshes.new(name)
    me.from_pydata(verts.tolist(), [], faces)
    me.update()
    if hasattr(me, "shade_smooth"):
        me.shade_smooth()
    ob = bpy.data.objects.new(name, me)
    bpy.context.scene.collection.objects.link(ob)
    for group, indices in landmarks.items():
        ob.vertex_groups.new(name=group).add(indices, 1.0, "REPLACE")
    return ob
