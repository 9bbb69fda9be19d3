"""Benchmark of the add-on's writers (compact, per-frame, point cache) in real Blender (bpy).

Run from the repository root, with the venv that has ``bpy``::

    .venv/bin/python benchmarks/writers.py          # 300 and 18 000 frames; 18 000 per-frame skipped
    .venv/bin/python benchmarks/writers.py --all    # also 18 000 per-frame (~1.1 GB .blend, minutes)

No server and no model: the motion is synthetic and speech-like (K=48 smooth spatial bases times
smooth temporal signals, peaking at 5 mm, metres units) on a generated 5023-vertex mesh, and the
writer functions are called directly with the arrays in memory. For each output mode and length it
measures the write (``time.perf_counter`` around the writer call only), the size of the uncompressed
.blend (and of the .pc2 sidecar for the point cache), and the steady-state evaluation time per frame
(``scene.frame_set`` + reading the evaluated vertex positions, averaged over 30 frames spread over
the animation). It also times the naive way, ``keyframe_insert`` per key per frame, against the bulk
compact write at 300 frames. Output: a Markdown table plus machine information. Everything it
writes goes to a temporary folder that is deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import bpy  # noqa: E402, I001 - must come before the add-on
import numpy as np  # noqa: E402

from tests.blender_env import make_head as make_mesh  # noqa: E402 - the tests' 5023-vertex head
from wav2sem_blender.compat import fcurves_of  # noqa: E402
from wav2sem_blender.writers.common import (  # noqa: E402
    add_fcurve,
    ensure_basis,
    new_shape_key,
    rest_positions,
)
from wav2sem_blender.key_paths import key_path  # noqa: E402
from wav2sem_blender.writers import compact, per_frame, point_cache  # noqa: E402
from wav2sem_blender.writers.base import Timing  # noqa: E402
from wav2sem_blender.writers.compact import basis_name  # noqa: E402
from wav2sem_contract.result import InferResult  # noqa: E402

N_VERTICES = 5023
K = 48
FPS = 30.0
FIRST = 1
TIMING = Timing(FPS, FIRST, FPS)


def compact_result(weights: np.ndarray, basis: np.ndarray, bias: np.ndarray) -> InferResult:
    arrays = {"weights": weights, "basis": basis, "bias": bias, "max_error": np.float32(0), "exact": np.bool_(True)}
    return InferResult("compact", FPS, arrays)


PEAK = 5e-3  # metres
EVAL_FRAMES = 30
LENGTHS = (300, 18_000)


def reset() -> bpy.types.Scene:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = int(FPS), 1.0
    return scene


def spatial_bases(rest: np.ndarray, seed: int = 1) -> np.ndarray:
    """(K, V, 3) smooth bases: Gaussian bumps (2-6 cm wide) around random vertices, random directions."""
    rng = np.random.default_rng(seed)
    centres = rest[rng.choice(len(rest), K, replace=False)]
    widths = rng.uniform(0.02, 0.06, K)
    dirs = rng.normal(size=(K, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    d2 = ((rest[None] - centres[:, None]) ** 2).sum(-1)  # (K, V)
    return (np.exp(-d2 / (2 * widths[:, None] ** 2))[..., None] * dirs[:, None]).astype(np.float32)


def temporal_signals(T: int, seed: int = 2) -> np.ndarray:
    """(T, K) smooth speech-like signals: 1-7 Hz sinusoids with a decaying spectrum over k."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)[:, None] / FPS
    w = np.zeros((T, K))
    for _ in range(3):
        f, phase = rng.uniform(1.0, 7.0, K), rng.uniform(0, 2 * np.pi, K)
        w += np.sin(2 * np.pi * f * t + phase)
    syllables = 0.6 + 0.4 * np.sin(2 * np.pi * 0.4 * t + rng.uniform(0, 2 * np.pi, K))  # slow envelope
    return (w * syllables * 0.92 ** np.arange(K)).astype(np.float32)


