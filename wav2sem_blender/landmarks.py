"""Mouth landmarks found from a head's geometry alone (numpy only, no bpy).

The articulation rig needs the two mouth corners, the upper and lower lip on the midline and the
chin (``wav2sem_contract.articulation.LANDMARKS``). ``find_mouth_landmarks`` finds them on any
head mesh, in any units, orientation and topology:

1. The head is the largest connected part by surface area: loose eyes, teeth or lashes are ignored.
2. Its plane of symmetry gives the across-the-face axis: reflected surface samples must land on
   the surface (a coarse search over directions on a blurred occupancy grid, then a finer one).
   An object axis within a few degrees that fits as well wins, so axis-aligned heads stay exact.
3. The mouth is either an *opening* (a boundary loop of the mesh, centred on the symmetry plane
   and long across it: FLAME, the procedural heads) or, on closed meshes, the *lip crease*: a
   sharp horizontal valley crossing the midline in a depth map of the face, seen along each
   direction of the symmetry plane in turn (the one showing the clearest such valley is the front).
4. Up is the side of the mouth where the nose protrudes; the chin is the most forward midline
   point below the mouth (the middle of its front); the jaw pivot is the pair of points on the
   sides of the head behind and above the mouth (their mean lies inside, on the midline).

Every length is relative to the head's size, so scale does not matter. ``Landmarks.describe``
says what was found; ``LandmarkError`` is one sentence saying what to do instead.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from wav2sem_contract.articulation import LANDMARKS, RigError, mouth_frame

GROUP_NAMES = LANDMARKS + ("jaw_pivot",)
LOW_CONFIDENCE = 0.5  # below: the summary asks the user to look at what was found
AXES = np.eye(3)


class LandmarkError(ValueError):
    """No mouth could be found; str(exc) is one plain sentence."""


@dataclass
class Landmarks:
    """Landmark vertex indices (into the input vertices) and what the search saw."""

    indices: dict[str, list[int]]  # jaw_pivot: a vertex on each side of the head; the others: one vertex
    positions: dict[str, np.ndarray]  # the mean of each landmark's vertices
    method: str  # "opening" (a hole in the mesh) or "crease" (closed lips)
    width: float  # corner to corner, in mesh units
    lateral: np.ndarray  # towards the character's left
    up: np.ndarray
    forward: np.ndarray
    symmetry: float  # how well the head mirrors onto itself: mean error / mouth width
    confidence: float  # 0..1: how clearly the mouth and its up side stood out
    diagnostics: dict[str, float] = field(default_factory=dict)  # the numbers behind the confidence

    def describe(self, unit: float = 1.0, unit_name: str = "") -> str:
        """One line: how the mouth was found and its width (``unit``: metres per mesh unit)."""
        width = self.width * unit
        size = f"{width * 100:.1f} cm" if unit_name == "m" else f"{self.width:.3g}{unit_name}"
        kind = "mouth opening" if self.method == "opening" else "lip crease"
        sure = f"confidence {self.confidence:.2f}" + (" (low: check them)" if self.confidence < LOW_CONFIDENCE else "")
        return (f"{kind}, mouth {size} wide, {sure}; corners at vertices "
                f"{self.indices['mouth_corner_L'][0]}/{self.indices['mouth_corner_R'][0]}, lips "
                f"{self.indices['lip_upper'][0]}/{self.indices['lip_lower'][0]}, chin {self.indices['chin'][0]}")


# -- mesh basics -------------------------------------------------------------------------------------
def triangulate(faces: np.ndarray | Sequence[Sequence[int]], sizes: np.ndarray | None = None) -> np.ndarray:
    """(F, 3) triangles from triangles, from a list of polygons, or from flat corners with ``sizes``."""
    if sizes is None:
        arr = np.asarray(faces, dtype=object) if not isinstance(faces, np.ndarray) else faces
        if isinstance(arr, np.ndarray) and arr.dtype != object and arr.ndim == 2:
            flat, sizes = arr.astype(np.int64).ravel(), np.full(len(arr), arr.shape[1])
        else:
            polys = [np.asarray(f, dtype=np.int64) for f in faces]
            sizes = np.array([len(f) for f in polys], dtype=np.int64)
            flat = np.concatenate(polys) if polys else np.zeros(0, np.int64)
    else:
        flat, sizes = np.asarray(faces, dtype=np.int64).ravel(), np.asarray(sizes, dtype=np.int64)
    starts = np.cumsum(sizes) - sizes
    n_tris = np.clip(sizes - 2, 0, None)
    owner = np.repeat(np.arange(len(sizes)), n_tris)
    k = np.arange(n_tris.sum()) - np.repeat(np.cumsum(n_tris) - n_tris, n_tris)  # fan index in its polygon
    first = flat[starts[owner]]
    return np.stack([first, flat[starts[owner] + k + 1], flat[starts[owner] + k + 2]], axis=1)


def _components(n: int, edges: np.ndarray) -> np.ndarray:
    """Connected-component label of each of ``n`` vertices (min-label hooking with pointer jumping)."""
    label = np.arange(n)
    while True:
        low = np.minimum(label[edges[:, 0]], label[edges[:, 1]])
        before = label.copy()
        np.minimum.at(label, edges[:, 0], low)
        np.minimum.at(label, edges[:, 1], low)
        while True:
            jumped = label[label]
            if (jumped == label).all():
                break
            label = jumped
        if (label == before).all():
            return label


def _areas(verts: np.ndarray, tris: np.ndarray) -> np.ndarray:
    a, b, c = verts[tris[:, 0]], verts[tris[:, 1]], verts[tris[:, 2]]
    return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)


def _sample(verts, tris, areas, n: int, rng, with_faces: bool = False):
    """``n`` points uniformly on the surface (and the triangle each lies on)."""
    pick = rng.choice(len(tris), size=n, p=areas / areas.sum())
    r1, r2 = rng.random(n), rng.random(n)
    flip = r1 + r2 > 1
    r1[flip], r2[flip] = 1 - r1[flip], 1 - r2[flip]
    a, b, c = verts[tris[pick, 0]], verts[tris[pick, 1]], verts[tris[pick, 2]]
    points = a + r1[:, None] * (b - a) + r2[:, None] * (c - a)
    return (points, pick) if with_faces else points


def _outward_normals(verts: np.ndarray, tris: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Unit triangle normals, flipped as a whole when the mesh's winding points them inwards."""
    a, b, c = verts[tris[:, 0]] - centre, verts[tris[:, 1]] - centre, verts[tris[:, 2]] - centre
    cross = np.cross(b - a, c - a)
    volume = float(np.einsum("ij,ij->", a, np.cross(b, c)))
    normals = cross / np.maximum(np.linalg.norm(cross, axis=1, keepdims=True), 1e-300)
    return -normals if volume < 0 else normals


