"""Point cache ("mesh keyframes"): a .pc2 file next to the .blend plus a Mesh Cache modifier.

Exact at every frame and light in the .blend; the cost is a sidecar file of 12 bytes per
vertex per frame. The file is written atomically (temporary name, then rename) so a reader
never sees half a cache.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import bpy
import numpy as np

from wav2sem_contract.errors import Wav2SemError
from wav2sem_contract.result import InferResult

from .. import runtime
from . import PREFIX
from .base import Summary, Timing, WriterSpec
from .common import rest_positions, sidecar_blend
from .motion import as_compact, take_found_note

SPEC = WriterSpec("POINT_CACHE", "point-cache", "Point Cache",
                  "Mesh keyframes in a .pc2 file next to the .blend, with a Mesh Cache modifier", request="offsets")
MODIFIER = PREFIX + "Cache"


def write_pc2(path: Path, chunks: Iterable[np.ndarray], frames: int, vertices: int) -> None:
    """Positions, absolute and mesh-local, as consecutive (t, V, 3) chunks of ``frames`` in all -> PC2 file."""
    header = np.zeros(1, [("sig", "S12"), ("ver", "<i4"), ("n", "<i4"), ("start", "<f4"), ("rate", "<f4"), ("T", "<i4")])
    header[0] = (b"POINTCACHE2\0", 1, vertices, 0.0, 1.0, frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(header.tobytes())
            for chunk in chunks:
                fh.write(memoryview(np.ascontiguousarray(chunk, dtype="<f4")).cast("B"))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # no partial cache left behind (a full disk, an interrupt)
        raise


def positions(result: InferResult, rest: np.ndarray, chunk_bytes: int = 1 << 24) -> Iterator[np.ndarray]:
    """rest + the motion of an offsets or compact result, a few frames at a time: a 10-minute clip never
    holds a second (T, V, 3) copy (1 GB at 5023 vertices), nor a first one for a compact result."""
    step = max(1, chunk_bytes // (4 * rest.size))
    if result.kind == "offsets":
        offsets = result["offsets"]
        for t0 in range(0, len(offsets), step):
            yield rest + offsets[t0 : t0 + step]
        return
    weights, basis = result["weights"], result["basis"].reshape(len(result["basis"]), -1)
    start = (rest + result["bias"]).ravel()
    for t0 in range(0, len(weights), step):
        chunk = weights[t0 : t0 + step] @ basis
        chunk += start
        yield chunk.reshape(-1, *rest.shape)


def cache_path(ob: bpy.types.Object, fallback_dir: Path) -> tuple[Path, str]:
    """(absolute path, path to store): next to the .blend it belongs to (``//`` relative), else the cache folder."""
    name = f"{bpy.path.clean_name(ob.name)}_w2s.pc2"
    blend = sidecar_blend()
    if blend is not None:
        path = blend.parent / f"{blend.stem}_{name}"
        if not bpy.data.filepath:
            return path, str(path)
        # Relative to the open file; saving under another folder rebases it (relative_remap).
        try:
            return path, bpy.path.relpath(str(path))
        except ValueError:  # another drive (Windows): no relative path exists
            return path, str(path)
    path = Path(fallback_dir) / name
    return path, str(path)


# What can refuse the result, before anything in the scene changes: a controls result on a head whose
# rig cannot be computed. It stays compact: ``positions`` streams the vertex motion into the file.
prepare = as_compact


def clear(ob: bpy.types.Object) -> None:
    """Remove our Mesh Cache modifier (the .pc2 file stays: an undo may need it again)."""
    for mod in [m for m in ob.modifiers if m.name.startswith(PREFIX) and m.type == "MESH_CACHE"]:
        ob.modifiers.remove(mod)


def write(ob: bpy.types.Object, result: InferResult, timing: Timing) -> Summary:
    result = prepare(ob, result)
    n = len(result["offsets"] if result.kind == "offsets" else result["weights"])
    path, stored = cache_path(ob, runtime.cache_dir())
    rest = rest_positions(ob)
    try:
        write_pc2(path, positions(result, rest), n, len(rest))
    except OSError as exc:
        raise Wav2SemError("cache_write", f"The point cache '{path}' could not be written ({exc.strerror or exc}).",
                           "Save the .blend in a folder you can write to, or free some disk space.") from None
    mod = ob.modifiers.get(MODIFIER)
    if mod is None or mod.type != "MESH_CACHE":
        mod = ob.modifiers.new(MODIFIER, "MESH_CACHE")
    mod.cache_format = "PC2"
    mod.filepath = stored
    mod.interpolation = "LINEAR"
    mod.time_mode = "FRAME"
    # Measured mapping in FRAME mode: sample = scene_frame * frame_scale - frame_start.
    mod.frame_scale = timing.model_fps / timing.fps
    mod.frame_start = timing.first_frame * mod.frame_scale
    return Summary(n, timing.last_frame(n), f"cache {path.name}", take_found_note(ob), files=[str(path)])
