"""The numpy retargeting core: similarity fit, surface binding and transfer, shape-key solve,
control mapping and jaw, on synthetic data with known answers and on the real FLAME and ICT heads."""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import pytest

from tests.helpers import boundary_loops, read_ply, shared_fixture
from wav2sem_blender.retarget import (
    ARKIT_TO_VISEMES,
    Binding,
    RetargetError,
    bind,
    closest_triangles,
    format_mapping,
    jaw_angles,
    jaw_open_from_offsets,
    map_controls,
    parse_mapping,
    similarity_from_landmarks,
    solve_weights,
    triangulate,
)
from wav2sem_blender.retarget.binding import closest_points_on_triangles

ICT_FACE = np.arange(9409)  # the ICT FaceKit's face region: vertices 0-9408 (its documented layout)


@lru_cache(maxsize=1)
def flame() -> tuple[np.ndarray, np.ndarray]:
    return read_ply(shared_fixture("flame", "FLAME_sample.ply"))


@lru_cache(maxsize=1)
def ict():
    data = np.load(shared_fixture("arkit_rig", "ict_facekit_arkit.npz"))
    return {k: data[k] for k in data.files}


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


# ---------------------------------------------------------------- similarity


def test_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(1)
    rotation, scale, shift = random_rotation(rng), 1.7, rng.normal(size=3) * 5
    source = rng.normal(size=(6, 3))
    target = scale * source @ rotation.T + shift
    sim = similarity_from_landmarks(source, target)
    assert abs(sim.scale - scale) < 1e-9
    assert np.abs(sim.rotation - rotation).max() < 1e-9
    assert np.abs(sim.translation - shift).max() < 1e-9
    assert sim.rms < 1e-9
    assert np.abs(sim.apply(source) - target).max() < 1e-9
    assert np.allclose(sim.apply_vectors(np.eye(3)), scale * rotation.T)  # no translation for displacements
    assert np.abs(sim.inverse().apply(target) - source).max() < 1e-9
    assert np.allclose(sim.matrix()[:3, :3], scale * rotation) and np.allclose(sim.matrix()[:3, 3], shift)


def test_similarity_never_reflects_and_reports_its_residual():
    rng = np.random.default_rng(2)
    source = rng.normal(size=(8, 3))
    mirrored = source * [-1, 1, 1]
    sim = similarity_from_landmarks(source, mirrored)
    assert np.linalg.det(sim.rotation) == pytest.approx(1.0)
    assert sim.rms > 0.1  # a mirror is not a similarity: the residual says so


def test_similarity_rejects_degenerate_landmarks():
    line = np.outer(np.arange(5.0), [1.0, 2.0, 3.0])
    with pytest.raises(RetargetError, match="degenerate"):
        similarity_from_landmarks(line, line + 1)
    with pytest.raises(RetargetError):
        similarity_from_landmarks(np.zeros((2, 3)), np.ones((2, 3)))
    with pytest.raises(RetargetError):
        similarity_from_landmarks(np.eye(3), np.eye(4)[:, :3])


# ---------------------------------------------------------------- binding

def jaw_field(points: np.ndarray, mouth_y: float) -> np.ndarray:
    """A smooth jaw-like motion: 0.15 rad rotation about a lateral axis behind the mouth,
    faded in smoothly over 4 cm below the mouth line (metres, y up, face +z)."""
    pivot = np.array([0.0, mouth_y + 0.01, -0.02])
    angle = 0.15
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    rel = points - pivot
    x = np.clip((mouth_y - points[:, 1]) / 0.04, 0.0, 1.0)
    return (rel @ rot.T - rel) * (x * x * (3 - 2 * x))[:, None]


