"""Shared test helpers (no pytest fixtures here: plain functions)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures"


def shared_fixture(*parts: str) -> Path:
    """Path under ../shared/fixtures; skip (or fail in CI, WAV2SEM_REQUIRE_SHARED=1) when absent."""
    path = FIXTURES.joinpath(*parts)
    if not path.exists():
        reason = f"shared fixture {path} is absent (a fresh clone has no ../shared); CI always has it"
        if os.environ.get("WAV2SEM_REQUIRE_SHARED") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def read_ply(path: Path) -> tuple:
    """(vertices (V, 3) float64, triangles (F, 3)) of a binary little-endian triangle PLY."""
    import numpy as np

    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").split("\n")
    counts = {line.split()[1]: int(line.split()[2]) for line in header if line.startswith("element")}
    n_v, n_f = counts["vertex"], counts["face"]
    vertices = np.frombuffer(data, "<f4", n_v * 3, end).reshape(-1, 3).astype(np.float64)
    faces = np.frombuffer(data, np.dtype([("n", "u1"), ("i", "<i4", (3,))]), n_f, end + n_v * 12)
    assert (faces["n"] == 3).all(), "triangles only"
    return vertices, faces["i"].astype(np.int64)


def boundary_loops(faces) -> list[set[int]]:
    """Vertex sets of the mesh's boundary loops (edges used by one face)."""
    from collections import Counter, defaultdict

    edges = Counter(tuple(sorted(e)) for f in faces for e in ((f[0], f[1]), (f[1], f[2]), (f[2], f[0])))
    adjacent = defaultdict(set)
    for (a, b), n in edges.items():
        if n == 1:
            adjacent[a].add(b)
            adjacent[b].add(a)
    loops, seen = [], set()
    for start in adjacent:
        if start in seen:
            continue
        loop, stack = set(), [start]
        while stack:
            v = stack.pop()
            if v not in loop:
                loop.add(v)
                stack.extend(adjacent[v] - loop)
        seen |= loop
        loops.append(loop)
    return loops


def write_head_blend(blend: Path) -> Path:
    """A .blend holding one 5023-vertex mesh 'Head' at 30 fps, saved by Blender in a subprocess."""
    import subprocess
    import sys

    code = (
        "import bpy\n"
        "bpy.ops.wm.read_factory_settings(use_empty=True)\n"
        "me = bpy.data.meshes.new('Head')\n"
        "me.from_pydata([(i * 1e-4, (i % 7) * 1e-3, 0) for i in range(5023)], [], [])\n"
        "ob = bpy.data.objects.new('Head', me)\n"
        "bpy.context.scene.collection.objects.link(ob)\n"
        "bpy.context.scene.render.fps = 30\n"
        f"bpy.ops.wm.save_as_mainfile(filepath={str(blend)!r})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return blend
