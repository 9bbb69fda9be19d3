"""The demo's character: the procedural head dressed so an animator reads it as a face.

Built on ``head.head_build``: lips with volume and their own colour, eyeballs (sclera, iris,
pupil) behind lids that blink, upper and lower teeth with gums, a tongue, a dark mouth cavity and
a skin material. The head gets the articulation rig (the mouth) and the performance layer's keys
(``demo_face_keys``: blinks, brows, cheeks, nose). The lower teeth and the tongue follow the jaw: each
has a ``jawOpen`` key, the same rotation about the same pivot as the head's jaw, driven by the
head's ``jawOpen``; the upper teeth, eyes and cavity are children of the head, so they follow its
motion. No third-party asset: every part is generated here.
"""

from __future__ import annotations

from dataclasses import dataclass

import bpy
import numpy as np

from wav2sem_contract import articulation

from .demo_face_keys import performance_keys
from .head import EYE_AZIMUTH, EYE_ELEVATION, HeadBuild, HeadStyle, head_build, make_head_object
from .rig import add_articulation_rig, landmarks_of
from .writers.common import rest_positions


@dataclass(frozen=True)
class Character:
    head: HeadStyle
    skin: tuple[float, float, float]
    lips: tuple[float, float, float]
    iris: tuple[float, float, float]
    hair: tuple[float, float, float]
    hairline: float = 0.4  # elevation (radians) of the hairline above the middle of the forehead


# Two heads of different proportions and grid sizes (the README shows both animated).
CHARACTERS = {
    "a": Character(HeadStyle(n_azimuth=144, n_elevation=96, lip_roll=0.0025, eye_radius=0.0115),
                   skin=(0.62, 0.38, 0.27), lips=(0.55, 0.17, 0.16), iris=(0.16, 0.36, 0.58), hair=(0.035, 0.02, 0.012)),
    "b": Character(HeadStyle(width=0.084, depth=0.094, height=0.108, jaw_narrowing=0.2, nose=0.024, chin=0.016,
                             n_azimuth=112, n_elevation=72, lip_roll=0.003, eye_radius=0.0125),
                   skin=(0.25, 0.135, 0.08), lips=(0.24, 0.07, 0.06), iris=(0.22, 0.12, 0.05), hair=(0.02, 0.015, 0.01),
                   hairline=0.5),
}

SKIN, LIPS = 0, 1  # the head's material slots
HAIR_ATTRIBUTE = "w2s_hair"


def material(name: str, colour, roughness: float = 0.5, subsurface: float = 0.0, coat: float = 0.0):
    """A Principled BSDF material (Blender 5.0 makes the node tree with every new material; 4.x on request)."""
    mat = bpy.data.materials.new(name)
    mat.diffuse_color = (*colour, 1.0)
    if mat.node_tree is None:
        mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*colour, 1.0)
    bsdf.inputs["Roughness"].default_value = roughness
    if subsurface:
        bsdf.inputs["Subsurface Weight"].default_value = subsurface
        bsdf.inputs["Subsurface Radius"].default_value = (1.0, 0.35, 0.2)
        bsdf.inputs["Subsurface Scale"].default_value = 0.004  # metres: skin scatters a few millimetres
    if coat:
        bsdf.inputs["Coat Weight"].default_value = coat
    return mat


def _mesh_object(name: str, verts: np.ndarray, faces, parent, materials, indices=None, subdivide: int = 1):
    me = bpy.data.meshes.new(name)
    me.from_pydata(np.asarray(verts, float).tolist(), [], [list(map(int, f)) for f in faces])
    me.update()
    for mat in materials:
        me.materials.append(mat)
    if indices is not None:
        me.polygons.foreach_set("material_index", np.asarray(indices, np.int32))
    me.shade_smooth()
    ob = bpy.data.objects.new(name, me)
    bpy.context.scene.collection.objects.link(ob)
    ob.parent = parent  # the head sits at the origin unrotated, so no parent inverse is needed
    if subdivide:
        mod = ob.modifiers.new("Subdivision", "SUBSURF")
        mod.levels = mod.render_levels = subdivide
    return ob


