"""Pictures for the README's retargeting section, made from the add-on's own procedural head only.

    .venv/bin/python scripts/retarget_pictures.py --out docs

No third-party geometry: the source is ``head.make_head_object`` with the articulation rig,
animated by hand-written syllable-like control curves (no model); the target is the same
procedural shape built on a coarser, triangulated grid, reshaped, with its mesh data in
centimetres and a different object transform. Each picture is a grid rendered with Workbench:
the source on the top row, the retargeted head below, at a rest, an open and a rounded frame.

* ``retarget_transfer.png``: Align Heads, then Transfer Motion (Bake) onto the target.
* ``retarget_solve.png``: Solve Shape Keys onto the target's own five keys.
* ``retarget_controls.png``: Map Controls (ARKit to Visemes preset) onto a viseme rig.
* ``retarget_jaw.png``: Animate Jaw Bone on an armature whose jaw bone deforms the target.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FPS = 30
TILE = 220  # pixels per square tile
GAP = 3  # pixels between tiles
SKIN = (0.80, 0.56, 0.45, 1.0)
TARGET_SKIN = (0.62, 0.66, 0.78, 1.0)  # the retargeted heads in a cooler tone: a different mesh
CAVITY = (0.05, 0.015, 0.015, 1.0)
BACKGROUND = (0.16, 0.18, 0.22)
TARGET_GRID = (44, 30)  # the target grid: azimuth x elevation (the source: head.N_AZIMUTH x N_ELEVATION)
# In head space (metres, z up, facing -y): the camera sits front right and looks at the mouth.
CAMERA_AT, LOOK_AT, LENS = (0.1, -0.47, 0.0), (0.012, -0.085, -0.058), 100

# Key poses of the source's control curves: (frame, {control: weight}). Between poses the
# weights ease smoothly (smoothstep); controls not named in a pose are 0 there.
OPEN = {"jawOpen": 0.9, "mouthLowerDown_L": 0.45, "mouthLowerDown_R": 0.45, "mouthUpperUp_L": 0.25,
        "mouthUpperUp_R": 0.25}
ROUND = {"mouthPucker": 1.0, "mouthFunnel": 0.55, "jawOpen": 0.25}
SPREAD = {"mouthSmile_L": 0.8, "mouthSmile_R": 0.8, "mouthStretch_L": 0.35, "mouthStretch_R": 0.35,
          "jawOpen": 0.2}
OH = {"mouthFunnel": 0.9, "mouthPucker": 0.3, "jawOpen": 0.5}
IH = {"jawOpen": 0.35, "mouthStretch_L": 0.5, "mouthStretch_R": 0.5, "mouthUpperUp_L": 0.3,
      "mouthUpperUp_R": 0.3}
CLOSED = {"mouthClose": 0.4, "mouthRollLower": 0.3, "mouthPress_L": 0.4, "mouthPress_R": 0.4}
POSES = [(1, {}), (8, OPEN), (13, CLOSED), (20, ROUND), (27, SPREAD), (33, IH), (40, OPEN), (46, CLOSED),
         (53, OH), (60, SPREAD), (67, ROUND), (74, OPEN), (82, {}), (90, {})]
SHOWN = {"rest": 1, "open": 40, "rounded": 67}  # the frames in every picture
SOLVED_KEYS = ("jawOpen", "mouthClose", "mouthPucker", "mouthSmile_L", "mouthSmile_R")
VISEMES = {  # viseme key -> combination of the target's articulation-rig deltas
    "aa": {"jawOpen": 1.0, "mouthLowerDown_L": 0.4, "mouthLowerDown_R": 0.4},
    "oh": {"jawOpen": 0.45, "mouthFunnel": 1.0, "mouthPucker": 0.3},
    "ou": {"mouthPucker": 1.0, "mouthFunnel": 0.4, "jawOpen": 0.1},
    "ee": {"mouthSmile_L": 0.7, "mouthSmile_R": 0.7, "mouthStretch_L": 0.4, "mouthStretch_R": 0.4,
           "jawOpen": 0.15},
    "ih": {"mouthStretch_L": 0.6, "mouthStretch_R": 0.6, "jawOpen": 0.35, "mouthUpperUp_L": 0.3,
           "mouthUpperUp_R": 0.3},
}


def control_weights(names: list[str]) -> np.ndarray:
    """(T, K) weights for frames 1..last pose: smoothstep between the key poses."""
    frames = np.arange(1, POSES[-1][0] + 1, dtype=np.float64)
    out = np.zeros((len(frames), len(names)))
    for (f0, p0), (f1, p1) in zip(POSES[:-1], POSES[1:], strict=True):
        t = (frames - f0) / (f1 - f0)
        inside = (t >= 0) & (t <= 1)
        s = t[inside] ** 2 * (3 - 2 * t[inside])
        for k, n in enumerate(names):
            out[inside, k] = (1 - s) * p0.get(n, 0.0) + s * p1.get(n, 0.0)
    return out


# -- building the scene --------------------------------------------------------------------------
def mesh_object(name: str, verts: np.ndarray, faces, landmarks: dict[str, list[int]], matrix=None):
    import bpy
    from mathutils import Matrix

    me = bpy.data.meshes.new(name)
    me.from_pydata(np.asarray(verts).tolist(), [], [tuple(int(i) for i in f) for f in faces])
    me.update()
    me.shade_smooth()
    ob = bpy.data.objects.new(name, me)
    bpy.context.scene.collection.objects.link(ob)
    for group, indices in landmarks.items():
        ob.vertex_groups.new(name=group).add(indices, 1.0, "REPLACE")
    if matrix is not None:
        ob.matrix_world = Matrix(np.asarray(matrix).tolist())
    return ob


def target_geometry():
    """The procedural head on a coarser grid, triangulated and reshaped, in centimetres."""
    from wav2sem_blender import head

    saved = head.N_AZIMUTH, head.N_ELEVATION
    head.N_AZIMUTH, head.N_ELEVATION = TARGET_GRID
    try:
        verts, quads, landmarks = head.head_geometry()
    finally:
        head.N_AZIMUTH, head.N_ELEVATION = saved
    # split each quad along alternating diagonals: a triangle mesh, plainly not the source's quads
    faces = []
    for i, f in enumerate(quads):
        if len(f) == 4:
            a, b, c, d = f
            faces += [(a, b, c), (a, c, d)] if i % 2 else [(a, b, d), (b, c, d)]
        else:
            faces.append(f)
    x, y, z = verts.T.copy()
    # another face: broader and squarer jaw, a flatter crown, a longer face, a fuller front
    low = np.clip(-z / 0.118, 0, 1)
    x *= 1.0 + 0.16 * low**1.5
    y *= 1.0 + 0.06 * low
    z *= 1.08 - 0.1 * np.clip(z / 0.118, 0, 1) ** 2
    return np.stack([x, y, z], 1) * 100.0, faces, landmarks


def target_matrix() -> np.ndarray:
    """Centimetre data -> world: 1.2x bigger than the source, turned and moved away."""
    from mathutils import Matrix

    m = (Matrix.Translation((0.6, 0.35, 0.12)) @ Matrix.Rotation(math.radians(28), 4, "Z")
         @ Matrix.Rotation(math.radians(-9), 4, "X") @ Matrix.Scale(0.012, 4))
    return np.array(m)


def decorate(ob, colour, meters_per_unit: float):
    """A colour, a thin wireframe that follows the head's deformation, and a dark mouth cavity."""
    import bpy

    ob.color = colour
    wire = bpy.data.objects.new(ob.name + " wire", ob.data)  # linked: same shape keys and animation
    bpy.context.scene.collection.objects.link(wire)
    wire.parent = ob
    for mod in ob.modifiers:  # e.g. the jaw's Armature modifier
        copy = wire.modifiers.new(mod.name, mod.type)
        for prop in ("object", "use_vertex_groups", "use_bone_envelopes"):
            if hasattr(mod, prop):
                setattr(copy, prop, getattr(mod, prop))
    mod = wire.modifiers.new("Wire", "WIREFRAME")
    mod.thickness = 0.0003 / meters_per_unit
    mod.offset = -1.0  # outwards, on top of the skin
    mod.use_even_offset = True
    mod.use_relative_offset = False
    wire.color = tuple(0.45 * c for c in colour[:3]) + (1.0,)
    rest = np.empty(len(ob.data.vertices) * 3, np.float32)
    ob.data.vertices.foreach_get("co", rest)
    rest = rest.reshape(-1, 3)
    inner_me = bpy.data.meshes.new(ob.name + " cavity")
    inner_me.from_pydata((rest * np.array([0.86, 0.8, 0.86])).tolist(), [],
                         [tuple(p.vertices) for p in ob.data.polygons])
    inner = bpy.data.objects.new(ob.name + " cavity", inner_me)
    bpy.context.scene.collection.objects.link(inner)
    inner.parent = ob
    inner.color = CAVITY
    return [ob, wire, inner]


