"""The README's main job: a demo scene animated by the embedded default model.

    python wav2sem_blender/demo.py [--out out/demo] [--audio speech.wav] [--frames 6]

Builds a procedural head (no third-party asset), gives it the articulation rig (shape keys
named like the model's controls), runs Generate Lip Sync on the sample sentence with the
embedded default bundle (through the real server), adds the sound strip, saves
``demo.blend`` and renders a strip of preview frames (Cycles on the CPU) to ``preview.png``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "assets" / "sample_sentence.wav"


def _ensure_nodes(datablock) -> None:
    """A material's or world's default node tree. Blender 5.0 makes one for every new material
    and world, and deprecates ``use_nodes`` (to go in 6.0); 4.x makes one only on request."""
    if datablock.node_tree is None:
        datablock.use_nodes = True


def build_scene(audio: Path):
    import bpy

    import wav2sem_blender
    from wav2sem_blender.head import make_head_object
    from wav2sem_blender.rig import add_articulation_rig

    bpy.ops.wm.read_factory_settings(use_empty=True)
    if not hasattr(bpy.types, "WAV2SEM_OT_generate"):
        wav2sem_blender.register()
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 30, 1.0
    scene.frame_start = scene.frame_end = 1  # Generate extends the range to the animation's length
    head = make_head_object("Head")
    skin = bpy.data.materials.new("Skin")
    skin.diffuse_color = (0.8, 0.6, 0.5, 1.0)
    _ensure_nodes(skin)
    skin.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (0.45, 0.22, 0.15, 1.0)
    head.data.materials.append(skin)
    add_articulation_rig(head)
    # frame the lower face: the mouth is what moves
    target = bpy.data.objects.new("Mouth", None)
    target.location = (0.0, -0.09, -0.04)
    scene.collection.objects.link(target)
    cam_data = bpy.data.cameras.new("Camera")
    cam_data.lens = 80
    cam = bpy.data.objects.new("Camera", cam_data)
    cam.location = (0.1, -0.32, -0.01)
    track = cam.constraints.new("TRACK_TO")
    track.target, track.track_axis, track.up_axis = target, "TRACK_NEGATIVE_Z", "UP_Y"
    scene.collection.objects.link(cam)
    scene.camera = cam
    light_data = bpy.data.lights.new("Key", "AREA")
    light_data.energy = 12
    light_data.size = 0.4
    light = bpy.data.objects.new("Key", light_data)
    light.location = (0.3, -0.4, 0.25)
    light.constraints.new("TRACK_TO").target = target
    scene.collection.objects.link(light)
    world = bpy.data.worlds.new("World")
    _ensure_nodes(world)
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.18, 0.2, 0.24, 1.0)
    scene.world = world
    return head


def render_strip(out: Path, frames: list[int], size: int = 240) -> Path:
    """Render ``frames`` with Cycles (CPU) and join them side by side into one PNG."""
    import bpy
    import numpy as np

    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 16
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    tiles = []
    for frame in frames:
        scene.frame_set(frame)
        path = out / f"frame_{frame:04d}.png"
        scene.render.filepath = str(path)
        bpy.ops.render.render(write_still=True)
        image = bpy.data.images.load(str(path))
        pixels = np.empty(size * size * 4, dtype=np.float32)
        image.pixels.foreach_get(pixels)
        tiles.append(pixels.reshape(size, size, 4))
        bpy.data.images.remove(image)
        path.unlink()
    strip = np.concatenate(tiles, axis=1)
    image = bpy.data.images.new("preview", strip.shape[1], strip.shape[0], alpha=True)
    image.pixels.foreach_set(strip.ravel())
    image.filepath_raw = str(out / "preview.png")
    image.file_format = "PNG"
    image.save()
    return out / "preview.png"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "out" / "demo"))
    parser.add_argument("--audio", default=str(SAMPLE))
    parser.add_argument("--frames", type=int, default=6, help="preview frames to render")
    parser.add_argument("--bundle", help="model bundle (default: the embedded default)")
    args = parser.parse_args(argv[argv.index("--") + 1 :] if "--" in argv else argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import bpy

    from wav2sem_blender import runtime

    started = time.monotonic()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    build_scene(Path(args.audio))
    kwargs = {"audio": str(Path(args.audio).resolve()), "object": "Head", "mode": "CONTROLS"}
    if args.bundle:
        kwargs["bundle"] = str(Path(args.bundle).resolve())
    try:
        bpy.ops.wav2sem.generate(**kwargs)
    except RuntimeError:
        print(f"error: {bpy.context.window_manager.wav2sem_status.message}", file=sys.stderr)
        return 1
    summary = bpy.context.window_manager.wav2sem_status.message
    bpy.ops.wm.save_as_mainfile(filepath=str(out / "demo.blend"))
    scene = bpy.context.scene
    last = scene.frame_end
    frames = [int(round(1 + i * (last - 1) / max(1, args.frames - 1))) for i in range(args.frames)]
    preview = render_strip(out, frames)
    runtime.shutdown()
    print(f"demo: {summary}; saved {out / 'demo.blend'}; preview {preview} ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