def _sphere(radius: tuple[float, float, float], rings: int = 16, segments: int = 32):
    """A UV sphere round the origin, pole along +z: (vertices, faces, polar angle of each face)."""
    polar = np.linspace(0, np.pi, rings + 1)[1:-1]
    az = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    p, a = np.meshgrid(polar, az, indexing="ij")
    verts = np.stack([np.sin(p) * np.cos(a), np.sin(p) * np.sin(a), np.cos(p)], -1).reshape(-1, 3)
    verts = np.concatenate([[[0, 0, 1.0]], verts, [[0, 0, -1.0]]]) * np.asarray(radius)
    top, bottom = 0, len(verts) - 1
    ring = lambda r, s: 1 + r * segments + s % segments  # noqa: E731
    faces, angle = [], []
    for s in range(segments):
        faces.append((top, ring(0, s), ring(0, s + 1)))
        angle.append(polar[0] / 2)
        faces.append((bottom, ring(rings - 2, s + 1), ring(rings - 2, s)))
        angle.append(np.pi)
        for r in range(rings - 2):
            faces.append((ring(r, s), ring(r + 1, s), ring(r + 1, s + 1), ring(r, s + 1)))
            angle.append((polar[r] + polar[r + 1]) / 2)
    return verts, faces, np.array(angle)


def _track(forward: np.ndarray) -> np.ndarray:
    """Rotation matrix turning +z to ``forward`` (x stays horizontal)."""
    z = forward / np.linalg.norm(forward)
    x = np.cross([0.0, 0.0, 1.0], z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z], 1)


def _add_eyes(head, build: HeadBuild, iris) -> list:
    sclera = material("Sclera", (0.82, 0.8, 0.76), roughness=0.25, coat=1.0)
    iris_mat = material("Iris", iris, roughness=0.3, coat=1.0)
    pupil = material("Pupil", (0.01, 0.01, 0.01), roughness=0.2, coat=1.0)
    eyes = []
    for eye in build.eyes:
        verts, faces, angle = _sphere((eye.radius,) * 3, rings=24, segments=32)
        verts = verts @ _track(eye.forward).T + eye.centre
        index = np.where(angle < 0.22, 2, np.where(angle < 0.5, 1, 0))
        eyes.append(_mesh_object(f"Eye_{eye.side}", verts, faces, head, [sclera, iris_mat, pupil], index))
    return eyes