def animate_source(source) -> None:
    from wav2sem_blender.writers.controls import write_controls
    from wav2sem_contract import controls

    names = list(controls.CONTROLS)
    write_controls(source, control_weights(names), names, FPS, 1.0, FPS)


def rig_deltas(ob) -> dict[str, np.ndarray]:
    """The articulation rig's deltas for ``ob`` (object space), without adding keys."""
    from wav2sem_blender.rig import landmarks_of
    from wav2sem_blender.writers.common import rest_positions
    from wav2sem_contract import articulation

    rest = rest_positions(ob).astype(np.float64)
    return articulation.control_deltas(rest, articulation.mouth_frame(rest, landmarks_of(ob, rest)))


def add_keys(ob, shapes: dict[str, np.ndarray]) -> None:
    from wav2sem_blender.writers.common import rest_positions

    rest = rest_positions(ob).astype(np.float64)
    if ob.data.shape_keys is None:
        ob.shape_key_add(name="Basis", from_mix=False)
    for name, delta in shapes.items():
        kb = ob.shape_key_add(name=name, from_mix=False)
        kb.data.foreach_set("co", (rest + delta).astype(np.float32).ravel())


def jaw_rig(ob):
    """An armature deforming ``ob``: a jaw bone (pivot below the ear, tail at the chin), a still head bone."""
    import bpy

    from wav2sem_blender.rig import landmarks_of
    from wav2sem_blender.writers.common import rest_positions
    from wav2sem_contract import articulation

    rest = rest_positions(ob).astype(np.float64)
    lm = landmarks_of(ob, rest)
    frame = articulation.mouth_frame(rest, lm)
    weights = articulation.jaw_weights(frame, frame.local(rest))
    weights = np.round(weights, 3)
    # Blender's Armature modifier normalises a vertex's bone weights, so the rest of each vertex
    # goes to a still "head" bone: otherwise a vertex with a little jaw weight would follow fully.
    for name, values in (("jaw", weights), ("head", 1.0 - weights)):
        group = ob.vertex_groups.new(name=name)
        for w in np.unique(values[values > 0]):
            group.add(np.flatnonzero(values == w).tolist(), float(w), "REPLACE")
    arm_data = bpy.data.armatures.new("Jaw Rig")
    arm = bpy.data.objects.new("Jaw Rig", arm_data)
    bpy.context.scene.collection.objects.link(arm)
    arm.matrix_world = ob.matrix_world.copy()
    arm.hide_render = True
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    still = arm_data.edit_bones.new("head")
    still.head = frame.pivot.tolist()
    still.tail = (frame.pivot + frame.width * frame.up).tolist()
    bone = arm_data.edit_bones.new("jaw")
    bone.parent = still
    bone.head = frame.pivot.tolist()
    bone.tail = lm["chin"].tolist()
    # roll: local X along the character's left, so a positive turn about X swings the chin down
    along = lm["chin"] - frame.pivot
    bone.align_roll(np.cross(frame.lateral, along / np.linalg.norm(along)).tolist())
    bpy.ops.object.mode_set(mode="OBJECT")
    mod = ob.modifiers.new("Armature", "ARMATURE")
    mod.object = arm
    return arm


