"""Benchmark of the retargeting core: the shape-key solve and the surface binding (numpy only).

Run from the repository root::

    .venv/bin/python benchmarks/solve.py          # naive baseline at 18 000 frames extrapolated
    .venv/bin/python benchmarks/solve.py --full   # naive baseline run on every frame (~10 min)

Solve: 52 random smooth shape keys (Gaussian bumps on a sphere, 1 cm peak) on 5000 vertices,
true weights smooth in time with stretches at exactly 0 and 1, offsets = weights x keys plus
0.2 % noise, float32 as Blender hands them over. ``solve_weights`` (default smoothing, and
without) is timed against the naive way, a per-frame ``np.linalg.lstsq`` then clipping to
[0, 1]; both are scored against the true weights. Bind: the ICT FaceKit head (26 719 vertices)
aligned onto the FLAME sample (5023 vertices, 9976 triangles), when the shared fixtures exist.
BLAS runs on one thread, so the figures are one core's. Both wall and CPU time are shown: on a
shared machine the wall time also counts waiting for the CPU. Output: a Markdown table.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one core; before numpy loads BLAS
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from wav2sem_blender.retarget import bind, closest_triangles, similarity_from_landmarks, solve_weights  # noqa: E402

N_VERTICES, K, FPS, NOISE = 5000, 52, 30.0, 2e-5
LENGTHS = (300, 18_000)
NAIVE_SAMPLE = 600  # frames of the naive baseline actually run at 18 000 without --full


def smooth_keys(rng: np.random.Generator) -> np.ndarray:
    points = rng.normal(size=(N_VERTICES, 3))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    centres = rng.normal(size=(K, 3))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    bump = np.exp(-((points[None] - centres[:, None]) ** 2).sum(-1) / (2 * 0.3**2))
    return (bump[..., None] * rng.normal(size=(K, 1, 3)) * 0.01).astype(np.float32)


def true_weights(frames: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(frames)[:, None] / FPS
    freq, phase = rng.uniform(0.2, 1.5, K), rng.uniform(0, 1, K)
    return np.clip(0.5 + 0.8 * np.sin(2 * np.pi * (freq * t + phase)), 0.0, 1.0)


def offsets_of(weights: np.ndarray, basis: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    flat = basis.reshape(K, -1)
    out = np.empty((len(weights), flat.shape[1]), dtype=np.float32)
    for t0 in range(0, len(weights), 1000):  # float64 temporaries a chunk at a time
        w = weights[t0:t0 + 1000]
        out[t0:t0 + 1000] = w @ flat + rng.normal(scale=NOISE, size=(len(w), flat.shape[1]))
    return out.reshape(len(weights), -1, 3)


def timed(fn, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def naive(basis: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    a = basis.reshape(K, -1).T
    return np.stack([np.clip(np.linalg.lstsq(a, b.reshape(-1), rcond=None)[0], 0.0, 1.0) for b in offsets])


def solve_rows(full: bool) -> list[str]:
    rng = np.random.default_rng(0)
    basis = smooth_keys(rng)
    rows = []
    for frames in LENGTHS:
        truth = true_weights(frames, rng)
        offsets = offsets_of(truth, basis, rng)
        sample = frames if full or frames <= NAIVE_SAMPLE else NAIVE_SAMPLE
        base, base_wall, base_cpu = timed(naive, basis, offsets[:sample])
        scale = frames / sample
        base_wall, base_cpu = base_wall * scale, base_cpu * scale
        base_err = np.abs(base - truth[:sample]).max()
        note = "" if sample == frames else f" (extrapolated from {sample} frames)"
        for smooth in (0.01, 0.1, 0.0):
            res, wall, cpu = timed(solve_weights, basis, offsets, smooth=smooth)
            err = np.abs(res.weights - truth).max()
            rows.append(f"| solve_weights smooth={smooth:g} | {frames} | {wall:.2f} | {cpu:.2f} | {res.iterations} "
                        f"| {err:.4f} | {base_wall:.1f} / {base_cpu:.1f}{note} | {base_cpu / cpu:.0f}x "
                        f"| {base_err:.4f} |")
            print(rows[-1], flush=True)
    return rows


def bind_row() -> str | None:
    flame_path = REPO.parent / "shared" / "fixtures" / "flame" / "FLAME_sample.ply"
    ict_path = REPO.parent / "shared" / "fixtures" / "arkit_rig" / "ict_facekit_arkit.npz"
    if not (flame_path.exists() and ict_path.exists()):
        return None
    from tests.helpers import read_ply
    from tests.test_retarget_core import ICT_FACE, flame_landmarks, ict_landmarks

    verts, tris = read_ply(flame_path)
    rig = dict(np.load(ict_path))
    neutral = rig["neutral"].astype(np.float64)
    sim = similarity_from_landmarks(ict_landmarks(rig), flame_landmarks(verts, tris))
    face = neutral[ICT_FACE[::3]]
    for _ in range(3):  # as in tests/test_retarget_core.py: trimmed ICP on the face
        tri, bary, dist = closest_triangles(verts, tris, sim.apply(face))
        keep = dist < np.percentile(dist, 90)
        sim = similarity_from_landmarks(face[keep], np.einsum("pj,pjd->pd", bary, verts[tris[tri]])[keep])
    target = sim.apply(neutral)
    binding, wall, cpu = timed(bind, verts, tris, target, max_distance=0.005, falloff=0.005)
    d = binding.distance[ICT_FACE]
    return (f"| bind ICT head onto FLAME | {len(target)} vertices | {wall:.2f} | {cpu:.2f} | - "
            f"| face median {1e3 * np.median(d):.1f} mm | - | - | - |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="run the naive baseline on all 18 000 frames")
    args = parser.parse_args()
    print(f"numpy {np.__version__}, Python {platform.python_version()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}\n")
    print("| case | frames | wall s | CPU s | iterations | max abs(w - truth) | naive lstsq+clip wall / CPU s "
          "| speed-up (CPU) | naive max abs(w - truth) |")
    print("|---|---|---|---|---|---|---|---|---|")
    solve_rows(args.full)
    row = bind_row()
    print(row if row else "| bind | skipped: the shared FLAME / ICT fixtures are absent | | | | | | | |")


if __name__ == "__main__":
    main()
