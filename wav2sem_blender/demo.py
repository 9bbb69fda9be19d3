"""The README's main job: a demo scene animated by the embedded default model.

    python wav2sem_blender/demo.py [--out out/demo] [--audio speech.wav] [--head a|b] [--frames 6]
        [--size 320] [--samples 8] [--animation-fps 12] [--animation-seconds S] [--no-animation] [--no-gif]

Builds a procedural character (``demo_head``: no third-party asset) with the articulation rig
(shape keys named like the model's controls) and the performance layer's keys, runs Generate Lip
Sync on the sample sentence with the embedded default bundle (through the real server) with the
performance layer on (blinks, brows, head motion), adds the sound strip, saves ``demo.blend``,
renders a strip of frames (Cycles on the CPU) to ``preview.png`` and the animated preview:
``preview.mp4`` (H.264 with the sentence's sound) and ``preview.gif``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "assets" / "sample_sentence.wav"
PERFORMANCE = 0.7  # the demo shows the layer clearly; the panel's default is 0.5


def build_scene(character: str = "a"):
    """A fresh scene with the character, a camera on the face and three lights."""
    import bpy

    import wav2sem_blender
    from wav2sem_blender.demo_head import build_character

    bpy.ops.wm.read_factory_settings(use_empty=True)
    if not hasattr(bpy.types, "WAV2SEM_OT_generate"):
        wav2sem_blender.register()
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 30, 1.0
    scene.frame_start = scene.frame_end = 1  # Generate extends the range to the animation's length
    head = build_character(character)
    target = bpy.data.objects.new("Face", None)
    target.location = (0.0, -0.05, -0.006)
    scene.collection.objects.link(target)
    cam_data = bpy.data.cameras.new("Camera")
    cam_data.lens = 80
    cam = bpy.data.objects.new("Camera", cam_data)
    cam.location = (0.2, -0.62, 0.05)
    track = cam.constraints.new("TRACK_TO")
    track.target, track.track_axis, track.up_axis = target, "TRACK_NEGATIVE_Z", "UP_Y"
    scene.collection.objects.link(cam)
    scene.camera = cam
    for name, location, energy, size in (("Key", (0.4, -0.5, 0.35), 16.0, 0.5), ("Fill", (-0.5, -0.35, 0.0), 5.0, 0.8),
                                         ("Rim", (-0.15, 0.45, 0.35), 18.0, 0.4)):
        light_data = bpy.data.lights.new(name, "AREA")
        light_data.energy, light_data.size = energy, size
        light = bpy.data.objects.new(name, light_data)
        light.location = location
        light.constraints.new("TRACK_TO").target = target
        scene.collection.objects.link(light)
    world = bpy.data.worlds.new("World")
    if world.node_tree is None:  # Blender 5.0 makes the node tree with the world; 4.x on request
        world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.09, 0.1, 0.12, 1.0)
    scene.world = world
    try:  # more contrast and colour than plain AgX (the look's name as Blender 4.x/5.x spells it)
        scene.view_settings.look = "AgX - Punchy"
    except TypeError:
        pass
    return head


def strip_frames(scene, count: int) -> list[float]:
    last = scene.frame_end
    return [float(round(1 + i * (last - 1) / max(1, count - 1))) for i in range(count)]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "out" / "demo"))
    parser.add_argument("--audio", default=str(SAMPLE))
    parser.add_argument("--head", default="a", choices=["a", "b"], help="which procedural character")
    parser.add_argument("--frames", type=int, default=6, help="frames in the still strip (0: none)")
    parser.add_argument("--size", type=int, default=320, help="pixels (square) of each rendered frame")
    parser.add_argument("--samples", type=int, default=8, help="Cycles samples per pixel (denoised)")
    parser.add_argument("--animation", action=argparse.BooleanOptionalAction, default=True,
                        help="render the animated preview (MP4 with sound, and a GIF)")
    parser.add_argument("--animation-fps", type=int, default=12)
    parser.add_argument("--animation-seconds", type=float, help="render only this much of the animation")
    parser.add_argument("--gif", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--bundle", help="model bundle (default: the embedded default)")
    args = parser.parse_args(argv[argv.index("--") + 1 :] if "--" in argv else argv)
    if args.size < 16 or args.size % 2:
        parser.error("--size must be an even number of pixels, 16 or more (H.264 needs even sizes)")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import bpy

    from wav2sem_blender import demo_render, runtime
    from wav2sem_contract.errors import Wav2SemError

    started = time.monotonic()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    build_scene(args.head)
    kwargs = {"audio": str(Path(args.audio).resolve()), "object": "Head", "mode": "CONTROLS",
              "performance": PERFORMANCE}
    if args.bundle:
        kwargs["bundle"] = str(Path(args.bundle).resolve())
    try:
        bpy.ops.wav2sem.generate(**kwargs)
    except RuntimeError:
        print(f"error: {bpy.context.window_manager.wav2sem_status.message}", file=sys.stderr)
        return 1
    finally:
        runtime.shutdown()
    summary = bpy.context.window_manager.wav2sem_status.message
    bpy.ops.wm.save_as_mainfile(filepath=str(out / "demo.blend"))
    scene = bpy.context.scene
    demo_render.setup_cycles(scene, args.size, args.samples)
    made = [out / "demo.blend"]
    timings = []
    if args.frames:
        t = time.monotonic()
        made.append(demo_render.render_strip(scene, out, strip_frames(scene, args.frames)))
        timings.append(f"strip {time.monotonic() - t:.0f} s")
    if args.animation:
        t = time.monotonic()
        try:
            mp4, gif, count = demo_render.render_preview(scene, out, args.animation_fps, args.animation_seconds,
                                                         gif=args.gif)
        except Wav2SemError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        made += [p for p in (mp4, gif) if p is not None]
        timings.append(f"animation {count} frames {time.monotonic() - t:.0f} s")
    print(f"demo: {summary}; wrote {', '.join(str(p) for p in made)} ({'; '.join(timings) or 'no renders'}; "
          f"{time.monotonic() - started:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