def remeshed_copy(verts: np.ndarray, tris: np.ndarray, rng: np.random.Generator, n: int = 4000):
    """Points of the same surface that are not its vertices: random barycentric points on
    random triangles plus edge midpoints, lifted 0.2 mm off the surface along the normal."""
    pick = rng.integers(0, len(tris), n)
    bary = rng.dirichlet([1.0, 1.0, 1.0], n)
    bary[: n // 8] = [0.5, 0.5, 0.0]  # midpoints of an edge
    corners = verts[tris[pick]]
    normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    on_surface = np.einsum("pj,pjd->pd", bary, corners)
    return on_surface + 2e-4 * normal, on_surface


def brute_force_distance(points, verts, tris):
    corners = verts[tris]
    out = np.empty(len(points))
    for i, p in enumerate(points):
        bary = closest_points_on_triangles(p, corners[:, 0], corners[:, 1], corners[:, 2])
        out[i] = np.linalg.norm(np.einsum("fj,fjd->fd", bary, corners) - p, axis=1).min()
    return out


def test_point_triangle_closest_points_against_dense_sampling():
    rng = np.random.default_rng(3)
    a, b, c = rng.normal(size=(3, 3))
    points = rng.normal(size=(200, 3)) * 2  # all seven Voronoi regions get hit
    bary = closest_points_on_triangles(points, a, b, c)
    assert (bary >= 0).all() and np.allclose(bary.sum(axis=1), 1)
    dist = np.linalg.norm(bary @ np.stack([a, b, c]) - points, axis=1)
    s = np.linspace(0, 1, 2000)[:, None]
    edges = np.concatenate([a + s * (b - a), b + s * (c - b), c + s * (a - c)])  # vertex and edge regions
    samples = np.concatenate([rng.dirichlet([1, 1, 1], 50_000) @ np.stack([a, b, c]), edges])
    sampled = np.array([np.linalg.norm(samples - p, axis=1).min() for p in points])
    assert (dist <= sampled + 1e-12).all()  # never worse than any point of the triangle
    assert (sampled - dist).max() < 1e-3  # and the dense sample comes close to it (measured 3e-6)
    assert (np.bincount((bary > 0).sum(axis=1), minlength=4)[1:] > 0).all()  # vertex, edge and face regions
    degenerate = closest_points_on_triangles(points, a, a, b)  # zero area: still finite, still valid
    assert np.isfinite(degenerate).all() and np.allclose(degenerate.sum(axis=1), 1)


def test_binding_transfers_a_smooth_field_onto_a_remeshed_flame():
    verts, tris = flame()
    rng = np.random.default_rng(4)
    copy, on_surface = remeshed_copy(verts, tris, rng)
    binding = bind(verts, tris, copy, max_distance=0.003, falloff=0.002)
    # Exact: the bound distance is the brute-force minimum over all 9976 triangles.
    sample = rng.choice(len(copy), 150, replace=False)
    assert np.abs(binding.distance[sample] - brute_force_distance(copy[sample], verts, tris)).max() < 1e-12
    # Lifted 0.2 mm, so never further; closer only where another sheet is near (lips, eyelids).
    assert (binding.distance <= 2e-4 + 1e-12).all()
    assert (np.abs(binding.distance - 2e-4) < 1e-5).mean() > 0.9
    assert (binding.weights == 1).all()
    assert np.allclose(binding.barycentric.sum(axis=1), 1) and (binding.barycentric >= 0).all()

    mouth_y = -0.05  # FLAME sample: mouth corners at y ~ -0.0496 m
    moved = binding.transfer(jaw_field(verts, mouth_y))
    expected = jaw_field(on_surface, mouth_y)
    err = np.linalg.norm(moved - expected, axis=1)
    front = on_surface[:, 2] > 0
    # Measured (field peaking at 25 mm): max 0.23 mm on the face, 0.78 mm over the head, at
    # the back of the neck where FLAME's triangles are 1.8 cm across and the field's fade
    # bends within them; mean 0.006 mm. Linear interpolation over the source triangles, i.e.
    # the transfer is as exact as the source mesh allows.
    assert np.linalg.norm(expected, axis=1).max() > 0.02
    assert err[front].max() < 5e-4 and err.max() < 1.5e-3 and err.mean() < 2e-5, (err.max(), err.mean())

    frames = np.stack([jaw_field(verts, mouth_y) * s for s in (0.0, 0.5, 1.0)])
    many = binding.transfer(frames)
    assert many.dtype == np.float32 and many.shape == (3, len(copy), 3)
    assert np.abs(many[2] - moved).max() < 1e-6 and np.abs(many[0]).max() == 0


def test_binding_weights_fall_off_and_far_vertices_get_nothing():
    verts, tris = flame()
    rng = np.random.default_rng(5)
    copy, _ = remeshed_copy(verts, tris, rng, n=2000)
    outward = copy - verts.mean(axis=0)
    outward /= np.linalg.norm(outward, axis=1, keepdims=True)
    lift = np.zeros(len(copy))
    lift[:300] = np.linspace(0.0, 0.012, 300)  # through the falloff band and beyond
    target = copy + outward * lift[:, None]
    target[300:400] += [0.0, 0.0, 0.3]  # 30 cm in front of the face
    mask = np.ones(len(copy))
    mask[400:500] = 0.25
    binding = bind(verts, tris, target, max_distance=0.003, falloff=0.004, mask=mask)
    d, w = binding.distance, binding.weights
    unmasked = mask == 1
    assert (w[unmasked & (d <= 0.003)] == 1).all()
    band = (d > 0.003) & (d < 0.007)
    assert ((w[band] > 0) & (w[band] < 1)).all()
    assert (w[d >= 0.007] == 0).all() and (w[300:400] == 0).all()
    order = np.argsort(d[:300])
    assert (np.diff(w[:300][order]) <= 1e-12).all()  # monotone in distance
    assert np.allclose(w[400:500], 0.25)
    far = binding.transfer(np.ones((len(verts), 3)))
    assert (far[300:400] == 0).all() and np.allclose(far[500:], 1.0)


def test_binding_rejects_misaligned_heads_and_bad_input():
    verts, tris = flame()
    copy, _ = remeshed_copy(verts, tris, np.random.default_rng(6), n=1000)
    with pytest.raises(RetargetError, match="do not overlap"):
        bind(verts, tris, copy + [1.0, 0.0, 0.0], max_distance=0.005, falloff=0.005)
    with pytest.raises(RetargetError):
        bind(verts, tris + len(verts), copy, max_distance=0.005, falloff=0.005)
    with pytest.raises(RetargetError):
        bind(verts, tris, copy, max_distance=0.0, falloff=0.005)
    with pytest.raises(RetargetError):
        bind(verts, tris, copy, max_distance=0.005, falloff=0.0, mask=np.ones(3))


def test_binding_round_trips_through_arrays(tmp_path):
    verts, tris = flame()
    copy, _ = remeshed_copy(verts, tris, np.random.default_rng(7), n=500)
    binding = bind(verts, tris, copy, max_distance=0.003, falloff=0.002)
    np.savez(tmp_path / "b.npz", **binding.to_arrays())
    loaded = Binding.from_arrays(np.load(tmp_path / "b.npz"))
    offsets = np.random.default_rng(8).normal(size=verts.shape)
    assert np.array_equal(loaded.transfer(offsets), binding.transfer(offsets))
    with pytest.raises(RetargetError):
        Binding.from_arrays({"triangles": binding.triangles})
    with pytest.raises(RetargetError):
        binding.transfer(offsets[:10])


def test_triangulate_fans_quads_and_ngons():
    sizes = np.array([3, 4, 5])
    flat = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
    tris = triangulate(sizes, flat)
    assert tris.tolist() == [[0, 1, 2], [3, 4, 5], [3, 5, 6], [7, 8, 9], [7, 9, 10], [7, 10, 11]]
    with pytest.raises(RetargetError):
        triangulate(np.array([3, 2]), np.arange(5))
    with pytest.raises(RetargetError):
        triangulate(np.array([4]), np.arange(3))


def test_closest_triangles_matches_brute_force_off_the_surface():
    verts, tris = flame()
    rng = np.random.default_rng(9)
    points = verts[rng.integers(0, len(verts), 200)] + rng.normal(scale=0.006, size=(200, 3))
    _, _, dist = closest_triangles(verts, tris, points)
    assert np.abs(dist - brute_force_distance(points, verts, tris)).max() < 1e-12


# ---------------------------------------------------------------- the real ARKit head

def flame_landmarks(verts, tris):
    """Mouth corners (extremes across the face of FLAME's mouth opening, the boundary loop
    furthest forward), nose tip (the most forward vertex), chin (most forward midline vertex
    2.5-6 cm below the mouth), top of the head (highest midline vertex)."""
    mouth = max((np.array(sorted(loop)) for loop in boundary_loops(tris)), key=lambda lp: verts[lp, 2].mean())
    return geometric_landmarks(verts, verts[mouth[verts[mouth, 0].argmax()]],
                               verts[mouth[verts[mouth, 0].argmin()]], unit=1.0)


def ict_landmarks(rig):
    """The same landmarks on ICT (centimetres): its closed mouth has no opening, so the
    corners are the kit's own 68-point landmarks 48/54; the rest as on FLAME."""
    marks = json.loads(str(rig["vertex_ranges"]))["idx_to_landmark_verts"]
    verts = rig["neutral"].astype(np.float64)
    return geometric_landmarks(verts, verts[marks[54]], verts[marks[48]], unit=100.0)


def geometric_landmarks(verts, corner_left, corner_right, unit):
    nose = verts[verts[:, 2].argmax()]
    midline = np.abs(verts[:, 0]) < 0.002 * unit
    mouth_y = 0.5 * (corner_left[1] + corner_right[1])
    band = midline & (verts[:, 1] < mouth_y - 0.025 * unit) & (verts[:, 1] > mouth_y - 0.06 * unit)
    chin = verts[band][verts[band, 2].argmax()]
    top = verts[midline][verts[midline, 1].argmax()]
    return np.array([corner_left, corner_right, nose, chin, top])


def test_ict_head_binds_to_flame_after_landmark_alignment():
    verts, tris = flame()
    rig = ict()
    neutral = rig["neutral"].astype(np.float64)
    sim = similarity_from_landmarks(ict_landmarks(rig), flame_landmarks(verts, tris))
    assert 0.009 < sim.scale < 0.012  # centimetres -> metres, two adult heads
    # Refine on the face (trimmed ICP: fit every 3rd face vertex to its closest FLAME point,
    # drop the worst 10 %), 3 rounds with the same similarity fit.
    face = neutral[ICT_FACE[::3]]
    for _ in range(3):
        tri, bary, dist = closest_triangles(verts, tris, sim.apply(face))
        keep = dist < np.percentile(dist, 90)
        sim = similarity_from_landmarks(face[keep], np.einsum("pj,pjd->pd", bary, verts[tris[tri]])[keep])
    binding = bind(verts, tris, sim.apply(neutral), max_distance=0.005, falloff=0.005)
    d = binding.distance[ICT_FACE]
    # Measured: median 2.0 mm, 78 % within 4 mm (two different people's faces).
    assert np.median(d) < 0.0025, np.median(d)
    assert (d < 0.004).mean() > 0.75, (d < 0.004).mean()
    assert (binding.weights[ICT_FACE] > 0).mean() > 0.9
    # A FLAME jaw motion carried to ICT drops its jaw and leaves its forehead alone.
    moved = binding.transfer(jaw_field(verts, -0.05))
    face = neutral[ICT_FACE]
    jaw = ICT_FACE[(face[:, 1] < -6.5) & (face[:, 2] > 8.0) & (binding.weights[ICT_FACE] == 1)]
    brow = ICT_FACE[face[:, 1] > 6.0]
    assert len(jaw) > 100 and np.median(moved[jaw, 1]) < -0.005, np.median(moved[jaw, 1])
    assert np.abs(moved[brow]).max() == 0


# ---------------------------------------------------------------- solve

def smooth_keys(n_keys: int, n_verts: int, rng: np.random.Generator) -> np.ndarray:
    """Random smooth shape keys: Gaussian bumps on a unit sphere, each pushing its own way."""
    points = rng.normal(size=(n_verts, 3))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    centres = rng.normal(size=(n_keys, 3))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    bump = np.exp(-((points[None] - centres[:, None]) ** 2).sum(-1) / (2 * 0.3**2))
    return (bump[..., None] * rng.normal(size=(n_keys, 1, 3)) * 0.01).astype(np.float32)


def true_weights(frames: int, n_keys: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth in time, within [0, 1], with stretches exactly at 0 and at 1 (clipped sines)."""
    t = np.arange(frames)[:, None] / 30.0
    freq, phase = rng.uniform(0.2, 1.5, n_keys), rng.uniform(0, 1, n_keys)
    return np.clip(0.5 + 0.8 * np.sin(2 * np.pi * (freq * t + phase)), 0.0, 1.0)


def offsets_of(weights, basis, noise, rng):
    flat = weights @ basis.reshape(len(basis), -1)
    flat = flat + rng.normal(scale=noise, size=flat.shape)
    return flat.reshape(len(weights), -1, 3).astype(np.float32)


def test_solve_recovers_known_weights_and_reports_the_residual():
    rng = np.random.default_rng(10)
    basis, truth = smooth_keys(52, 3000, rng), true_weights(300, 52, rng)
    assert (truth == 0).any() and (truth == 1).any()
    noise = 2e-5  # 0.2 % of a key's peak (1 cm)
    offsets = offsets_of(truth, basis, noise, rng)
    result = solve_weights(basis, offsets, smooth=0.0)
    err = np.abs(result.weights - truth)
    # Measured: max 0.005, mean 0.0002 (the noise leaking through the keys' overlaps).
    assert err.max() < 0.02 and err.mean() < 0.002, (err.max(), err.mean())
    assert result.weights.dtype == np.float32 and result.weights.shape == truth.shape
    assert (result.weights >= 0).all() and (result.weights <= 1).all()
    residual = offsets - np.einsum("tk,kvd->tvd", result.weights.astype(np.float64), basis)
    direct = np.sqrt((residual**2).sum(-1).mean(-1))
    assert result.error.shape == (300,)
    # The error comes from the float32 projections (no second pass over the offsets): its
    # floor is ~1e-3 of the offsets' RMS. Measured here: off by at most 3e-6 = 9 % of this
    # tiny residual, 0.02 % of the motion's RMS.
    motion = np.sqrt((offsets.astype(np.float64) ** 2).sum(-1).mean())
    assert np.abs(result.error - direct).max() < 2e-3 * motion
    assert direct.mean() == pytest.approx(noise * np.sqrt(3), rel=0.05)  # the noise, nothing else
    assert result.rms == pytest.approx(np.sqrt((direct**2).mean()), rel=0.05)
    assert result.max == pytest.approx(direct.max(), rel=0.1)


def test_solve_on_real_ict_keys_without_noise():
    rig = ict()
    rng = np.random.default_rng(11)
    keys = [i for i, n in enumerate(rig["names"]) if n != "mouthClose"]  # 52 keys
    moving = np.flatnonzero(np.abs(rig["deltas"][keys].astype(np.float32)).max(axis=(0, 2)) > 1e-3)
    basis = rig["deltas"][keys][:, rng.choice(moving, 5000, replace=False)].astype(np.float32)
    truth = true_weights(120, len(keys), rng)
    result = solve_weights(basis, offsets_of(truth, basis, 0.0, rng), smooth=0.0)
    # Measured: max error < 1e-4 on a rig whose Gram matrix has condition number 7e4; the
    # reported rms, 2.5e-4 cm for keys peaking at 3.5 cm, is the float32 floor of the error.
    assert np.abs(result.weights - truth).max() < 0.01
    assert result.rms < 1e-3 * np.abs(basis).max()


def test_smoothing_reduces_jitter_from_noise():
    rng = np.random.default_rng(12)
    basis = smooth_keys(52, 3000, rng)
    t = np.arange(300)[:, None] / 30.0
    truth = 0.5 + 0.35 * np.sin(2 * np.pi * (rng.uniform(0.1, 0.3, 52) * t + rng.uniform(0, 1, 52)))
    offsets = offsets_of(truth, basis, 2e-4, rng)  # 2 % of a key's peak: visible jitter
    raw = solve_weights(basis, offsets, smooth=0.0).weights
    smoothed = solve_weights(basis, offsets, smooth=0.1).weights

    def jitter(w):  # frame-to-frame roughness; the truth's is 0.0004
        return np.abs(np.diff(w, 2, axis=0)).mean()

    # Measured: jitter 0.0086 -> 0.0020; mean error 0.0034 -> 0.0026.
    assert jitter(smoothed) < 0.4 * jitter(raw), (jitter(raw), jitter(smoothed))
    assert np.abs(smoothed - truth).mean() < np.abs(raw - truth).mean()


def test_solve_respects_bounds_and_vertex_weights():
    rng = np.random.default_rng(13)
    basis = smooth_keys(8, 1000, rng)
    truth = true_weights(60, 8, rng) * 1.6 - 0.3  # beyond [0, 1] both ways
    offsets = offsets_of(truth, basis, 0.0, rng)
    upper = np.array([1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5])
    result = solve_weights(basis, offsets, lower=0.0, upper=upper)
    assert (result.weights >= 0).all() and (result.weights <= upper + 1e-7).all()
    assert (result.weights == 0).any() and (result.weights[:, 4:] == 0.5).any()  # bounds active
    mask = np.ones(1000)
    mask[:500] = 0.0
    masked = solve_weights(basis, offsets, vertex_weights=mask, smooth=0.0, lower=-1.0, upper=2.0)
    # Fitting only the second half of the vertices still pins down keys that move them.
    moves_second_half = np.abs(basis[:, 500:]).max(axis=(1, 2)) > 0.2 * np.abs(basis).max()
    assert np.abs(masked.weights - truth)[:, moves_second_half].max() < 0.01


@pytest.mark.parametrize("frames", [1, 2, 50])
def test_solve_meets_the_optimality_conditions(frames, monkeypatch):
    """KKT of the bounded, smoothed least squares, checked from scratch in float64: the
    gradient vanishes on free weights and points outwards at active bounds. Small FISTA
    blocks (16 frames) so the block boundaries of the smoothing are exercised too."""
    import wav2sem_blender.retarget.solve as solve_module

    monkeypatch.setattr(solve_module, "_ITERATION_BLOCK", 16 * 5)
    rng = np.random.default_rng(17)
    basis = rng.normal(size=(5, 40, 3))
    basis[4] = basis[3] + 0.05 * rng.normal(size=(40, 3))  # nearly dependent keys: ill-conditioned
    offsets = rng.normal(size=(frames, 40, 3)) * 1.5
    smooth = 0.3
    result = solve_weights(basis, offsets, smooth=smooth, lower=-0.5, upper=1.0, iterations=20_000, tol=1e-12)
    w = result.weights.astype(np.float64)
    a = basis.reshape(5, -1).T
    s2 = (a * a).sum() / 5
    grad = (w @ a.T - offsets.reshape(frames, -1)) @ a
    if frames > 1:
        d = np.diff(w, axis=0)
        grad[1:] += smooth * s2 * d
        grad[:-1] -= smooth * s2 * d
    scale = np.abs(a.T @ offsets.reshape(frames, -1).T).max()
    free = (w > -0.5 + 1e-6) & (w < 1.0 - 1e-6)
    assert np.abs(grad[free]).max() < 1e-5 * scale  # float32 weights limit this
    assert (grad[w <= -0.5 + 1e-6] >= -1e-5 * scale).all() and (grad[w >= 1.0 - 1e-6] <= 1e-5 * scale).all()
    assert (~free).any() and free.any()


def test_solve_rejects_bad_input():
    rng = np.random.default_rng(14)
    basis = smooth_keys(4, 100, rng)
    offsets = offsets_of(true_weights(10, 4, rng), basis, 0.0, rng)
    with pytest.raises(RetargetError):
        solve_weights(basis[:0], offsets)
    with pytest.raises(RetargetError):
        solve_weights(basis, offsets[:, :50])
    dead = basis.copy()
    dead[2] = 0
    with pytest.raises(RetargetError, match="Shape key 2"):
        solve_weights(dead, offsets)
    with pytest.raises(RetargetError):
        solve_weights(basis, offsets, lower=1.0, upper=0.0)
    bad = offsets.copy()
    bad[3, 4, 1] = np.nan
    with pytest.raises(RetargetError):
        solve_weights(basis, bad)


# ---------------------------------------------------------------- mapping

def test_mapping_text_round_trips():
    assert parse_mapping(format_mapping(ARKIT_TO_VISEMES)) == ARKIT_TO_VISEMES
    text = """
    # visemes for my character
    jawOpen = aa * 0.8, oh * 0.3   # open
    mouthClose = Lips Closed

    mouthPucker = ou*1.2, aa * -0.25
    jawOpen = Jaw Drop
    """
    mapping = parse_mapping(text)
    assert mapping == {
        "jawOpen": [("aa", 0.8), ("oh", 0.3), ("Jaw Drop", 1.0)],
        "mouthClose": [("Lips Closed", 1.0)],
        "mouthPucker": [("ou", 1.2), ("aa", -0.25)],
    }
    assert parse_mapping(format_mapping(mapping)) == mapping


@pytest.mark.parametrize("line", ["jawOpen aa", "= aa", "jawOpen = aa * x", "jawOpen = aa, , oh", "jawOpen = "])
def test_malformed_mapping_line_is_named(line):
    with pytest.raises(RetargetError, match="Line 3"):
        parse_mapping(f"# header\nmouthClose = mm\n{line}\n")


ARKIT = [
    "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthSmile_L", "mouthSmile_R",
    "mouthStretch_L", "mouthStretch_R", "mouthPress_L", "mouthPress_R", "mouthRollLower", "mouthRollUpper",
]


def test_identity_mapping_on_a_partial_rig():
    rng = np.random.default_rng(15)
    weights = rng.uniform(size=(20, len(ARKIT)))
    rig = ["Blink", "JawOpen", "mouthSmileLeft", "mouth_smile.R", "mouthPucker"]
    mapped = map_controls(weights, ARKIT, None, rig)
    assert mapped.names == ["JawOpen", "mouthSmileLeft", "mouth_smile.R", "mouthPucker"]
    assert mapped.unused == ["Blink"]
    assert set(mapped.missing) == set(ARKIT) - {"jawOpen", "mouthSmile_L", "mouthSmile_R", "mouthPucker"}
    columns = [ARKIT.index(n) for n in ("jawOpen", "mouthSmile_L", "mouthSmile_R", "mouthPucker")]
    assert np.allclose(mapped.weights, weights[:, columns], atol=1e-6)
    with pytest.raises(RetargetError, match="'Blink'"):
        map_controls(weights, ARKIT, None, ["Blink", "Frown"])


def test_mapping_sums_clips_and_applies_gains():
    t = np.linspace(0, 1, 11)
    weights = np.stack([t, t, 1 - t], axis=1)
    names = ["jawOpen", "mouthFunnel", "mouthClose"]
    mapping = parse_mapping("jawOpen = aa * 0.8\nmouthFunnel = aa * 0.5, oh\nmouthClose = M\nnoSuch = aa")
    mapped = map_controls(weights, names, mapping, ["oh", "aa", "ee", "M"], gains={"oh": 0.5, "ghost": 2.0})
    assert mapped.names == ["oh", "aa", "M"]  # target order
    assert mapped.unused == ["ee"] and mapped.missing == []
    assert set(mapped.unknown) == {"noSuch", "ghost"}
    assert np.allclose(mapped.weights[:, 1], np.minimum(1.3 * t, 1.0), atol=1e-6)  # summed, clipped
    assert np.allclose(mapped.weights[:, 0], 0.5 * t, atol=1e-6)
    assert np.allclose(mapped.weights[:, 2], 1 - t, atol=1e-6)


def test_mapping_smoothing_is_zero_phase_low_pass():
    fps, frames = 30.0, 301
    t = np.arange(frames)
    pulse = np.exp(-0.5 * ((t - 150) / 4.0) ** 2)
    noise = np.clip(0.5 + 0.2 * np.random.default_rng(16).normal(size=frames), 0, 1)
    weights = np.stack([pulse, noise], axis=1)
    mapped = map_controls(weights, ["a", "b"], None, ["a", "b"], smoothing={"a": 0.1, "b": 0.1}, fps=fps)
    out = mapped.weights.astype(np.float64)
    centroid = (out[:, 0] * t).sum() / out[:, 0].sum()
    assert centroid == pytest.approx(150.0, abs=1e-3) and out[:, 0].argmax() == 150  # no lag
    assert out[:, 0].max() < pulse.max()  # and it did smooth
    hf = lambda x: (np.diff(x) ** 2).sum()  # noqa: E731 - high-frequency energy
    assert hf(out[:, 1]) < 0.2 * hf(noise)
    assert (out >= 0).all() and (out <= 1).all()
    plain = map_controls(weights, ["a", "b"], None, ["a", "b"], smoothing={"b": 0.1}, fps=fps)
    assert np.allclose(plain.weights[:, 0], pulse, atol=1e-6)  # per-control: "a" untouched


# ---------------------------------------------------------------- jaw

def test_jaw_open_from_chin_motion():
    frames, verts = 5, 10
    offsets = np.zeros((frames, verts, 3))
    drop = np.array([0.0, 0.3, 0.6, 1.2, -0.2]) * 0.02  # metres; full_open = 2 cm
    offsets[:, 7, 1] = -drop
    up = np.array([0.0, 1.0, 0.0])
    assert np.allclose(jaw_open_from_offsets(offsets, 7, None, up, 0.02), [0, 0.3, 0.6, 1.0, 0.0])
    assert np.allclose(jaw_open_from_offsets(offsets, 7, None, up * 5, 0.02), [0, 0.3, 0.6, 1.0, 0.0])
    offsets[:, 3, 1] = -drop  # the upper lip moves with it: the whole head moved, the jaw did not
    assert np.allclose(jaw_open_from_offsets(offsets, 7, 3, up, 0.02), 0)
    tilted = np.array([0.0, np.cos(0.3), np.sin(0.3)])
    offsets = np.zeros((1, verts, 3))
    offsets[0, 7] = -0.01 * tilted
    assert jaw_open_from_offsets(offsets, 7, None, tilted, 0.02)[0] == pytest.approx(0.5)
    with pytest.raises(RetargetError):
        jaw_open_from_offsets(offsets, 99, None, up, 0.02)
    with pytest.raises(RetargetError):
        jaw_open_from_offsets(offsets, 7, None, np.zeros(3), 0.02)


def test_jaw_angles_scale_and_smooth():
    assert np.allclose(jaw_angles(np.array([0.0, 0.5, 1.0, 1.5]), 0.3), [0.0, 0.15, 0.3, 0.3])
    assert np.allclose(jaw_angles(np.array([0.0, 0.5, 1.0])), [0.0, 0.175, 0.35])
    spike = np.zeros(61)
    spike[30] = 1.0
    smoothed = jaw_angles(spike, 0.35, smooth=3.0)
    assert smoothed.argmax() == 30 and 0 < smoothed.max() < 0.35 and (smoothed >= 0).all()
    assert smoothed[27] == pytest.approx(smoothed[33])  # zero phase: symmetric about the spike
