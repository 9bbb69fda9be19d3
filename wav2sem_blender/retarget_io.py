"""Reading Blender data for retargeting: meshes, matrices, shape keys, vertex groups and F-curves,
out of the scene into numpy arrays in bulk (``foreach_get``), plus the checks that refuse unusable
input. Nothing here changes the scene; ``retarget_write`` does that, and ``retarget_ops`` ties the two
to the numpy core in ``retarget/``.

Every refusal is a ``Wav2SemError`` with one plain sentence, raised before anything is changed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import bpy
import numpy as np

from wav2sem_contract import controls
from wav2sem_contract.errors import Wav2SemError

from .compat import key_fcurves
from .retarget.binding import triangulate
from .retarget.transform import RetargetError
from .rig import FLAME_LANDMARKS, FLAME_VERTICES, GROUP_PREFIX, group_weights
from .writers import PREFIX
from .writers.common import rest_positions


def refuse(message: str) -> Wav2SemError:
    """The error a retarget operator reports as it cancels (the message is the whole report)."""
    return Wav2SemError("retarget", message, "")


# -- objects ---------------------------------------------------------------------------------------
def find_object(
    name: str, role: str, kind: str = "MESH", fallback: bpy.types.Object | None = None
) -> bpy.types.Object:
    """The object called ``name`` (else ``fallback``), which must be of type ``kind``."""
    ob = bpy.data.objects.get(name) if name else fallback
    if ob is None:
        if name:
            raise refuse(f"There is no object called '{name}' to use as the {role}.")
        raise refuse(f"No {role} object is chosen; pick one in the Retarget panel or pass {role}=....")
    if ob.type != kind:
        raise refuse(f"The {role} '{ob.name}' is a {ob.type.lower()}, not a {kind.lower()}.")
    return ob


def check_editable(ob: bpy.types.Object) -> None:
    """Refuse an object whose data cannot be changed from here."""
    if ob.library is not None or ob.data.library is not None:
        raise refuse(f"'{ob.name}' is linked from another .blend and cannot be changed here; make it local first.")
    if ob.mode == "EDIT":
        raise refuse(f"'{ob.name}' is in Edit Mode; switch to Object Mode first.")


def check_distinct(source: bpy.types.Object, target: bpy.types.Object, shared_data: bool = False) -> None:
    """Refuse one head as both source and target (``shared_data``: linked duplicates are allowed)."""
    if source == target or (source.data == target.data and not shared_data):
        raise refuse(f"The source and the target are the same mesh ('{source.name}'); pick two heads.")


# -- geometry --------------------------------------------------------------------------------------
def rest_of(ob: bpy.types.Object) -> np.ndarray:
    """(V, 3) float64 rest positions in object space (the reference key, else the mesh)."""
    return rest_positions(ob).astype(np.float64)


def world_matrix(ob: bpy.types.Object) -> np.ndarray:
    """The object's 4x4 world matrix."""
    return np.array(ob.matrix_world, dtype=np.float64)


def to_world(ob: bpy.types.Object, points: np.ndarray) -> np.ndarray:
    """Object-space points -> world space."""
    m = world_matrix(ob)
    return points @ m[:3, :3].T + m[:3, 3]


def world_linear(ob: bpy.types.Object) -> np.ndarray:
    """The object's world matrix without translation: object-space vectors -> world vectors."""
    lin = world_matrix(ob)[:3, :3]
    if abs(np.linalg.det(lin)) < 1e-12:
        raise refuse(f"'{ob.name}' has a zero scale; give it a non-zero scale first.")
    return lin


def world_scale(ob: bpy.types.Object) -> float:
    """The object's mean world scale (object units -> world units)."""
    return float(abs(np.linalg.det(world_linear(ob))) ** (1 / 3))


