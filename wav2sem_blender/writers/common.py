"""Helpers shared by the writers: timing, bulk keyframes, removing our own data."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import bpy
import numpy as np

from ..compat import fcurves_of
from ..key_paths import key_name_of

LINEAR = 1  # enum value of 'LINEAR' for foreach_set("interpolation")


# The .blend that sidecar files (point caches) are named after and placed next to, when that is not
# the open file: a headless batch writes its output .blend only once the run has succeeded.
_SIDECAR_BLEND: list[Path] = []


@contextmanager
def sidecars_for(blend: Path) -> Iterator[None]:
    """Name and place sidecar files for ``blend`` (the .blend the result will be saved as)."""
    _SIDECAR_BLEND.append(Path(blend))
    try:
        yield
    finally:
        _SIDECAR_BLEND.pop()


def sidecar_blend() -> Path | None:
    """The .blend sidecar files belong to: the one set by ``sidecars_for``, else the open file (if saved)."""
    if _SIDECAR_BLEND:
        return _SIDECAR_BLEND[-1]
    return Path(bpy.data.filepath) if bpy.data.filepath else None


def scene_fps(scene: bpy.types.Scene) -> float:
    return scene.render.fps / scene.render.fps_base


def add_fcurve(fcurves, data_path: str, frames: np.ndarray, values: np.ndarray, index: int = 0):
    """One F-curve, filled in bulk (never one ``keyframe_insert`` per key)."""
    fc = fcurves.find(data_path, index=index)
    if fc is not None:
        fcurves.remove(fc)
    fc = fcurves.new(data_path, index=index)
    n = len(frames)
    fc.keyframe_points.add(n)
    co = np.empty((n, 2), dtype=np.float32)
    co[:, 0], co[:, 1] = frames, values
    fc.keyframe_points.foreach_set("co", co.ravel())
    fc.keyframe_points.foreach_set("interpolation", np.full(n, LINEAR, dtype=np.int32))
    fc.update()
    return fc


def remove_shape_keys(ob: bpy.types.Object, is_own: Callable[[str], bool], also_paths: tuple[str, ...] = ()) -> int:
    """Delete the shape keys whose names ``is_own`` accepts, their F-curves and the curves at ``also_paths``."""
    key = ob.data.shape_keys
    if key is None:
        return 0
    fcurves = fcurves_of(key, create=False)
    if fcurves is not None:
        for fc in list(fcurves):
            name = key_name_of(fc.data_path)
            if (name is not None and is_own(name)) or fc.data_path in also_paths:
                fcurves.remove(fc)
    own = [kb for kb in key.key_blocks if is_own(kb.name)]
    for kb in own:
        ob.shape_key_remove(kb)
    return len(own)


def rest_positions(ob: bpy.types.Object) -> np.ndarray:
    """(V, 3) positions the offsets are added to: the reference shape key, else the mesh."""
    me = ob.data
    co = np.empty(len(me.vertices) * 3, dtype=np.float32)
    key = me.shape_keys
    if key is not None and key.reference_key is not None:
        key.reference_key.data.foreach_get("co", co)
    else:
        me.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)


def ensure_basis(ob: bpy.types.Object) -> None:
    if ob.data.shape_keys is None:
        ob.shape_key_add(name="Basis", from_mix=False)


def new_shape_key(ob: bpy.types.Object, name: str, positions: np.ndarray) -> bpy.types.ShapeKey:
    kb = ob.shape_key_add(name=name, from_mix=False)
    kb.data.foreach_set("co", np.ascontiguousarray(positions, dtype=np.float32).ravel())
    return kb


def copy_fcurve(fcurves, data_path: str, source, index: int = 0):
    """A copy of F-curve ``source`` under ``data_path``: keys, interpolation, handles, easing, in bulk."""
    fc = fcurves.find(data_path, index=index)
    if fc is not None:
        fcurves.remove(fc)
    fc = fcurves.new(data_path, index=index)
    points = source.keyframe_points
    n = len(points)
    fc.keyframe_points.add(n)
    for attr, width, dtype in (
        ("co", 2, np.float32),
        ("handle_left", 2, np.float32),
        ("handle_right", 2, np.float32),
        ("interpolation", 1, np.int32),
        ("easing", 1, np.int32),
        ("handle_left_type", 1, np.int32),
        ("handle_right_type", 1, np.int32),
        ("amplitude", 1, np.float32),
        ("back", 1, np.float32),
        ("period", 1, np.float32),
    ):
        buf = np.empty(n * width, dtype=dtype)
        points.foreach_get(attr, buf)
        fc.keyframe_points.foreach_set(attr, buf)
    fc.extrapolation = source.extrapolation
    fc.mute = source.mute
    fc.update()
    return fc