def _boundary_loops(tris: np.ndarray) -> list[np.ndarray]:
    """Each boundary loop as an ordered vertex cycle (edges used by one triangle)."""
    edges = np.sort(np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]]), axis=1)
    uniq, count = np.unique(edges, axis=0, return_counts=True)
    open_edges = uniq[count == 1]
    if not len(open_edges):
        return []
    neighbours: dict[int, list[int]] = {}
    for a, b in open_edges.tolist():
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    loops, seen = [], set()
    for start in neighbours:
        if start in seen:
            continue
        loop, prev, cur = [start], None, start
        seen.add(start)
        while True:  # walk; at a vertex where loops touch, any unvisited neighbour will do
            nxt = [v for v in neighbours[cur] if v != prev and v not in seen]
            if not nxt:
                break
            prev, cur = cur, nxt[0]
            seen.add(cur)
            loop.append(cur)
        loops.append(np.array(loop))
    return loops


# -- symmetry ---------------------------------------------------------------------------------------------
def _fibonacci_hemisphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    z = i / n  # upper hemisphere: a plane's normal has two signs
    phi = np.pi * (1 + 5**0.5) * i
    r = np.sqrt(1 - z**2)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


class _Occupancy:
    """Surface samples voxelised and blurred: how close a point is to the surface, looked up in O(1)."""

    def __init__(self, points: np.ndarray, size: int, extent: float, blur: int):
        self.size, self.extent = size, extent
        grid = np.zeros((size, size, size), np.float32)
        idx = self.index(points)
        grid[idx[:, 0], idx[:, 1], idx[:, 2]] = 1.0
        for _ in range(blur):  # binomial [1 4 6 4 1] / 16 along each axis, zero beyond the edges
            for axis in range(3):
                pad = [(0, 0)] * 3
                pad[axis] = (2, 2)
                g = np.pad(grid, pad)
                part = [np.take(g, np.arange(k, k + size), axis=axis) for k in range(5)]
                grid = (part[0] + 4 * part[1] + 6 * part[2] + 4 * part[3] + part[4]) / 16
        self.grid = grid / max(float(grid.max()), 1e-12)

    def index(self, points: np.ndarray) -> np.ndarray:
        cell = (points + self.extent) / (2 * self.extent) * self.size
        return np.clip(cell.astype(np.int64), 0, self.size - 1)

    def score(self, points: np.ndarray) -> np.ndarray:
        """Mean occupancy of ``points`` (..., N, 3) over N."""
        idx = self.index(points)
        return self.grid[idx[..., 0], idx[..., 1], idx[..., 2]].mean(axis=-1)


