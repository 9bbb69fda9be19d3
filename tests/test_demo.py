"""The README's main job: the demo scene from the shipped default bundle, through the real add-on and server."""

from __future__ import annotations

import subprocess
import sys

import bpy  # noqa: I001
import numpy as np

from tests.helpers import REPO
from wav2sem_blender.compat import all_strips, fcurves_of
from wav2sem_contract.controls import CONTROLS


def test_demo_builds_the_scene_and_a_preview(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "wav2sem_blender" / "demo.py"), "--out", str(tmp_path),
                           "--frames", "2"], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "16 controls" in proc.stdout
    preview = bpy.data.images.load(str(tmp_path / "preview.png"))
    assert tuple(preview.size) == (480, 240)
    bpy.data.images.remove(preview)

    bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "demo.blend"))
    scene = bpy.context.scene
    head = bpy.data.objects["Head"]
    keys = head.data.shape_keys
    assert set(CONTROLS) <= set(keys.key_blocks.keys())
    paths = {fc.data_path for fc in fcurves_of(keys, create=False)}
    assert {f'key_blocks["{n}"].value' for n in CONTROLS} <= paths
    assert [s.frame_start for s in all_strips(scene) if s.type == "SOUND"] == [scene.frame_start]
    assert scene.frame_end >= 100  # the 4 s sentence at 30 fps
    # the jaw moves: the evaluated chin differs between frames
    chin = head.vertex_groups["W2S chin"].index
    index = next(v.index for v in head.data.vertices if any(g.group == chin for g in v.groups))
    heights = []
    for frame in range(scene.frame_start, scene.frame_end, 5):
        scene.frame_set(frame)
        mesh = head.evaluated_get(bpy.context.evaluated_depsgraph_get()).to_mesh()
        heights.append(mesh.vertices[index].co.z)
    assert np.ptp(heights) > 0.002  # metres