def _dental_arch(frame, front: np.ndarray, half_width: float, depth: float, height: float, gum: float,
                 down: bool, n: int = 72):
    """A row of teeth on an arch behind the lips: a band whose cutting edge dips between teeth, with
    a strip of gum along its root. ``down``: the teeth point down (the upper row). Returns
    (vertices, faces, material index per face: 0 teeth, 1 gums)."""
    beta = np.linspace(-1.25, 1.25, n)
    lat, up, fwd = frame.lateral, frame.up, frame.forward
    centre = front[None] + np.outer(half_width * np.sin(beta), lat) - np.outer(depth * (1 - np.cos(beta)), fwd)
    out = np.outer(np.sin(beta), lat) * depth / half_width + np.outer(np.cos(beta), fwd)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    # tooth boundaries along the arch: incisors widest, narrowing towards the back
    arc = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(centre, axis=0), axis=1))])
    arc -= arc[n // 2]
    tooth = 0.0085 * (1 - 0.25 * np.abs(beta) / 1.25)
    dip = 0.0012 * np.cos(np.pi * arc / tooth) ** 12  # notches where neighbouring teeth meet
    sign = -1.0 if down else 1.0
    thick = 0.0032 * (1 - 0.3 * np.abs(beta) / 1.25)
    edge = sign * (height - dip)  # the cutting edge, relative to the root line
    rows = [  # (offset along the teeth's direction, outward offset; -1: the back face): a closed cross-section
        (np.full(n, -sign * gum), 0.0015), (np.zeros(n), 0.0008), (edge, 0.0), (edge, -1.0),
        (np.zeros(n), -1.0), (np.full(n, -sign * gum), -1.0),
    ]
    verts = []
    for along, outward in rows:
        o = -thick if outward < 0 else np.full(n, outward)
        verts.append(centre + np.outer(along, up) + out * o[:, None])
    verts = np.concatenate(verts)
    k = len(rows)
    faces, index = [], []
    for j in range(k):  # round the cross-section
        j2 = (j + 1) % k
        for i in range(n - 1):
            faces.append((j * n + i, j * n + i + 1, j2 * n + i + 1, j2 * n + i))
            index.append(1 if j in (0, 4, 5) else 0)  # root strips are gum
    for i in (0, n - 1):  # caps
        faces.append(tuple(j * n + i for j in range(k))[:: 1 if i else -1])
        index.append(1)
    if not down:
        faces = [f[::-1] for f in faces]
    return verts, faces, index


def _jaw_rotation(frame, points: np.ndarray) -> np.ndarray:
    """``points`` turned the way the rig's jawOpen turns the chin at 1 (a rigid rotation)."""
    q = frame.local(points) - frame.local(frame.pivot[None])[0]
    a = articulation.JAW_MAX_RADIANS
    rotated = np.stack([q[:, 0], q[:, 1] * np.cos(a) - q[:, 2] * np.sin(a), q[:, 1] * np.sin(a) + q[:, 2] * np.cos(a)],
                       -1)
    return points + frame.world(rotated - q)


def follow_jaw(ob, head) -> None:
    """A ``jawOpen`` key on ``ob`` (the rig's jaw rotation) driven by the head's ``jawOpen``."""
    frame = mouth_frame_of(head)
    rest = np.array([v.co for v in ob.data.vertices])
    ob.shape_key_add(name="Basis", from_mix=False)
    key = ob.shape_key_add(name="jawOpen", from_mix=False)
    key.value = 0.0
    key.data.foreach_set("co", _jaw_rotation(frame, rest).astype(np.float32).ravel())
    fc = key.driver_add("value")
    fc.driver.type = "AVERAGE"
    var = fc.driver.variables.new()
    var.type = "SINGLE_PROP"
    var.targets[0].id_type = "KEY"
    var.targets[0].id = head.data.shape_keys
    var.targets[0].data_path = 'key_blocks["jawOpen"].value'


def mouth_frame_of(head) -> articulation.MouthFrame:
    """The head's mouth frame, from its landmark groups (the one its rig was made with)."""
    rest = rest_positions(head).astype(np.float64)
    return articulation.mouth_frame(rest, landmarks_of(head, rest))


def _add_mouth(head, build: HeadBuild) -> dict[str, object]:
    frame = mouth_frame_of(head)
    v = build.verts
    upper, lower = v[build.landmarks["W2S lip_upper"][0]], v[build.landmarks["W2S lip_lower"][0]]
    slit = (upper + lower) / 2
    w = frame.width
    teeth = material("Teeth", (0.86, 0.83, 0.74), roughness=0.3)
    gums = material("Gums", (0.55, 0.16, 0.17), roughness=0.4)
    back = 0.11 * w  # the incisors' front, behind the lips
    parts = {}
    for name, down in (("Teeth_Upper", True), ("Teeth_Lower", False)):
        # the root line: the upper row's above the slit, the lower row's below it (their edges overlap)
        front = slit - frame.forward * back + frame.up * (0.1 * w if down else -0.15 * w)
        if not down:
            front = front - frame.forward * 0.055 * w  # the lower row sits inside the upper one
        verts, faces, index = _dental_arch(frame, front, 0.36 * w, 0.42 * w, 0.14 * w, 0.06 * w, down)
        parts[name] = _mesh_object(name, verts, faces, head, [teeth, gums], index, subdivide=2)
    tongue_verts, tongue_faces, _ = _sphere((0.25 * w, 0.38 * w, 0.09 * w), rings=12, segments=24)
    # long axis backwards, resting on the floor of the mouth behind the lower teeth
    basis = np.stack([frame.lateral, -frame.forward, frame.up], 1)
    centre = slit - frame.forward * (back + 0.4 * w) - frame.up * 0.2 * w
    tongue_verts = tongue_verts @ basis.T + centre
    parts["Tongue"] = _mesh_object("Tongue", tongue_verts, tongue_faces, head,
                                   [material("Tongue", (0.62, 0.2, 0.2), roughness=0.45, subsurface=0.2)])
    # the back wall of the mouth: the back half of an ellipsoid, open towards the lips (a closed one
    # would hide the teeth and tongue behind its front wall)
    cavity_verts, cavity_faces, angle = _sphere((0.42 * w, 0.32 * w, 0.4 * w), rings=12, segments=24)
    keep = [f for f, a in zip(cavity_faces, angle, strict=True) if a < np.pi / 2]  # +y of the sphere points backwards
    cavity_verts = cavity_verts[:, [0, 2, 1]] @ basis.T + slit - frame.forward * 0.3 * w - frame.up * 0.06 * w
    parts["Mouth"] = _mesh_object("Mouth", cavity_verts, keep, head,
                                  [material("Mouth", (0.16, 0.04, 0.04), roughness=0.6)])
    for name in ("Teeth_Lower", "Tongue"):
        follow_jaw(parts[name], head)
    return parts


def _smooth(x: np.ndarray, a: float, b: float) -> np.ndarray:
    t = np.clip((x - a) / (b - a), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _hair(build: HeadBuild, hairline: float) -> tuple[np.ndarray, np.ndarray]:
    """(hair thickness in metres, hair colour weight 0..1) of each vertex: a short hair cap whose line
    runs from ``hairline`` above the forehead down to the ears and the nape, and two brows."""
    phi, theta = build.params[:, 0], build.params[:, 1]
    line = -0.1 + (hairline + 0.1) * _smooth(np.cos(phi), -0.3, 0.8)
    thickness = 0.005 * _smooth(theta - line, -0.02, 0.12)
    arc = EYE_ELEVATION + 0.15 + 0.03 * np.cos((np.abs(phi) - EYE_AZIMUTH) / 0.22 * np.pi / 2)
    brows = _smooth(0.2 - np.abs(np.abs(phi) - EYE_AZIMUTH - 0.02), 0.0, 0.05) * _smooth(
        0.03 - np.abs(theta - arc), 0.0, 0.015)
    return thickness, np.maximum(_smooth(theta - line, -0.035, 0.035), brows)


def _mix_hair(mat, hair) -> None:
    """Skin and hair in one material, mixed by the head's ``w2s_hair`` vertex attribute: a smooth
    hairline and brows at any grid size (per-face materials would make them staircases)."""
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = nodes["Principled BSDF"]
    weight = nodes.new("ShaderNodeAttribute")
    weight.attribute_name = HAIR_ATTRIBUTE
    mix = nodes.new("ShaderNodeMix")
    mix.data_type = "RGBA"
    mix.inputs[6].default_value = bsdf.inputs["Base Color"].default_value  # A (float inputs come first)
    mix.inputs[7].default_value = (*hair, 1.0)  # B
    links.new(weight.outputs["Fac"], mix.inputs["Factor"])
    links.new(mix.outputs[2], bsdf.inputs["Base Color"])


def _add_ears_and_neck(head, style: HeadStyle, skin) -> None:
    for side, sign in (("L", 1.0), ("R", -1.0)):
        verts, faces, _ = _sphere((0.007, 0.017, 0.028), rings=10, segments=16)
        tilt = np.radians(12)
        rot = np.array([[np.cos(tilt), 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]])
        rot[0, 0] = 1.0
        verts = verts @ rot.T + np.array([sign * (style.width * 0.97), 0.01, -0.005 * style.height / 0.118])
        _mesh_object(f"Ear_{side}", verts, faces, head, [skin])
    # a neck below the jaw, for the head to sit on (not parented: the head nods on it)
    n = 32
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    ring = np.stack([0.058 * np.cos(a), 0.02 + 0.055 * np.sin(a)], 1)
    verts = np.concatenate([np.c_[ring, np.full(n, z)] for z in (-0.35 * style.height, -2.2 * style.height)])
    faces = [(i, (i + 1) % n, n + (i + 1) % n, n + i) for i in range(n)]
    _mesh_object("Neck", verts, faces, None, [skin])


def build_character(name: str = "a", object_name: str = "Head"):
    """The dressed, rigged head of character ``name`` (``CHARACTERS``) in the current scene."""
    character = CHARACTERS[name]
    build = head_build(character.head)
    thickness, hair = _hair(build, character.hairline)
    build.verts += thickness[:, None] * build.verts / np.linalg.norm(build.verts, axis=1, keepdims=True)
    head = make_head_object(object_name, build)
    skin = material("Skin", character.skin, roughness=0.5, subsurface=0.12)
    head.data.materials.append(skin)
    head.data.materials.append(material("Lips", character.lips, roughness=0.35, subsurface=0.15))
    head.data.polygons.foreach_set("material_index", np.where(build.lip_faces, LIPS, SKIN).astype(np.int32))
    head.data.attributes.new(HAIR_ATTRIBUTE, "FLOAT", "POINT").data.foreach_set("value", hair.astype(np.float32))
    _mix_hair(skin, character.hair)
    add_articulation_rig(head)
    rest = build.verts.astype(np.float32)
    for key_name, delta in performance_keys(build, character.head.height).items():
        block = head.shape_key_add(name=key_name, from_mix=False)
        block.value = 0.0  # a new key starts at 1 in Blender: the face would start deformed
        block.slider_min, block.slider_max = 0.0, 1.0
        block.data.foreach_set("co", (rest + delta.astype(np.float32)).ravel())
    mod = head.modifiers.new("Subdivision", "SUBSURF")
    mod.levels, mod.render_levels = 1, 2
    _add_eyes(head, build, character.iris)
    _add_mouth(head, build)
    _add_ears_and_neck(head, character.head, skin)
    return head