def _reflect(points: np.ndarray, normals: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(K, N, 3): ``points`` mirrored in each plane n.x = offset."""
    d = points[None] @ normals[:, :, None] - offsets[:, None, None]  # (K, N, 1)
    return points[None] - 2 * d * normals[:, None, :]


def _symmetry_plane(points: np.ndarray, dense: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Normal, offset (plane n.x = offset, points centred and scaled to unit rms radius) and a fit
    error (mean distance of mirrored points to the surface, in the same units)."""
    coarse = _Occupancy(dense, 40, 2.5, 2)
    dirs = np.concatenate([_fibonacci_hemisphere(500), AXES])
    scores = np.concatenate([coarse.score(_reflect(points, dirs[i:i + 64], np.zeros(len(dirs[i:i + 64]))))
                             for i in range(0, len(dirs), 64)])
    fine = _Occupancy(dense, 112, 2.5, 1)
    best = None
    for k in np.argsort(-scores)[:8]:
        n, off = dirs[k].copy(), 0.0
        s = float(fine.score(_reflect(points, n[None], np.array([off])))[0])
        for step in (0.08, 0.04, 0.02, 0.01, 0.005):
            improved = True
            while improved:
                improved = False
                a = np.cross(n, AXES[np.argmin(np.abs(n))])
                a /= np.linalg.norm(a)
                b = np.cross(n, a)
                trial_n = [n + step * a, n - step * a, n + step * b, n - step * b, n, n]
                trial_off = [off] * 4 + [off + step, off - step]
                trial_n = np.array([t / np.linalg.norm(t) for t in trial_n])
                ts = fine.score(_reflect(points, trial_n, np.array(trial_off)))
                j = int(np.argmax(ts))
                if ts[j] > s + 1e-9:
                    n, off, s, improved = trial_n[j], trial_off[j], float(ts[j]), True
        if best is None or s > best[2]:
            best = (n, off, s)
    n, off, s = best
    # an object axis that mirrors the head as well is the intended one (heads are modelled on axes)
    for axis in AXES:
        if abs(axis @ n) > np.cos(np.radians(4)):
            axis_n = axis * np.sign(axis @ n)
            offs = off + np.linspace(-0.02, 0.02, 9)
            ts = fine.score(_reflect(points, np.repeat(axis_n[None], len(offs), 0), offs))
            if ts.max() >= s - 0.01:
                n, off, s = axis_n, float(offs[np.argmax(ts)]), float(ts.max())
    mirrored = _reflect(points, n[None], np.array([off]))[0]
    return n, off, _mean_nearest(mirrored[:500], dense)


def _mean_nearest(query: np.ndarray, points: np.ndarray, cell: float = 0.05) -> float:
    """Mean distance from each query point to the nearest of ``points`` (capped at 2 cells)."""
    keys = np.floor(points / cell).astype(np.int64)
    order = np.lexsort(keys[:, ::-1].T)  # rows sorted as np.unique sorts them
    keys, pts = keys[order], points[order]
    uniq, start = np.unique(keys, axis=0, return_index=True)
    table = {tuple(k): (s, e) for k, s, e in zip(uniq.tolist(), start, np.append(start[1:], len(keys)), strict=True)}
    qk = np.floor(query / cell).astype(np.int64)
    out = np.full(len(query), 2 * cell)
    for i, (q, k) in enumerate(zip(query, qk.tolist(), strict=True)):
        best = 2 * cell
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for dz in (-1, 0, 1):
                    se = table.get((k[0] + dx, k[1] + dy, k[2] + dz))
                    if se is not None:
                        best = min(best, float(np.sqrt(((pts[se[0]:se[1]] - q) ** 2).sum(1).min())))
        out[i] = best
    return float(out.mean())


# -- depth maps ---------------------------------------------------------------------------------------------
@dataclass
class _DepthMap:
    depth: np.ndarray  # (rows, cols): the frontmost surface (along ``forward``) per pixel; row 0 is lowest
    origin: np.ndarray  # (2,) vertical, lateral coordinate of pixel (0, 0)'s centre
    pixel: float
    floor: float  # the depth given to pixels that see nothing

    def centre_col(self) -> int:
        return int(round(-self.origin[1] / self.pixel))

    def point(self, row: float, col: float) -> tuple[float, float]:
        return self.origin[0] + row * self.pixel, self.origin[1] + col * self.pixel


def _depth_map(local: np.ndarray, pixel: float, lo: np.ndarray, hi: np.ndarray) -> _DepthMap:
    """``local`` samples as (lateral, vertical, forward); the frontmost per pixel in [lo, hi] (vertical,
    lateral). Empty pixels inside the head (a hole one looks through) read as far behind."""
    rows = int(np.ceil((hi[0] - lo[0]) / pixel)) + 1
    cols = int(np.ceil((hi[1] - lo[1]) / pixel)) + 1
    r = np.round((local[:, 1] - lo[0]) / pixel).astype(np.int64)
    c = np.round((local[:, 0] - lo[1]) / pixel).astype(np.int64)
    keep = (r >= 0) & (r < rows) & (c >= 0) & (c < cols)
    depth = np.full(rows * cols, -np.inf)
    np.maximum.at(depth, r[keep] * cols + c[keep], local[keep, 2])
    depth = depth.reshape(rows, cols)
    for _ in range(2):  # a pixel no sample fell in, among filled ones, is a gap in the sampling
        empty = ~np.isfinite(depth)
        if not empty.any():
            break
        pad = np.pad(depth, 1, constant_values=-np.inf)
        around = np.max([pad[1 + dr:1 + dr + rows, 1 + dc:1 + dc + cols]
                         for dr in (-1, 0, 1) for dc in (-1, 0, 1)], axis=0)
        depth[empty] = around[empty]
    floor = (np.min(local[:, 2]) if len(local) else 0.0) - 0.05 * (hi[1] - lo[1])
    depth[~np.isfinite(depth)] = floor  # nothing there (beside the head): far behind
    # A pixel that missed the front surface shows a surface behind it: deeper than its neighbours on
    # both sides *across* the face. A slit between the lips runs across, so it keeps its neighbours.
    for _ in range(2):
        left, right = np.roll(depth, 1, axis=1), np.roll(depth, -1, axis=1)
        lone = np.minimum(left, right) > depth + pixel
        depth = np.where(lone, np.maximum(left, right), depth)
    return _DepthMap(depth, lo.astype(float), pixel, floor)


def _valleys(depth: np.ndarray, reach: int) -> np.ndarray:
    """Per pixel: how far the surface within ``reach`` pixels above *and* below stands in front of it
    (0 on a slope or a ridge; large in a narrow horizontal groove or a slit)."""
    rows = depth.shape[0]
    pad = np.full((reach, depth.shape[1]), -np.inf)
    padded = np.concatenate([pad, depth, pad])
    above = np.max([padded[reach + k:reach + k + rows] for k in range(1, reach + 1)], axis=0)
    below = np.max([padded[reach - k:reach - k + rows] for k in range(1, reach + 1)], axis=0)
    return np.clip(np.minimum(above, below) - depth, 0, None)


@dataclass
class _Trace:
    score: float
    rows: dict[int, int]  # column -> valley row
    left: int  # first and last column of the valley
    right: int
    centre_row: int


def _trace_mouth(valley: np.ndarray, centre_col: int, threshold: float, max_cols: int,
                 rank=None) -> _Trace | None:
    """The strongest horizontal valley crossing the centre column, followed sideways to where it fades
    (``rank(trace)`` scales a candidate's score by how face-like its surroundings are)."""
    cols = valley.shape[1]
    mid = valley[:, max(centre_col - 1, 0):centre_col + 2].max(axis=1)
    candidates = [i for i in range(1, len(mid) - 1) if mid[i] > threshold and mid[i] >= mid[i - 1]
                  and mid[i] >= mid[i + 1]]
    best = None
    for row in sorted(candidates, key=lambda i: -mid[i])[:10]:
        rows = {centre_col: row}
        strengths = [mid[row]]
        ends = []
        for step in (1, -1):
            r, c, misses = row, centre_col, 0
            end = c
            while 0 <= c + step < cols and abs(c + step - centre_col) <= max_cols:
                c += step
                lo, hi = max(r - 2, 0), min(r + 3, valley.shape[0])
                j = lo + int(np.argmax(valley[lo:hi, c]))
                v = valley[j, c]
                if v < 0.3 * mid[row]:
                    misses += 1
                    if misses > 1:
                        break
                    continue
                misses, r, end = 0, j, c
                rows[c] = j
                strengths.append(v)
            ends.append(end)
            if abs(c + step - centre_col) > max_cols and 0 <= c + step < cols:
                ends[-1] = None  # never faded: not a mouth (a jaw line, a hole's rim)
        if None in ends:
            continue
        right, left = ends
        half = min(right - centre_col, centre_col - left)
        if half < 3 or max(right - centre_col, centre_col - left) > 1.6 * half + 2:
            continue  # a mouth is about symmetric and more than a few pixels wide
        score = float(np.mean(strengths)) * np.sqrt(right - left)
        if rank is not None:
            score *= rank(row, left, right)
        if score > 0 and (best is None or score > best.score):
            best = _Trace(score, rows, left, right, row)
    return best


# -- the search ------------------------------------------------------------------------------------------
def _nearest(points: np.ndarray, targets: np.ndarray, among: np.ndarray | None = None) -> np.ndarray:
    """Index (into ``points``) of the nearest point to each target, optionally only ``among`` indices."""
    idx = np.arange(len(points)) if among is None else among
    cand = points[idx]
    return np.array([idx[int(np.argmin(((cand - t) ** 2).sum(1)))] for t in np.atleast_2d(targets)])


def find_mouth_landmarks(
    vertices: np.ndarray, faces: np.ndarray | Sequence[Sequence[int]], sizes: np.ndarray | None = None,
    seed: int = 0,
) -> Landmarks:
    """Landmarks of the head in ``vertices`` (V, 3) with ``faces`` (triangles, polygons, or flat corners
    with ``sizes``). Raises ``LandmarkError`` when no mouth can be found."""
    verts = np.asarray(vertices, dtype=np.float64)
    if verts.ndim != 2 or verts.shape[1] != 3 or not len(verts):
        raise LandmarkError("The mesh has no vertices to search.")
    tris = triangulate(faces, sizes)
    if len(tris) < 50:
        raise LandmarkError("The mesh has too few faces to find a mouth on.")
    rng = np.random.default_rng(seed)
    areas = _areas(verts, tris)
    edges = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]]])
    label = _components(len(verts), edges)
    tri_label = label[tris[:, 0]]
    per_part = np.bincount(tri_label, weights=areas, minlength=len(verts))
    main = int(np.argmax(per_part))
    keep = (tri_label == main) & (areas > 0)
    tris, areas = tris[keep], areas[keep]
    head = np.unique(tris)  # the head's vertices (loose parts left out)

    centre = (areas[:, None] * verts[tris].mean(axis=1)).sum(0) / areas.sum()
    surface = _sample(verts, tris, areas, 30000, rng)
    scale = float(np.sqrt(((surface - centre) ** 2).sum(1).mean()))
    unit = (surface - centre) / scale
    lateral, offset, mirror_error = _symmetry_plane(unit[:3000], unit)
    x_all = ((verts[head] - centre) / scale) @ lateral - offset
    head_width = float(np.ptp(x_all))

    def to_local(points, fwd):
        p = (points - centre) / scale
        vert = np.cross(fwd, lateral)
        return np.stack([p @ lateral - offset, p @ vert, p @ fwd], axis=-1)

    def _finish(method: str, found) -> Landmarks:
        corners, lips_a, lips_b, forward, strength = found
        # up: the nose side of the mouth protrudes far more than the chin side
        profile = _sample(verts, tris, areas, 60000, rng)
        local = to_local(profile, forward)
        mouth_c = to_local(np.array([(verts[lips_a] + verts[lips_b]) / 2]), forward)[0]
        corner_l = to_local(verts[corners], forward)
        width = float(abs(corner_l[0, 0] - corner_l[1, 0]))
        band = np.abs(local[:, 0]) < 0.12 * width
        rel = local[band] - mouth_c
        above = rel[(rel[:, 1] > 0.3 * width) & (rel[:, 1] < 1.2 * width), 2]
        below = rel[(rel[:, 1] < -0.3 * width) & (rel[:, 1] > -1.2 * width), 2]
        if not len(above) or not len(below):
            raise LandmarkError("A mouth-like shape was found but no face around it: no nose above or chin below.")
        nose_margin = (above.max() - below.max()) / width
        vertical = np.cross(forward, lateral)
        up = vertical if nose_margin > 0 else -vertical
        sign = 1.0 if nose_margin > 0 else -1.0
        # the chin: the lowest forward point below the mouth, i.e. the midline point furthest along
        # forward-and-down (the gnathion: where the chin's front turns under)
        rel_v = to_local(verts[head], forward) - mouth_c
        rel_v[:, 1] *= sign
        # below the lower lip (an open mouth's centre is far above it)
        lip_low = min(sign * (to_local(verts[[lips_a, lips_b]], forward)[:, 1] - mouth_c[1]))
        top = min(-0.35 * width, lip_low - 0.35 * width)
        chin = None
        for reach in (0.06, 0.15, 0.3):
            zone = (np.abs(rel_v[:, 0] + mouth_c[0]) < reach * width) & (rel_v[:, 1] < top) & \
                (rel_v[:, 1] > top - 1.25 * width)
            if zone.sum() >= 3:
                chin = int(head[zone][np.argmax(rel_v[zone, 2] - rel_v[zone, 1])])
                break
        if chin is None:
            raise LandmarkError("A mouth was found but no chin below it.")
        # character's left: lateral = up x forward
        left_dir = np.cross(up, forward)
        if (verts[corners[0]] - verts[corners[1]]) @ left_dir < 0:
            corners = corners[::-1]
        upper, lower = (lips_a, lips_b) if (verts[lips_a] - verts[lips_b]) @ up >= 0 else (lips_b, lips_a)
        width_units = float(np.linalg.norm(verts[corners[0]] - verts[corners[1]]))
        indices = {"mouth_corner_L": [int(corners[0])], "mouth_corner_R": [int(corners[1])],
                   "lip_upper": [int(upper)], "lip_lower": [int(lower)], "chin": [chin]}
        pivot = _jaw_pivot(verts, head, indices, left_dir, up, forward, width_units)
        if pivot is not None:
            indices["jaw_pivot"] = pivot
        positions = {n: verts[i].mean(axis=0) for n, i in indices.items()}
        # the rig must read the same mouth from these points as the search saw (a nose base taken for
        # lips on a head whose mouth was smoothed away gives lips upside down, or a chin above them)
        try:
            frame = mouth_frame(verts, positions)
        except RigError as exc:
            raise LandmarkError(f"The shapes found do not make a mouth ({exc}).") from None
        if frame.up @ up < 0.7 or frame.forward @ forward < 0.7:
            raise LandmarkError("The shapes found do not make a mouth (its lips, corners and chin disagree on up).")
        confidence = float(np.clip(min(abs(nose_margin) / 0.3, strength), 0.0, 1.0))
        diagnostics = {"nose": float(abs(nose_margin)), "valley": strength}
        return Landmarks(indices, positions, method, width_units, left_dir, up, forward,
                         mirror_error * scale / max(width_units, 1e-12), confidence, diagnostics)

    # Each candidate in turn (an opening, then creases from narrow to wide): the first that makes a
    # consistent face wins; a candidate refused for what was around it lets the next one try.
    candidates = itertools.chain(
        [("opening", _from_opening(verts, tris, centre, scale, lateral, offset, head_width))],
        (("crease", c) for c in _from_crease(verts, tris, areas, centre, scale, lateral, offset, head_width, rng)))
    refusal = None
    for method, found in candidates:
        if found is None:
            continue
        try:
            return _finish(method, found)
        except LandmarkError as exc:
            refusal = refusal or exc
    raise refusal or LandmarkError("No mouth was found: neither an opening between the lips nor a lip crease.")