# -- rendering -------------------------------------------------------------------------------------
def setup_render():
    import bpy

    scene = bpy.context.scene
    scene.render.engine = "BLENDER_WORKBENCH"
    shading = scene.display.shading
    shading.light = "STUDIO"
    shading.color_type = "OBJECT"
    shading.show_specular_highlight = True
    scene.display.render_aa = "8"
    scene.render.resolution_x = scene.render.resolution_y = TILE
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.image_settings.compression = 100
    world = bpy.data.worlds.new("World")
    world.color = BACKGROUND
    scene.world = world
    cam_data = bpy.data.cameras.new("Camera")
    cam_data.lens = LENS
    cam_data.clip_start = 0.01
    cam = bpy.data.objects.new("Camera", cam_data)
    scene.collection.objects.link(cam)
    scene.camera = cam
    return cam


def label(cam, text: str):
    """A caption in the tile's lower left corner: a text object riding on the camera."""
    import bpy

    curve = bpy.data.curves.new("Label " + text, "FONT")
    curve.body = text
    curve.size = 0.00105
    ob = bpy.data.objects.new("Label " + text, curve)
    bpy.context.scene.collection.objects.link(ob)
    ob.parent = cam
    half = 0.05 * 18.0 / LENS  # half the view's width 5 cm in front of a 36 mm sensor
    ob.location = (-0.93 * half, -0.93 * half, -0.05)
    ob.color = (0.95, 0.95, 0.95, 1.0)
    return ob


