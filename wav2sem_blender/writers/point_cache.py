"""Point cache ("mesh keyframes"): a .pc2 file next to the .blend plus a Mesh Cache modifier.

Exact at every frame and light in the .blend; the cost is a sidecar file of 12 bytes per
vertex per frame. The file is written atomically (temporary name, then rename) so a reader
never sees half a cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import bpy
import numpy as np

from wav2sem_contract.errors import Wav2SemError
from wav2sem_contract.result import InferResult

from .. import runtime
from . import PREFIX
from .base import Summary, Timing, WriterSpec
from .common import rest_positions, sidecar_blend
from .motion import as_offsets

SPEC = WriterSpec("POINT_CACHE", "point-cache", "Point Cache",
                  "Mesh keyframes in a .pc2 file next to the .blend, with a Mesh Cache modifier", request="offsets")
MODIFIER = PREFIX + "Cache"


def write_pc2(path: Path, positions: np.ndarray) -> None:
    """positions (T, V, 3) absolute, mesh-local -> PC2 file."""
    header = np.zeros(1, [("sig", "S12"), ("ver", "<i4"), ("n", "<i4"), ("start", "<f4"), ("rate", "<f4"), ("T", "<i4")])
    header[0] = (b"POINTCACHE2\0", 1, positions.shape[1], 0.0, 1.0, positions.shape[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(header.tobytes())
            fh.write(np.ascontiguousarray(positions, dtype="<f4").tobytes())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # no partial cache left behind (a full disk, an interrupt)
        raise


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
# rig cannot be computed.
prepare = as_offsets


def clear(ob: bpy.types.Object) -> None:
    """Remove our Mesh Cache modifier (the .pc2 file stays: an undo may need it again)."""
    for mod in [m for m in ob.modifiers if m.name.startswith(PREFIX) and m.type == "MESH_CACHE"]:
        ob.modifiers.remove(mod)


def write(ob: bpy.types.Object, result: InferResult, timing: Timing) -> Summary:
    offsets = as_offsets(ob, result)["offsets"]
    path, stored = cache_path(ob, runtime.cache_dir())
    try:
        write_pc2(path, rest_positions(ob)[None] + offsets)
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
    return Summary(len(offsets), timing.last_frame(len(offsets)), f"cache {path.name}", files=[str(path)])