def _from_opening(verts, tris, centre, scale, lateral, offset, head_width):
    """Corners, the two lip vertices on the midline, forward and a strength from a mouth-shaped hole."""
    best = None
    for loop in _boundary_loops(tris):
        if len(loop) < 6:
            continue
        p = (verts[loop] - centre) / scale
        x = p @ lateral - offset
        width = float(np.ptp(x))
        if not 0.1 * head_width < width < 0.75 * head_width or abs(x.max() + x.min()) > 0.3 * width:
            continue
        flat = p - np.outer(p @ lateral, lateral)
        flat -= flat.mean(0)
        across = float(np.linalg.svd(flat, compute_uv=False)[0]) / np.sqrt(len(loop)) * 2
        elongation = width / max(across, 1e-12)
        if elongation < 1.8:
            continue  # round: a neck or an eye socket, not lips
        if best is None or elongation > best[0]:
            best = (elongation, loop, x)
    if best is None:
        return None
    _, loop, x = best
    i_l, i_r = int(np.argmax(x)), int(np.argmin(x))
    a, b = sorted((i_l, i_r))
    chain1 = loop[a:b + 1]
    chain2 = np.concatenate([loop[b:], loop[:a + 1]])
    if len(chain1) < 3 or len(chain2) < 3:
        return None

    def midline(chain):
        inner = chain[1:-1]
        xs = ((verts[inner] - centre) / scale) @ lateral - offset
        return int(inner[np.argmin(np.abs(xs))])

    lip_a, lip_b = midline(chain1), midline(chain2)
    corners = np.array([loop[i_l], loop[i_r]])
    ahead = verts[loop].mean(0) - verts[corners].mean(0)
    ahead -= (ahead @ lateral) * lateral
    if np.linalg.norm(ahead) < 1e-3 * np.linalg.norm(verts[corners[0]] - verts[corners[1]]):
        ahead = verts[loop].mean(0) - centre
        ahead -= (ahead @ lateral) * lateral
    return corners, lip_a, lip_b, ahead / np.linalg.norm(ahead), 1.0