def head_space(ob, meters_per_unit: float):
    """World <- head space (metres, z up, facing -y) for a head object whose data is in these units."""
    from mathutils import Matrix

    return ob.matrix_world @ Matrix.Scale(1.0 / meters_per_unit, 4)


def place_camera(cam, space) -> None:
    """The same view of every head, in its own head space (so its own turn and size do not matter)."""
    from mathutils import Matrix, Vector

    eye, at = space @ Vector(CAMERA_AT), space @ Vector(LOOK_AT)
    up = (space.to_3x3() @ Vector((0, 0, 1))).normalized()
    z = (eye - at).normalized()
    x = up.cross(z).normalized()
    y = z.cross(x)
    rot = Matrix((x, y, z)).transposed()
    cam.matrix_world = Matrix.Translation(eye) @ rot.to_4x4()


def render_tile(path: Path, cam, shown: list, everything: list, space, frame: int) -> np.ndarray:
    import bpy

    for ob in everything:
        ob.hide_render = ob not in shown
    scene = bpy.context.scene
    scene.frame_set(frame)
    place_camera(cam, space)
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(str(path))
    pixels = np.empty(TILE * TILE * 4, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    bpy.data.images.remove(image)
    path.unlink()
    return pixels.reshape(TILE, TILE, 4)


def save_grid(rows: list[list[np.ndarray]], path: Path) -> Path:
    """Tiles joined with thin gaps (rows bottom-up in Blender's pixel order) and saved as one PNG."""
    import bpy

    gap_colour = np.array([*BACKGROUND, 1.0]) * 0.5
    gap_colour[3] = 1.0

    def hjoin(tiles):
        parts = []
        for i, t in enumerate(tiles):
            if i:
                parts.append(np.broadcast_to(gap_colour, (t.shape[0], GAP, 4)))
            parts.append(t)
        return np.concatenate(parts, axis=1)

    lines = [hjoin(r) for r in rows]
    parts = []
    for i, line in enumerate(lines):  # first row on top: Blender's rows go bottom-up
        if i:
            parts.insert(0, np.broadcast_to(gap_colour, (GAP, line.shape[1], 4)))
        parts.insert(0, line)
    grid = np.ascontiguousarray(np.concatenate(parts, axis=0), dtype=np.float32)
    image = bpy.data.images.new(path.stem, grid.shape[1], grid.shape[0], alpha=False)
    image.pixels.foreach_set(grid.ravel())
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save_render(str(path), scene=bpy.context.scene)
    bpy.data.images.remove(image)
    return path


def picture(name: str, out: Path, cam, top, bottom, everything) -> Path:
    """Top row: ``top`` = (objects, head space); bottom row: ``bottom``; columns: the SHOWN frames."""
    rows = []
    for shown, space in (top, bottom):
        rows.append([render_tile(out / f"_{name}_{frame}.png", cam, shown, everything, space, frame)
                     for frame in SHOWN.values()])
    path = save_grid(rows, out / f"{name}.png")
    print(f"  wrote {path} ({path.stat().st_size // 1024} KB)")
    return path


def run_op(op, **kwargs) -> str:
    import bpy

    try:
        op(**kwargs)
    except RuntimeError as exc:
        raise SystemExit(f"{op.idname_py()} failed: {exc}") from None
    return bpy.context.scene.wav2sem_retarget.last_summary


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs"))
    parser.add_argument("--only", nargs="*", choices=["transfer", "solve", "controls", "jaw"],
                        help="render only these pictures (default: all)")
    args = parser.parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import bpy

    import wav2sem_blender
    from wav2sem_blender.head import make_head_object
    from wav2sem_blender.retarget_ops import SOLVE_ERROR
    from wav2sem_blender.rig import add_articulation_rig

    started = time.monotonic()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    wanted = set(["transfer", "solve", "controls", "jaw"] if args.only is None else args.only)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    wav2sem_blender.register()
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = FPS, 1.0
    scene.frame_start, scene.frame_end = 1, POSES[-1][0]
    scene.unit_settings.system = "METRIC"

    source = make_head_object("Source")
    add_articulation_rig(source)
    animate_source(source)
    verts, faces, landmarks = target_geometry()
    matrix = target_matrix()

    def target_copy(name: str):
        return mesh_object(name, verts, faces, landmarks, matrix)

    target = target_copy("Target")
    print(f"source: {len(source.data.vertices)} vertices, {len(source.data.polygons)} quads; "
          f"target: {len(target.data.vertices)} vertices, {len(target.data.polygons)} triangles, "
          "data in cm, scaled, turned and moved")
    print("align_heads:", run_op(bpy.ops.wav2sem.align_heads, source="Source", target="Target"))
    print("transfer_motion:", run_op(bpy.ops.wav2sem.transfer_motion, source="Source", target="Target",
                                     mode="BAKE"))

    rig = target_copy("Rig")  # the target's own keys: five of the articulation rig's, nothing else
    add_keys(rig, {n: d for n, d in rig_deltas(rig).items() if n in SOLVED_KEYS})
    print("solve_shape_keys:", run_op(bpy.ops.wav2sem.solve_shape_keys, source="Source", target="Rig",
                                      keys=",".join(SOLVED_KEYS)))
    error = np.asarray(rig[SOLVE_ERROR]) * 1000.0
    first = rig.get("wav2sem_solve_first_frame", 1)
    print(f"  fit error (mm): rms {np.sqrt((error ** 2).mean()):.3f}, worst {error.max():.3f}; at the shown "
          "frames " + ", ".join(f"{k} {error[f - first]:.3f}" for k, f in SHOWN.items()))

    visemes = target_copy("Visemes")
    deltas = rig_deltas(visemes)
    add_keys(visemes, {v: sum(w * deltas[c] for c, w in mix.items()) for v, mix in VISEMES.items()})
    print("map_controls:", run_op(bpy.ops.wav2sem.map_controls, source="Source", target="Visemes",
                                  preset="VISEMES"))

    jawed = target_copy("Jawed")
    arm = jaw_rig(jawed)
    print("jaw_bone:", run_op(bpy.ops.wav2sem.jaw_bone, armature=arm.name, bone="jaw", source="Source",
                              axis="X", max_angle=math.radians(14)))

    cam = setup_render()
    src_space = head_space(source, 1.0)
    tgt_space = head_space(target, 0.01)
    source_set = decorate(source, SKIN, 1.0) + [label(cam, "source: quads, animated controls")]
    captions = {"Target": "target: triangles, baked keys", "Rig": "target: 5 own keys, solved",
                "Visemes": "target: viseme keys aa ih ou ee oh", "Jawed": "target: jaw bone"}
    sets = {n: decorate(bpy.data.objects[n], TARGET_SKIN, 0.01) + [label(cam, c)]
            for n, c in captions.items()}
    everything = source_set + [ob for s in sets.values() for ob in s]
    top = (source_set, src_space)
    names = {"transfer": "Target", "solve": "Rig", "controls": "Visemes", "jaw": "Jawed"}
    for picture_name, ob_name in names.items():
        if picture_name in wanted:
            picture(f"retarget_{picture_name}", out, cam, top, (sets[ob_name], tgt_space), everything)
    print(f"frames shown: {SHOWN}; done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