def triangles_of(ob: bpy.types.Object) -> np.ndarray:
    """(N, 3) vertex indices of the mesh's faces, split into triangles."""
    me = ob.data
    if len(me.polygons) == 0:
        raise refuse(f"'{ob.name}' has no faces, so nothing can be bound to its surface.")
    starts = np.empty(len(me.polygons), dtype=np.int64)
    sizes = np.empty(len(me.polygons), dtype=np.int64)
    me.polygons.foreach_get("loop_start", starts)
    me.polygons.foreach_get("loop_total", sizes)
    loop_vertex = np.empty(len(me.loops), dtype=np.int64)
    me.loops.foreach_get("vertex_index", loop_vertex)
    corners = np.repeat(starts - (np.cumsum(sizes) - sizes), sizes) + np.arange(sizes.sum())
    try:
        return triangulate(sizes, loop_vertex[corners])
    except RetargetError as exc:
        raise refuse(f"'{ob.name}': {exc}") from None


def landmark_vertex(ob: bpy.types.Object, name: str) -> int | None:
    """The vertex standing for one landmark: the heaviest of its group, else FLAME's built-in."""
    w = group_weights(ob, [GROUP_PREFIX + name]).get(GROUP_PREFIX + name)
    if w is not None and w.max() > 0:
        return int(w.argmax())
    if len(ob.data.vertices) == FLAME_VERTICES and name in FLAME_LANDMARKS:
        return FLAME_LANDMARKS[name]
    return None


def vertex_mask(ob: bpy.types.Object, group: str) -> np.ndarray | None:
    """(V,) weights of vertex group ``group``; None when no group is given."""
    if not group:
        return None
    if group not in ob.vertex_groups:
        raise refuse(f"'{ob.name}' has no vertex group called '{group}'.")
    mask = group_weights(ob, [group])[group]
    if mask.max() <= 0:
        raise refuse(f"The vertex group '{group}' of '{ob.name}' is empty.")
    return mask


# -- shape keys and their F-curves -----------------------------------------------------------------
def control_curves(ob: bpy.types.Object) -> dict[str, bpy.types.FCurve]:
    """Control name (``jawOpen`` ...) -> its keyed F-curve on the object's shape keys."""
    curves = key_fcurves(ob.data.shape_keys)
    return {n: fc for n, fc in curves.items() if n in controls.CONTROLS and len(fc.keyframe_points)}


def curve_range(curves: Iterable[bpy.types.FCurve]) -> tuple[int, int]:
    """First and last whole frame covering the keys of all ``curves``."""
    curves = list(curves)
    lo = min(fc.range()[0] for fc in curves)
    hi = max(fc.range()[1] for fc in curves)
    return math.floor(lo + 1e-6), math.ceil(hi - 1e-6)


def evaluate(fc: bpy.types.FCurve, frames: np.ndarray) -> np.ndarray:
    """Values of ``fc`` at ``frames``: numpy interpolation for plain linear curves, else ``evaluate``."""
    n = len(fc.keyframe_points)
    if n and fc.extrapolation == "CONSTANT" and len(fc.modifiers) == 0:
        interp = np.empty(n, dtype=np.int32)
        fc.keyframe_points.foreach_get("interpolation", interp)
        if (interp[:-1] == 1).all():  # LINEAR (the last key's interpolation plays no part)
            co = np.empty(2 * n, dtype=np.float64)
            fc.keyframe_points.foreach_get("co", co)
            return np.interp(frames, co[0::2], co[1::2])
    return np.array([fc.evaluate(float(f)) for f in frames])