def _from_crease(verts, tris, areas, centre, scale, lateral, offset, head_width, rng) -> Iterator[tuple]:
    """Closed lips: the direction in the symmetry plane from which the face shows the clearest short
    horizontal valley across the midline is the front; the valley's ends are the corners."""
    a = np.cross(lateral, AXES[np.argmin(np.abs(lateral))])
    a /= np.linalg.norm(a)
    b = np.cross(lateral, a)
    # Views every 15 degrees, and along the object's axes (projected into the plane): heads are
    # usually modelled facing one, so a mouth seen along an axis counts half as much again (a nose
    # base seen from below can otherwise outrank a faint mouth seen from the front).
    on_axis = []
    for axis in AXES:
        for s in (1, -1):
            v = s * axis - (s * axis @ lateral) * lateral
            if np.linalg.norm(v) > 0.5:
                on_axis.append(float(np.arctan2(v @ b, v @ a)))
    angles = [(angle, 1.5) for angle in on_axis]
    for angle in np.radians(np.arange(0, 360, 15)):
        if all(abs((angle - other + np.pi) % (2 * np.pi) - np.pi) > np.radians(3) for other in on_axis):
            angles.append((float(angle), 1.0))
    pixel = head_width / 90
    n = int(np.clip(6 * areas.sum() / scale**2 / pixel**2, 20000, 400000))
    normals = _outward_normals(verts, tris, centre)
    p, on = _sample(verts, tris, areas, n, rng, with_faces=True)
    p, pn = (p - centre) / scale, normals[on]
    maps = []
    for angle, weight in angles:
        fwd = np.cos(angle) * a + np.sin(angle) * b
        vert = np.cross(fwd, lateral)
        facing = pn @ fwd > 0  # seen from the front: the inside of the head (through a hole) is not
        local = np.stack([p @ lateral - offset, p @ vert, p @ fwd], axis=1)
        lo = np.array([local[:, 1].min(), -head_width / 2])
        hi = np.array([local[:, 1].max(), head_width / 2])
        maps.append((angle, weight, _depth_map(local[facing], pixel, lo, hi)))
    # a slit or crease first; then wider gaps (parted lips on a closed mesh: a recess, an open mouth)
    for spread in (1.0, 2.5, 6.0):
        found = _crease_at(verts, tris, areas, centre, scale, lateral, offset, head_width, rng, a, b, p, pn,
                           normals, pixel, maps, spread)
        if found is not None:
            yield found


