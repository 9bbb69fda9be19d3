"""Bind the vertices of one mesh to the closest points of another mesh's triangle surface.

A target vertex is bound to the barycentric coordinates of its closest surface point on the
source, so any per-vertex motion of the source (shape-key deltas, animation offsets) can be
carried over to a different topology.

The search needs no spatial library and is exact. Target vertices are processed in compact
groups (one grid cell each). For a group, the distance to the nearest source vertex is an
upper bound ``u`` of each vertex's distance to the surface (vertices lie on it), and a
triangle can only be closer than ``u`` if the ball around it (centroid, largest
centroid-corner distance) comes within ``u``; only those few (vertex, triangle) pairs get the
exact point-triangle test (vertex, edge and face regions). Beyond ``max_distance + falloff``
(weight 0) the bound is capped, so far vertices cost nothing and keep the nearest-vertex answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .transform import RetargetError

MIN_OVERLAP = 0.05  # fraction of target vertices that must lie within max_distance
_CELL_EDGES = 6  # grid cell for grouping target vertices, in median source edge lengths
_BLOCK = 512  # at most this many target vertices per group (bounds the pair matrices)
_TRANSFER_CHUNK = 1 << 22  # floats per gathered block in Binding.transfer


@dataclass
class Binding:
    triangles: np.ndarray  # (Vt, 3) int64 source vertex indices
    barycentric: np.ndarray  # (Vt, 3) float64, rows sum to 1
    distance: np.ndarray  # (Vt,) to the closest surface point
    weights: np.ndarray  # (Vt,) in [0, 1]

    def transfer(self, offsets: np.ndarray) -> np.ndarray:
        """Source offsets (Vs, 3) -> (Vt, 3), or (T, Vs, 3) -> (T, Vt, 3) float32, chunked over T."""
        arr = np.asarray(offsets)
        if arr.ndim not in (2, 3) or arr.shape[-1] != 3:
            raise RetargetError(f"Offsets must have shape (vertices, 3) or (frames, vertices, 3), not {arr.shape}.")
        if arr.shape[-2] <= int(self.triangles.max(initial=-1)):
            raise RetargetError(f"The offsets have {arr.shape[-2]} vertices, fewer than the bound source mesh.")
        if arr.ndim == 2:
            return self._transfer_block(arr[None].astype(np.float64))[0]
        out = np.zeros((arr.shape[0], len(self.weights), 3), dtype=np.float32)
        active = np.flatnonzero(self.weights > 0)  # weight-0 vertices stay exactly 0
        step = max(1, _TRANSFER_CHUNK // max(1, 9 * len(active)))
        for t0 in range(0, arr.shape[0], step):
            out[t0:t0 + step, active] = self._transfer_block(arr[t0:t0 + step], active)
        return out

    def _transfer_block(self, block: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        tri = self.triangles if rows is None else self.triangles[rows]
        bary = self.barycentric if rows is None else self.barycentric[rows]
        w = self.weights if rows is None else self.weights[rows]
        acc = block[:, tri[:, 0]] * (bary[:, 0] * w)[:, None]
        acc += block[:, tri[:, 1]] * (bary[:, 1] * w)[:, None]
        acc += block[:, tri[:, 2]] * (bary[:, 2] * w)[:, None]
        return acc

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"triangles": self.triangles, "barycentric": self.barycentric,
                "distance": self.distance, "weights": self.weights}

    @classmethod
    def from_arrays(cls, d: dict[str, np.ndarray]) -> Binding:
        """From ``to_arrays`` output, an ``np.load``-ed npz, or flat lists (e.g. custom properties)."""
        try:
            tri = np.asarray(d["triangles"], dtype=np.int64).reshape(-1, 3)
            bary = np.asarray(d["barycentric"], dtype=np.float64).reshape(-1, 3)
            dist = np.asarray(d["distance"], dtype=np.float64).reshape(-1)
            weights = np.asarray(d["weights"], dtype=np.float64).reshape(-1)
        except (KeyError, ValueError) as exc:
            raise RetargetError(f"The stored binding is incomplete or corrupt ({exc}).") from None
        if not len(tri) == len(bary) == len(dist) == len(weights):
            raise RetargetError("The stored binding is corrupt (its arrays have different lengths).")
        return cls(tri, bary, dist, weights)


def triangulate(face_sizes: np.ndarray, face_vertex_indices: np.ndarray) -> np.ndarray:
    """Fan-triangulate polygons given as sizes (F,) and flat corner indices -> (F', 3) int64."""
    sizes = np.asarray(face_sizes, dtype=np.int64).reshape(-1)
    flat = np.asarray(face_vertex_indices, dtype=np.int64).reshape(-1)
    if (sizes < 3).any():
        raise RetargetError("The mesh has faces with fewer than 3 corners.")
    if sizes.sum() != len(flat):
        raise RetargetError(f"The face sizes add up to {sizes.sum()} corners but {len(flat)} corner indices were given.")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    n_tri = sizes - 2
    face_of = np.repeat(np.arange(len(sizes)), n_tri)
    # i-th triangle of a face: (corner 0, corner i+1, corner i+2)
    i = np.arange(n_tri.sum()) - np.repeat(np.cumsum(n_tri) - n_tri, n_tri)
    first = starts[face_of]
    return np.stack([flat[first], flat[first + i + 1], flat[first + i + 2]], axis=1)


def closest_points_on_triangles(points: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Barycentric coordinates (..., 3) of the closest point to each point on triangle (a, b, c).

    All arguments broadcast to (..., 3). Voronoi-region walk of Ericson, *Real-Time Collision
    Detection* 5.1.5, vectorised: every region is computed, later assignments win, so the
    assignments run in reverse of Ericson's early-return order. Degenerate triangles fall
    into a vertex or edge region (divisions are guarded), never NaN.
    """
    ab, ac, ap = b - a, c - a, points - a
    bp, cp = points - b, points - c

    def dot(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.einsum("...i,...i->...", u, v)

    d1, d2 = dot(ab, ap), dot(ac, ap)
    d3, d4 = dot(ab, bp), dot(ac, bp)
    d5, d6 = dot(ab, cp), dot(ac, cp)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2

    def safe(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.clip(num / np.where(np.abs(den) > 1e-300, den, 1.0), 0.0, 1.0)

    total = va + vb + vc
    v, w = safe(vb, total), safe(vc, total)
    bary = np.stack([1.0 - v - w, v, w], axis=-1)

    def put(mask: np.ndarray, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> None:
        bary[mask] = np.stack(np.broadcast_arrays(u, v, w), axis=-1)[mask]

    zero, one = np.zeros_like(d1), np.ones_like(d1)
    t_bc = safe(d4 - d3, (d4 - d3) + (d5 - d6))
    put((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0), zero, 1 - t_bc, t_bc)
    t_ac = safe(d2, d2 - d6)
    put((vb <= 0) & (d2 >= 0) & (d6 <= 0), 1 - t_ac, zero, t_ac)
    put((d6 >= 0) & (d5 <= d6), zero, zero, one)
    t_ab = safe(d1, d1 - d3)
    put((vc <= 0) & (d1 >= 0) & (d3 <= 0), 1 - t_ab, t_ab, zero)
    put((d3 >= 0) & (d4 <= d3), zero, one, zero)
    put((d1 <= 0) & (d2 <= 0), one, zero, zero)
    return bary


def falloff_weights(distance: np.ndarray, max_distance: float, falloff: float,
                    mask: np.ndarray | None = None) -> np.ndarray:
    """1 up to max_distance, smoothstep down to 0 at max_distance + falloff, times mask."""
    d = np.asarray(distance, dtype=np.float64)
    if falloff > 0:
        x = np.clip((d - max_distance) / falloff, 0.0, 1.0)
        weights = 1.0 - x * x * (3.0 - 2.0 * x)
    else:
        weights = (d <= max_distance).astype(np.float64)
    return weights if mask is None else weights * np.clip(mask, 0.0, 1.0)


def _blocks(points: np.ndarray, cell: float) -> list[np.ndarray]:
    """Indices of the points grouped by grid cell (big cells split), so each group is compact."""
    cells = np.floor((points - points.min(axis=0)) / cell).astype(np.int64)
    _, inverse = np.unique(cells, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)  # numpy 2.0/2.1 returned a 2D inverse for axis=0
    order = np.argsort(inverse, kind="stable")
    groups = np.split(order, np.cumsum(np.bincount(inverse))[:-1])
    return [part for g in groups for part in np.array_split(g, -(-len(g) // _BLOCK))]


def _norm(v: np.ndarray) -> np.ndarray:
    return np.sqrt(np.einsum("...i,...i->...", v, v))


@dataclass
class _Source:
    """The source surface prepared for queries: used vertices, triangle balls, one triangle per vertex."""

    vertices: np.ndarray
    triangles: np.ndarray
    used: np.ndarray  # vertices some triangle uses (loose vertices cannot be bound to)
    centre: np.ndarray  # (F, 3) triangle centroids
    radius: np.ndarray  # (F,) largest centroid-corner distance: the triangle lies in that ball
    vertex_triangle: np.ndarray  # (Vs,) one triangle using each vertex (-1 for loose ones)

    @classmethod
    def of(cls, vertices: np.ndarray, triangles: np.ndarray) -> _Source:
        corners = vertices[triangles]
        centre = corners.mean(axis=1)
        radius = _norm(corners - centre[:, None]).max(axis=1)
        vertex_triangle = np.full(len(vertices), -1, dtype=np.int64)
        vertex_triangle[triangles.reshape(-1)] = np.repeat(np.arange(len(triangles)), 3)
        return cls(vertices, triangles, np.unique(triangles), centre, radius, vertex_triangle)


def _sq_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) squared distances by the matrix-product expansion. Both sets are
    relative to the block's centre, so magnitudes are centimetres and the cancellation error
    is ~1e-19 m^2: callers compare with a slack and recompute the distances they keep."""
    return np.maximum((a * a).sum(axis=1)[:, None] - 2.0 * (a @ b.T) + (b * b).sum(axis=1)[None, :], 0.0)


def _bind_block(q: np.ndarray, src: _Source, reach: float, slack: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact closest triangle for a compact group of target points (within ``reach``; see module doc)."""
    mid = q.mean(axis=0)
    qc = q - mid
    rho = float(_norm(qc).max())
    # Nearest used vertex: within rho + d(mid) of every query, so within 2 rho + d(mid) of mid.
    rel = src.vertices[src.used] - mid
    to_mid = _norm(rel)
    inside = to_mid <= 2 * rho + to_mid.min() + slack
    near = src.used[inside]
    nearest = near[_sq_distances(qc, rel[inside]).argmin(axis=1)]
    upper = _norm(q - src.vertices[nearest])
    # Fallback answer: the nearest vertex itself, a corner of one of its triangles.
    tri = src.vertex_triangle[nearest]
    bary = (src.triangles[tri] == nearest[:, None]).astype(np.float64)
    dist = upper.copy()
    # Any triangle closer than min(upper, reach) has its ball within that distance: test only those.
    limit = np.minimum(upper, reach) + slack
    rel_c = src.centre - mid
    balls = np.flatnonzero(_norm(rel_c) - src.radius - rho <= limit.max())
    lower = np.sqrt(_sq_distances(qc, rel_c[balls])) - src.radius[balls]
    qi, bj = np.nonzero(lower <= limit[:, None])
    if len(qi) == 0:
        return tri, bary, dist
    ti = balls[bj]
    corners = src.vertices[src.triangles[ti]]
    pb = closest_points_on_triangles(q[qi], corners[:, 0], corners[:, 1], corners[:, 2])
    pd = _norm(np.einsum("pj,pjd->pd", pb, corners) - q[qi])
    order = np.lexsort((pd, qi))  # per query, closest pair first
    first = order[np.r_[True, qi[order][1:] != qi[order][:-1]]]
    better = first[pd[first] < dist[qi[first]]]
    rows = qi[better]
    tri[rows], bary[rows], dist[rows] = ti[better], pb[better], pd[better]
    return tri, bary, dist


def closest_triangles(source_vertices: np.ndarray, source_triangles: np.ndarray, points: np.ndarray,
                      reach: float = np.inf) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(triangle index (P,), barycentric (P, 3), distance (P,)) of the closest source surface point.

    Exact for every point whose distance is within ``reach``; beyond it the answer may be a
    nearer-vertex fallback (a true surface point, so the distance is an upper bound).
    """
    src = _Source.of(source_vertices, source_triangles)
    tri = np.empty(len(points), dtype=np.int64)
    bary = np.empty((len(points), 3))
    dist = np.empty(len(points))
    edges = _norm(source_vertices[source_triangles] - source_vertices[np.roll(source_triangles, 1, axis=1)])
    extent = float(_norm(source_vertices.max(axis=0) - source_vertices.min(axis=0)))
    cell = _CELL_EDGES * max(float(np.median(edges)), 1e-6 * extent, 1e-300)
    slack = 1e-8 * max(extent, 1e-300)  # generous against rounding: it only adds pairs to test
    for rows in _blocks(points, cell):
        tri[rows], bary[rows], dist[rows] = _bind_block(points[rows], src, reach, slack)
    return tri, bary, dist


def _check_inputs(source_vertices, source_triangles, target_vertices, max_distance, falloff, mask):
    src = np.asarray(source_vertices, dtype=np.float64)
    tris = np.asarray(source_triangles)
    tgt = np.asarray(target_vertices, dtype=np.float64)
    for arr, what in ((src, "source"), (tgt, "target")):
        if arr.ndim != 2 or arr.shape[1] != 3 or len(arr) == 0:
            raise RetargetError(f"The {what} vertices must be a non-empty (N, 3) array, not shape {arr.shape}.")
        if not np.isfinite(arr).all():
            raise RetargetError(f"The {what} vertices contain non-finite coordinates.")
    if tris.ndim != 2 or tris.shape[1] != 3 or len(tris) == 0 or not np.issubdtype(tris.dtype, np.integer):
        raise RetargetError(f"The source triangles must be a non-empty (F, 3) integer array, not {tris.shape}.")
    if tris.min() < 0 or tris.max() >= len(src):
        raise RetargetError("The source triangles refer to vertices the source mesh does not have.")
    if not (max_distance > 0 and falloff >= 0 and np.isfinite(max_distance + falloff)):
        raise RetargetError("The binding distance must be positive and the falloff zero or positive.")
    if mask is not None:
        mask = np.asarray(mask, dtype=np.float64).reshape(-1)
        if len(mask) != len(tgt):
            raise RetargetError(f"The mask has {len(mask)} values but the target has {len(tgt)} vertices.")
    return src, tris.astype(np.int64), tgt, mask


def bind(source_vertices: np.ndarray, source_triangles: np.ndarray, target_vertices: np.ndarray, *,
         max_distance: float, falloff: float, mask: np.ndarray | None = None) -> Binding:
    """Bind every target vertex to its closest point on the source triangles (same space, same units)."""
    src, tris, tgt, mask = _check_inputs(source_vertices, source_triangles, target_vertices,
                                         max_distance, falloff, mask)
    tri, bary, dist = closest_triangles(src, tris, tgt, reach=max_distance + falloff)
    considered = dist if mask is None else dist[mask > 0]
    share = float((considered <= max_distance).mean()) if len(considered) else 0.0
    if share < MIN_OVERLAP:
        raise RetargetError(f"The meshes do not overlap: only {100 * share:.1f} % of the target vertices lie "
                            f"within {max_distance:g} of the source surface (align the heads first).")
    bary = np.clip(bary, 0.0, None)
    return Binding(tris[tri], bary / bary.sum(axis=1, keepdims=True), dist,
                   falloff_weights(dist, max_distance, falloff, mask))
