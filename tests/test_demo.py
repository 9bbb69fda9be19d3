"""The README's main job: the demo scene from the shipped default bundle, through the real add-on and server."""

from __future__ import annotations

import subprocess
import sys

import aud
import bpy  # noqa: I001
import numpy as np
import pytest
from mathutils import Vector

from tests.helpers import REPO
from wav2sem_blender.compat import action_fcurves, all_strips, fcurves_of
from wav2sem_contract.controls import CONTROLS
from wav2sem_contract.performance import PERFORMANCE_CONTROLS

SIZE, FPS, SECONDS = 64, 6, 1.0  # a small, short animated preview: the test renders only a piece


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    proc = subprocess.run([sys.executable, str(REPO / "wav2sem_blender" / "demo.py"), "--out", str(out),
                           "--frames", "2", "--size", str(SIZE), "--animation-fps", str(FPS),
                           "--animation-seconds", str(SECONDS)], cwd=REPO, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


def evaluated_vertices(ob) -> np.ndarray:
    depsgraph = bpy.context.evaluated_depsgraph_get()
    mesh = ob.evaluated_get(depsgraph).to_mesh()
    co = np.array([ob.matrix_world @ v.co for v in mesh.vertices])
    ob.evaluated_get(depsgraph).to_mesh_clear()
    return co


def open_demo(out):
    bpy.ops.wm.open_mainfile(filepath=str(out / "demo.blend"))
    return bpy.context.scene, bpy.data.objects["Head"]


def test_demo_builds_the_scene_and_a_preview(demo):
    out, stdout = demo
    assert "16 controls" in stdout and "performance layer: 15 face controls + head motion" in stdout
    preview = bpy.data.images.load(str(out / "preview.png"))
    assert tuple(preview.size) == (2 * SIZE, SIZE)
    bpy.data.images.remove(preview)

    scene, head = open_demo(out)
    keys = head.data.shape_keys
    assert set(CONTROLS) | set(PERFORMANCE_CONTROLS) <= set(keys.key_blocks.keys())
    paths = {fc.data_path for fc in fcurves_of(keys, create=False)}
    assert {f'key_blocks["{n}"].value' for n in CONTROLS} <= paths
    assert [s.frame_start for s in all_strips(scene) if s.type == "SOUND"] == [scene.frame_start]
    assert scene.frame_end >= 100  # the 4 s sentence at 30 fps
    # the performance layer's blinks are on their own NLA track, and they close the eyes at least once
    track = keys.animation_data.nla_tracks["W2S Performance"]
    blink = next(fc for s in track.strips for fc in action_fcurves(s.action)
                 if fc.data_path == 'key_blocks["eyeBlink_L"].value')
    assert max(k.co[1] for k in blink.keyframe_points) > 0.9
    # the jaw moves: the evaluated chin differs between frames (on the mesh before subdivision)
    for mod in head.modifiers:
        mod.show_viewport = False
    chin = head.vertex_groups["W2S chin"].index
    index = next(v.index for v in head.data.vertices if any(g.group == chin for g in v.groups))
    heights = []
    for frame in range(scene.frame_start, scene.frame_end, 5):
        scene.frame_set(frame)
        heights.append(evaluated_vertices(head)[index, 2])
    assert np.ptp(heights) > 0.002  # metres


def test_demo_head_has_a_mouth_and_eyes_that_move(demo):
    out, _ = demo
    scene, head = open_demo(out)
    parts = {name: bpy.data.objects.get(name) for name in
             ("Teeth_Upper", "Teeth_Lower", "Tongue", "Eye_L", "Eye_R")}
    assert all(ob is not None and ob.parent == head for ob in parts.values()), parts
    lips = head.data.materials.find("Lips")
    assert lips > 0 and any(p.material_index == lips for p in head.data.polygons)
    # drive the keys by hand: without the animation, the values set here are the ones evaluated
    head.data.shape_keys.animation_data_clear()
    head.animation_data_clear()
    blocks = head.data.shape_keys.key_blocks

    def set_keys(**values):
        for block in blocks[1:]:
            block.value = values.get(block.name, 0.0)
        bpy.context.view_layer.update()

    # the lower teeth and the tongue follow the jaw; the upper teeth stay with the skull
    set_keys()
    rest = {name: evaluated_vertices(parts[name]).mean(0) for name in ("Teeth_Upper", "Teeth_Lower", "Tongue")}
    set_keys(jawOpen=1.0)
    for name in ("Teeth_Lower", "Tongue"):
        assert evaluated_vertices(parts[name]).mean(0)[2] < rest[name][2] - 0.003, name
    assert np.abs(evaluated_vertices(parts["Teeth_Upper"]).mean(0) - rest["Teeth_Upper"]).max() < 1e-6

    # a blink puts the lid between the camera and the eyeball, and no lid vertex enters the eyeball
    camera = scene.camera.matrix_world.translation
    for side in ("L", "R"):
        eye = parts[f"Eye_{side}"]
        ball = evaluated_vertices(eye)
        centre, radius = ball.mean(0), np.linalg.norm(ball - ball.mean(0), axis=1).max()

        def first_hit(centre=centre):
            depsgraph = bpy.context.evaluated_depsgraph_get()
            hit, _, _, _, ob, _ = scene.ray_cast(depsgraph, camera, (Vector(centre) - camera).normalized())
            return ob.name if hit else None

        set_keys()
        assert first_hit() == eye.name
        set_keys(**{f"eyeBlink_{side}": 1.0})
        assert first_hit() == head.name
        distance = np.linalg.norm(evaluated_vertices(head) - centre, axis=1)
        assert distance.min() > radius


def test_demo_renders_an_mp4_with_sound_and_a_gif(demo):
    out, _ = demo
    frames = round(SECONDS * FPS)
    clip = bpy.data.movieclips.load(str(out / "preview.mp4"))
    assert clip.frame_duration == frames and tuple(clip.size) == (SIZE, SIZE)
    sound = aud.Sound(str(out / "preview.mp4"))  # fails on a file without an audio stream
    samples = np.asarray(sound.data())
    assert abs(len(samples) / sound.specs[0] - SECONDS) < 0.1
    assert np.sqrt(np.mean(samples**2)) > 1e-3  # the speech, not silence
    image = pytest.importorskip("PIL.Image").open(out / "preview.gif")
    assert image.n_frames == frames and image.size == (SIZE, SIZE)
