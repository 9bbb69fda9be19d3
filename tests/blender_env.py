"""Real Blender (the ``bpy`` module) for tests: one registration per process, a clean scene
per test, a generated 5023-vertex head-sized mesh, evaluated vertex positions."""

from __future__ import annotations

import bpy  # noqa: I001 - must come before the add-on
import numpy as np

import wav2sem_blender

N_VERTICES = 5023


def ensure_registered() -> None:
    if not hasattr(bpy.types, "WAV2SEM_OT_generate"):
        wav2sem_blender.register()


def reset(fps: int = 30, fps_base: float = 1.0) -> bpy.types.Scene:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    ensure_registered()
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = fps, fps_base
    scene.frame_start, scene.frame_end = 1, 250
    bpy.context.window_manager.wav2sem_status.message = ""
    return scene


def make_head(name: str = "Head", n: int = N_VERTICES, seed: int = 0) -> bpy.types.Object:
    """A 70 x 71 quad grid bent into a head-sized cap (metres) plus loose vertices up to ``n``."""
    rows, cols = 70, 71
    u, v = np.meshgrid(np.linspace(-1, 1, cols), np.linspace(-1, 1, rows))
    grid = np.stack([0.08 * u, 0.1 * v, 0.05 * np.cos(u) * np.cos(v)], -1).reshape(-1, 3)
    rng = np.random.default_rng(seed)
    loose = rng.normal(scale=0.02, size=(n - len(grid), 3))
    verts = np.concatenate([grid, loose])
    faces = [
        (r * cols + c, r * cols + c + 1, (r + 1) * cols + c + 1, (r + 1) * cols + c)
        for r in range(rows - 1)
        for c in range(cols - 1)
    ]
    me = bpy.data.meshes.new(name)
    me.from_pydata(verts.tolist(), [], faces)
    ob = bpy.data.objects.new(name, me)
    bpy.context.scene.collection.objects.link(ob)
    bpy.context.view_layer.objects.active = ob
    return ob


def positions(ob: bpy.types.Object) -> np.ndarray:
    me = ob.data
    co = np.empty(len(me.vertices) * 3, dtype=np.float32)
    me.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)


def evaluated(ob: bpy.types.Object, frame: int) -> np.ndarray:
    bpy.context.scene.frame_set(frame)
    dg = bpy.context.evaluated_depsgraph_get()
    me = ob.evaluated_get(dg).data
    co = np.empty(len(me.vertices) * 3, dtype=np.float32)
    me.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)


def resample(offsets: np.ndarray, model_fps: float, scene_fps: float, frame: int, first: int) -> np.ndarray:
    """Independent reference: the motion at a scene frame by linear interpolation in time."""
    t = (frame - first) * model_fps / scene_fps
    i0 = int(np.clip(np.floor(t), 0, len(offsets) - 1))
    i1 = min(i0 + 1, len(offsets) - 1)
    w = t - np.floor(t) if i0 < len(offsets) - 1 else 0.0
    return (1 - w) * offsets[i0] + w * offsets[i1]


def scene_snapshot(ob: bpy.types.Object) -> dict:
    """What must not change when a run fails or is cancelled."""
    scene = bpy.context.scene
    key = ob.data.shape_keys
    sed = scene.sequence_editor
    strips = list(getattr(sed, "strips_all", [])) if sed else []
    return {
        "verts": positions(ob).copy(),
        "keys": [kb.name for kb in key.key_blocks] if key else [],
        "modifiers": [m.name for m in ob.modifiers],
        "strips": [s.name for s in strips],
        "range": (scene.frame_start, scene.frame_end),
        "fps": (scene.render.fps, scene.render.fps_base),
        "action": key.animation_data.action.name if key and key.animation_data and key.animation_data.action else None,
    }


class Recorder:
    """Stands in for a panel's layout: checks every property and operator the panel draws exists."""

    def __init__(self, seen):
        self.seen = seen

    def __getattr__(self, name):
        return lambda *args, **kwargs: Recorder(self.seen)  # column(), row(), separator(), label() ...

    def prop(self, data, name, **kwargs):
        assert name in data.bl_rna.properties, name
        self.seen.append(name)

    def prop_search(self, data, name, search_data, search_name, **kwargs):
        assert name in data.bl_rna.properties and search_name in search_data.bl_rna.properties, name
        self.seen.append(name)

    def operator(self, idname, **kwargs):
        group, name = idname.split(".")
        assert hasattr(getattr(bpy.ops, group), name), idname
        self.seen.append(idname)


def generate_mouth(obj: str = "Head", **kwargs) -> set[str]:
    """Generate Lip Sync onto ``obj`` as controls, mouth only (no performance layer) and without the
    sound strip; an operator that reports an error comes back as ``{"CANCELLED"}``, as a user sees it."""
    try:
        return bpy.ops.wav2sem.generate(object=obj, mode="CONTROLS", add_sound=False, performance=0.0, **kwargs)
    except RuntimeError:
        return {"CANCELLED"}


def mouth_close_curve(ob: bpy.types.Object) -> bpy.types.FCurve:
    """The mouthClose key's F-curve on ``ob``."""
    from wav2sem_blender.compat import fcurves_of

    return next(fc for fc in fcurves_of(ob.data.shape_keys) if 'key_blocks["mouthClose"]' in fc.data_path)