def key_deltas(ob: bpy.types.Object, blocks: list[bpy.types.ShapeKey]) -> np.ndarray:
    """(K, V, 3) object-space deltas of the given key blocks against their relative keys (and vertex groups)."""
    n = len(ob.data.vertices)
    cache: dict[str, np.ndarray] = {}

    def co(kb) -> np.ndarray:
        if kb.name not in cache:
            buf = np.empty(3 * n, dtype=np.float32)
            kb.data.foreach_get("co", buf)
            cache[kb.name] = buf.reshape(-1, 3)
        return cache[kb.name]

    out = np.empty((len(blocks), n, 3), dtype=np.float32)
    for k, kb in enumerate(blocks):
        out[k] = co(kb) - co(kb.relative_key)
        if kb.vertex_group:  # Blender scales the key by its vertex group
            w = group_weights(ob, [kb.vertex_group]).get(kb.vertex_group)
            if w is not None:
                out[k] *= w[:, None].astype(np.float32)
    return out


def animated_offsets(ob: bpy.types.Object, frames: np.ndarray) -> np.ndarray:
    """(T, V, 3) object-space offsets of ``ob``'s relative shape keys at ``frames``, from the F-curves.

    What Blender evaluates: each unmuted key adds value x (key - relative key), values clamped to
    the key's slider range, the delta scaled by the key's vertex group; keys without a curve hold their value.
    Only the active action counts (not NLA strips or drivers).
    """
    key = ob.data.shape_keys
    curves = key_fcurves(key)
    blocks, values = [], []
    for kb in key.key_blocks:
        if kb == key.reference_key or kb.mute:
            continue
        fc = curves.get(kb.name)
        v = evaluate(fc, frames) if fc is not None else np.full(len(frames), kb.value)
        v = np.clip(v, kb.slider_min, kb.slider_max)
        if np.abs(v).max() > 0:
            blocks.append(kb)
            values.append(v)
    offsets = np.zeros((len(frames), len(ob.data.vertices), 3), dtype=np.float32)
    if not blocks:
        return offsets
    deltas = key_deltas(ob, blocks)
    values = np.stack(values, axis=1).astype(np.float32)  # (T, K)
    step = max(1, (1 << 24) // max(1, deltas[0].size))
    for t0 in range(0, len(frames), step):
        offsets[t0:t0 + step] = np.tensordot(values[t0:t0 + step], deltas, axes=1)
    return offsets


def animated_keys(ob: bpy.types.Object, role: str) -> tuple[bpy.types.Key, dict[str, bpy.types.FCurve]]:
    """The object's Key and the keyed F-curves of its shape keys; refuses a head with none to read."""
    key = ob.data.shape_keys
    if key is None or len(key.key_blocks) < 2:
        raise refuse(f"The {role} '{ob.name}' has no shape keys.")
    if not key.use_relative:
        raise refuse(f"The {role} '{ob.name}' has absolute shape keys (one per frame), which cannot be read here; "
                     "generate it as Compact Shape Keys.")
    curves = {n: fc for n, fc in key_fcurves(key).items() if n in key.key_blocks and len(fc.keyframe_points)}
    if not curves:
        raise refuse(f"The {role} '{ob.name}' has no animated shape keys.")
    return key, curves


def transferable_keys(source: bpy.types.Object) -> list[bpy.types.ShapeKey]:
    """The add-on's own shape keys of the source (W2S ...), else all its relative keys."""
    key = source.data.shape_keys
    if key is None or len(key.key_blocks) < 2:
        cache = any(m.type == "MESH_CACHE" for m in source.modifiers)
        hint = "use Live for a point cache" if cache else "generate lip sync on it first"
        raise refuse(f"The source '{source.name}' has no shape keys to bake; {hint}.")
    if not key.use_relative:
        raise refuse(f"The source '{source.name}' has absolute shape keys (one per frame); use Live instead.")
    blocks = [kb for kb in key.key_blocks if kb != key.reference_key]
    own = [kb for kb in blocks if kb.name.startswith(PREFIX)]
    return own or blocks


def check_surface_deform(source: bpy.types.Object) -> None:
    """Refuse a source Surface Deform cannot follow."""
    if len(source.data.polygons) == 0:
        raise refuse(f"The source '{source.name}' has no faces for Surface Deform to follow.")