def _crease_at(verts, tris, areas, centre, scale, lateral, offset, head_width, rng, a, b, p, pn, normals, pixel,
               maps, spread):
    best = None
    for angle, weight, dm in maps:
        valley = _valleys(dm.depth, int(round(3 * spread))) / head_width
        trace = _trace_mouth(valley, dm.centre_col(), 0.004, int(0.25 * head_width / pixel),
                             rank=lambda r, left, right, dm=dm, w=weight: w * _nose_factor(dm, r, left, right))
        if trace is not None and (best is None or trace.score > best[0].score + 1e-9):
            best = (trace, angle)
    if best is None:
        return None
    trace, angle = best
    # refine around the valley with a finer map
    fwd = np.cos(angle) * a + np.sin(angle) * b
    vert = np.cross(fwd, lateral)
    local = np.stack([p @ lateral - offset, p @ vert, p @ fwd], axis=1)
    width_est = (trace.right - trace.left) * pixel
    row_v = local[:, 1].min() + trace.centre_row * pixel
    # denser samples from the triangles near the mouth
    tri_local_c = ((verts[tris].mean(1) - centre) / scale)
    tv = tri_local_c @ vert
    tx = tri_local_c @ lateral - offset
    sel = (np.abs(tv - row_v) < 1.8 * width_est) & (np.abs(tx) < 1.4 * width_est)
    if sel.sum() < 10:
        return None
    fine_px = width_est / 80
    n_fine = int(min(600000, max(50000, 8 * areas[sel].sum() / scale**2 / fine_px**2)))
    extra, on = _sample(verts, tris[sel], areas[sel], n_fine, rng, with_faces=True)
    extra = ((extra - centre) / scale)[normals[sel][on] @ fwd > 0]
    pts = extra
    loc = np.stack([pts @ lateral - offset, pts @ vert, pts @ fwd], axis=1)
    lo = np.array([row_v - 1.6 * width_est, -1.2 * width_est])
    hi = np.array([row_v + 1.6 * width_est, 1.2 * width_est])
    dm = _depth_map(loc, fine_px, lo, hi)
    # up close, the lips may part onto nothing (a mouth with its inside left out): as deep as a crease
    valley = np.minimum(_valleys(dm.depth, max(3, int(0.06 * spread * width_est / fine_px))) / width_est, 0.1 * spread)
    fine = _trace_mouth(valley, dm.centre_col(), 0.01, int(1.1 * width_est / fine_px),
                        rank=lambda r, left, right: _nose_factor(dm, r, left, right, see_through=True))
    if fine is None:
        return None
    depth = dm.depth

    def point(row, col):  # on the front surface: a pixel in the slit may see through it
        v_, x_ = dm.point(row, col)
        z = depth[max(row - 2, 0):row + 3, col].max()
        return centre + scale * ((x_ + offset) * lateral + v_ * vert + z * fwd)

    head = np.unique(tris)
    c0 = dm.centre_col()
    # the head is symmetric: one half-width for both corners halves the error of where a valley fades
    half = (fine.right - fine.left) / 2
    ends = [int(round(c0 + half)), int(round(c0 - half))]
    rows = [fine.rows[min(fine.rows, key=lambda c: abs(c - e))] for e in ends]
    corners = _nearest(verts, np.array([point(r, e) for r, e in zip(rows, ends, strict=True)]), head)
    r0 = fine.centre_row
    strength = float(valley[r0, c0])
    column = depth[:, c0]
    bottom = column[r0]

    def rim(step):  # mid-slope of the lip on that side of the slit
        r = r0
        reach = max(3, int(0.12 * spread * (fine.right - fine.left)))  # about a lip's height
        top = max(column[r0 + step * k] for k in range(0, reach) if 0 <= r0 + step * k < len(column))
        # mid-slope of a crease, but no deeper than a tenth of the mouth behind the lip's front
        # (an open mouth shows its inside far behind; the lip is its rim, not half way down)
        level = max(bottom + 0.5 * (top - bottom), top - 0.1 * (fine.right - fine.left) * fine_px)
        while 0 <= r + step < len(column) and column[r] < level:
            r += step
        return r

    lip_a = int(_nearest(verts, point(rim(1), c0), head)[0])
    lip_b = int(_nearest(verts, point(rim(-1), c0), head)[0])
    return corners, lip_a, lip_b, fwd, float(np.clip(strength / 0.05, 0, 1))