def motion(T: int, rest: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """weights (T,K), basis (K,V,3), bias (V,3) and the offsets they give exactly (T,V,3), peak PEAK."""
    basis = spatial_bases(rest)
    weights = temporal_signals(T)
    bias = (0.05 * basis[0] + 0.05 * basis[1]).astype(np.float32)
    offsets = (weights @ basis.reshape(K, -1)).reshape(T, -1, 3) + bias
    scale = PEAK / np.linalg.norm(offsets, axis=-1).max()
    weights *= scale
    bias *= scale
    offsets *= scale
    return weights, basis, bias, offsets


def eval_ms_per_frame(ob: bpy.types.Object, last: float, check=None) -> float:
    """Steady state: frame_set + evaluated vertex positions, averaged over EVAL_FRAMES frames."""
    scene = bpy.context.scene
    frames = np.unique(np.linspace(FIRST, int(last), EVAL_FRAMES).round().astype(int))
    co = np.empty(len(ob.data.vertices) * 3, dtype=np.float32)

    def read(f: int) -> None:
        scene.frame_set(f)
        dg = bpy.context.evaluated_depsgraph_get()
        ob.evaluated_get(dg).data.vertices.foreach_get("co", co)

    read(int(frames[-1]))  # warm-up
    read(int(frames[0]))
    t0 = time.perf_counter()
    for f in frames:
        read(int(f))
    ms = (time.perf_counter() - t0) * 1e3 / len(frames)
    if check is not None:  # sanity: the evaluated mesh is the motion written (outside the timing)
        for f in (frames[0], frames[len(frames) // 2], frames[-1]):
            read(int(f))
            err = np.abs(co.reshape(-1, 3) - check(int(f) - FIRST)).max()
            assert err < 1e-5, f"evaluated mesh differs from the motion by {err:.2e} m at frame {f}"
    return ms


def save_mb(path: Path) -> float:
    bpy.ops.wm.save_as_mainfile(filepath=str(path), compress=False)
    return path.stat().st_size / 1e6


def run_mode(mode: str, T: int, tmp: Path) -> dict:
    reset()
    ob = make_mesh()
    rest = rest_positions(ob).copy()
    weights, basis, bias, offsets = motion(T, rest)
    cache_mb = None
    t0 = time.perf_counter()
    if mode == "compact":
        info = compact.write(ob, compact_result(weights, basis, bias), TIMING)
    elif mode == "per-frame":
        info = per_frame.write(ob, InferResult("offsets", FPS, {"offsets": offsets}), TIMING)
    else:
        info = point_cache.write(ob, InferResult("offsets", FPS, {"offsets": offsets}), TIMING)
    write_s = time.perf_counter() - t0
    if mode == "point cache":
        cache_mb = Path(info.files[0]).stat().st_size / 1e6
    blend_mb = save_mb(tmp / f"{mode.replace(' ', '_')}_{T}.blend")
    eval_ms = eval_ms_per_frame(ob, info.last_frame, check=lambda i: rest + offsets[i])
    for p in [*tmp.iterdir(), *map(Path, info.files)]:  # keep the temporary folders small between runs
        p.unlink()
    return {"write_s": write_s, "blend_mb": blend_mb, "cache_mb": cache_mb, "eval_ms": eval_ms}


def naive_vs_bulk(T: int = 300) -> dict:
    """The naive compact write (shape keys, then ``keyframe_insert`` per key per frame) against ours."""
    reset()
    ob = make_mesh()
    rest = rest_positions(ob).copy()
    weights, basis, bias, _ = motion(T, rest)
    t0 = time.perf_counter()
    compact.write(ob, compact_result(weights, basis, bias), TIMING)
    out = {"bulk_s": time.perf_counter() - t0}

    reset()
    ob = make_mesh()
    scale = np.abs(weights).max(axis=0)
    t0 = time.perf_counter()
    ensure_basis(ob)
    new_shape_key(ob, "Bias", rest + bias).value = 1.0
    keys = []
    for k in range(K):
        kb = new_shape_key(ob, basis_name(k), rest + basis[k] * scale[k])
        kb.slider_min = -1.0
        keys.append(kb)
    t1 = time.perf_counter()
    for k, kb in enumerate(keys):
        for i in range(T):
            kb.value = float(weights[i, k] / scale[k])
            kb.keyframe_insert("value", frame=FIRST + i)
    t2 = time.perf_counter()
    out["shape_keys_s"], out["naive_keys_s"] = t1 - t0, t2 - t1
    out["naive_s"] = t2 - t0

    # The same keyframes in bulk on the same keys, into a fresh action: keyframing alone.
    key = ob.data.shape_keys
    key.animation_data.action = None
    frames = TIMING.frames(T)
    t0 = time.perf_counter()
    fcurves = fcurves_of(key, action_name="Bulk")
    for k, kb in enumerate(keys):
        add_fcurve(fcurves, key_path(kb.name), frames, weights[:, k] / scale[k])
    out["bulk_keys_s"] = time.perf_counter() - t0
    return out


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"CPU: {model}; {os.cpu_count()} threads; Python {platform.python_version()}; "
        f"bpy {bpy.app.version_string}; numpy {np.__version__}; {platform.system()} {platform.release()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="also run 18 000 frames per-frame (~1.1 GB)")
    args = parser.parse_args()

    print(machine())
    print(f"mesh: {N_VERTICES} vertices; motion: K={K} bases, peak {PEAK * 1e3:.0f} mm; {FPS:.0f} fps\n")
    rows = []
    with tempfile.TemporaryDirectory(prefix="w2s-bench-") as d:
        tmp = Path(d)
        for T in LENGTHS:
            for mode in ("compact", "per-frame", "point cache"):
                if mode == "per-frame" and T > 3000 and not args.all:
                    gb = T * N_VERTICES * 12 / 1e9
                    rows.append(f"| {mode} | {T} | skipped (≈ {gb:.1f} GB; --all runs it) | | | |")
                    continue
                print(f"  {mode}, {T} frames ...", flush=True)
                r = run_mode(mode, T, tmp)
                cache = f"{r['cache_mb']:.1f}" if r["cache_mb"] is not None else "-"
                rows.append(
                    f"| {mode} | {T} | {r['write_s']:.3f} | {r['blend_mb']:.1f} | {cache} | {r['eval_ms']:.2f} |"
                )
        print("  naive keyframe_insert, 300 frames ...", flush=True)
        nb = naive_vs_bulk(300)

    print()
    print("| mode | frames | write s | .blend MB | cache MB | eval ms/frame |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(
        f"\nBaseline, 300 frames x K={K} keys = {K * 300} keyframes: naive compact write (shape keys, then "
        f"keyframe_insert per key per frame) {nb['naive_s']:.3f} s vs bulk write_compact {nb['bulk_s']:.3f} s: "
        f"**{nb['naive_s'] / nb['bulk_s']:.0f}x**. Keyframing alone: keyframe_insert {nb['naive_keys_s']:.3f} s vs "
        f"add_fcurve (keyframe_points.add + foreach_set) {nb['bulk_keys_s']:.4f} s: "
        f"**{nb['naive_keys_s'] / nb['bulk_keys_s']:.0f}x** (creating the {K + 1} shape keys: "
        f"{nb['shape_keys_s']:.3f} s)."
    )
    print("Single runs; wall-clock times vary by about ±30 % from run to run.")


if __name__ == "__main__":
    main()
