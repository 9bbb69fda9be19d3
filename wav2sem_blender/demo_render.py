"""Rendering the demo: a still strip, and the animated preview as an MP4 (with the sound) and a GIF.

Frames are rendered with Cycles on the CPU (denoised with OpenImageDenoise where the build has it,
so a few samples suffice). The animated preview samples the animation at its own frame rate
(``fps``, lower than the scene's: a 12 fps preview renders 2.5 times fewer frames than the 30 fps
scene), so frames fall between the scene's; the MP4 is then cut by Blender's sequencer in a scene
of its own (an image strip of those frames and the sound strip of the recording) and written by
its FFmpeg output: H.264 with AAC sound. Blender writes no GIF: Pillow does (``pip install
pillow``; ``scripts/setup.sh --demo`` installs it).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import bpy
import numpy as np

from wav2sem_contract.errors import Wav2SemError

from .compat import all_strips, strips_of


def setup_cycles(scene, size: int, samples: int) -> None:
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    try:  # the CPU denoiser: few samples then suffice (a build without it renders noisier)
        import _cycles

        scene.cycles.use_denoising = bool(getattr(_cycles, "with_openimagedenoise", False))
        if scene.cycles.use_denoising:
            scene.cycles.denoiser = "OPENIMAGEDENOISE"
            # the fast quality without prefiltering costs ~1 s a frame on 2 cores; the default ~15 s
            scene.cycles.denoising_quality, scene.cycles.denoising_prefilter = "FAST", "NONE"
    except (ImportError, TypeError):
        scene.cycles.use_denoising = False
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.use_persistent_data = True  # frame after frame, only what moved is synced again
    scene.cycles.max_bounces, scene.cycles.diffuse_bounces, scene.cycles.glossy_bounces = 4, 2, 2


def render_at(scene, frame: float, path: Path) -> Path:
    """Render the scene at ``frame`` (fractions allowed: the animation is evaluated between frames)."""
    whole = math.floor(frame)
    scene.frame_set(whole, subframe=frame - whole)
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    return path


def _pixels(path: Path) -> np.ndarray:
    image = bpy.data.images.load(str(path))
    w, h = image.size
    pixels = np.empty(w * h * 4, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    bpy.data.images.remove(image)
    return pixels.reshape(h, w, 4)


def render_strip(scene, out: Path, frames: list[float], name: str = "preview.png") -> Path:
    """Render ``frames`` and join them side by side into one PNG."""
    tiles = []
    for frame in frames:
        path = render_at(scene, frame, out / f"strip_{frame:08.2f}.png")
        tiles.append(_pixels(path))
        path.unlink()
    strip = np.concatenate(tiles, axis=1)
    image = bpy.data.images.new(name, strip.shape[1], strip.shape[0], alpha=True)
    image.pixels.foreach_set(strip.ravel())
    image.filepath_raw = str(out / name)
    image.file_format = "PNG"
    image.save()
    bpy.data.images.remove(image)
    return out / name


def preview_times(scene, fps: float, seconds: float | None = None) -> list[float]:
    """Scene frames to render for a preview at ``fps`` of the whole range (or its first ``seconds``)."""
    duration = (scene.frame_end - scene.frame_start + 1) / (scene.render.fps / scene.render.fps_base)
    if seconds is not None:
        duration = min(duration, seconds)
    count = max(1, int(round(duration * fps)))
    step = scene.render.fps / scene.render.fps_base / fps
    return [scene.frame_start + i * step for i in range(count)]


def render_frames(scene, folder: Path, times: list[float]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [render_at(scene, t, folder / f"frame_{i:04d}.png") for i, t in enumerate(times)]


def write_gif(frames: list[Path], path: Path, fps: float, colours: int = 128) -> Path:
    """An endlessly looping GIF of ``frames`` (one palette for all, no dithering: smaller and steadier)."""
    try:
        from PIL import Image
    except ImportError:
        raise Wav2SemError("no_pillow", "Writing the GIF preview needs Pillow, which is not installed.",
                           "Run ./scripts/setup.sh --demo (or pip install pillow), or pass --no-gif.") from None
    images = [Image.open(p).convert("RGB") for p in frames]
    palette = images[len(images) // 2].quantize(colours, method=Image.Quantize.MEDIANCUT)
    quantised = [im.quantize(palette=palette, dither=Image.Dither.NONE) for im in images]
    quantised[0].save(path, save_all=True, append_images=quantised[1:], duration=round(1000 / fps), loop=0,
                      optimize=True)
    return path


def write_mp4(frames: list[Path], audio: Path | None, path: Path, fps: int, size: int) -> Path:
    """H.264 + AAC through Blender's FFmpeg output: the frames as an image strip, the audio as a sound
    strip, in a sequencer scene of their own (removed afterwards)."""
    scene = bpy.data.scenes.new("W2S Preview")
    try:
        scene.render.fps, scene.render.fps_base = fps, 1.0
        scene.render.resolution_x = scene.render.resolution_y = size
        scene.render.resolution_percentage = 100
        strips = strips_of(scene)
        image = strips.new_image("frames", str(frames[0]), 1, 1)
        for frame in frames[1:]:
            image.elements.append(frame.name)
        if audio is not None:
            strips.new_sound("sound", str(audio), 2, 1)
        scene.frame_start, scene.frame_end = 1, len(frames)
        settings = scene.render.image_settings
        if hasattr(settings, "media_type"):  # 5.0: the file format list depends on the media type
            settings.media_type = "VIDEO"
        settings.file_format = "FFMPEG"
        ffmpeg = scene.render.ffmpeg
        ffmpeg.format, ffmpeg.codec = "MPEG4", "H264"
        ffmpeg.constant_rate_factor, ffmpeg.ffmpeg_preset = "MEDIUM", "GOOD"
        ffmpeg.audio_codec = "AAC" if audio is not None else "NONE"
        ffmpeg.audio_channels, ffmpeg.audio_bitrate = "MONO", 96
        scene.render.filepath = str(path)
        scene.render.use_file_extension = False
        bpy.ops.render.render(animation=True, scene=scene.name)
    finally:
        bpy.data.scenes.remove(scene)
    return path


def scene_audio(scene) -> Path | None:
    """The file of the scene's first sound strip (the recording Generate added)."""
    for strip in all_strips(scene):
        if strip.type == "SOUND" and strip.sound is not None:
            return Path(bpy.path.abspath(strip.sound.filepath))
    return None


def render_preview(scene, out: Path, fps: int, seconds: float | None = None, gif: bool = True,
                   name: str = "preview") -> tuple[Path, Path | None, int]:
    """(MP4, GIF or None, frame count) of the animation, rendered at ``fps``."""
    times = preview_times(scene, fps, seconds)
    folder = out / f"{name}_frames"
    try:
        frames = render_frames(scene, folder, times)
        size = scene.render.resolution_x
        mp4 = write_mp4(frames, scene_audio(scene), out / f"{name}.mp4", fps, size)
        animated = write_gif(frames, out / f"{name}.gif", fps) if gif else None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return mp4, animated, len(times)