def _nose_factor(dm: _DepthMap, row: int, left: int, right: int, see_through: bool = False) -> float:
    """How face-like a valley's surroundings are: on one side of the mouth a nose stands well in
    front of the lips, on the other the chin stays behind them (0: not a mouth)."""
    depth, col, pixel = dm.depth, dm.centre_col(), dm.pixel
    if depth[row, col] <= dm.floor and not see_through:
        return 0.0  # from afar: a hole one sees nothing through (a head open at the neck), not lips
    w = right - left
    cols = slice(max(col - max(1, w // 6), 0), col + max(1, w // 6) + 1)
    lips = depth[max(row - max(1, w // 5), 0):row + max(1, w // 5) + 1, cols].max()

    def front(a, b):
        lo, hi = sorted((row + int(a * w), row + int(b * w)))
        part = depth[max(lo, 0):max(min(hi, len(depth)), 0), cols]
        return part.max() if part.size else -np.inf

    sides = sorted([front(0.3, 1.2), front(-1.2, -0.3)])
    nose, chin = sides[1] - lips, sides[0] - lips
    if not np.isfinite(nose) or not np.isfinite(chin):
        return 0.0
    # the lips are near the front of the head: only the nose stands further forward
    behind = (depth.max() - lips) / (w * pixel)
    return float(np.clip(nose / (w * pixel) / 0.1, 0, 2) * np.clip(1 - chin / (0.5 * max(nose, 1e-12)), 0, 1)
                 * np.clip((1.0 - behind) / 0.4, 0, 1))


def _jaw_pivot(verts, head, indices, left, up, forward, width) -> list[int] | None:
    """A vertex on each side of the head level with the jaw joint: behind and above the mouth."""
    centre = (verts[indices["mouth_corner_L"][0]] + verts[indices["mouth_corner_R"][0]]) / 2
    target = centre - 1.7 * width * forward + 0.6 * width * up
    rel = verts[head] - target
    near = (np.abs(rel @ up) < 0.2 * width) & (np.abs(rel @ forward) < 0.2 * width)
    if near.sum() < 2:
        return None
    side = rel[near] @ left
    idx = head[near]
    lft, rgt = int(idx[np.argmax(side)]), int(idx[np.argmin(side)])
    if side.max() < 0.5 * width or side.min() > -0.5 * width:
        return None  # the mesh does not reach round the sides (a face mask)
    return [lft, rgt]
