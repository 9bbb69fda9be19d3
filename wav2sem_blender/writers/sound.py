"""The audio as a sound strip at the start frame, so playback is in sync with the motion."""

from __future__ import annotations

import bpy

from ..compat import all_strips, strips_of
from . import PREFIX


def strip_name(ob: bpy.types.Object) -> str:
    return f"{PREFIX}{ob.name}"


def add_sound_strip(scene: bpy.types.Scene, ob: bpy.types.Object, audio: str, first_frame: int, last_frame: float,
                    pack: bool = False):
    """Add (or replace) this object's lip-sync sound strip; extend the frame range if needed.

    The strip points at the audio by a path relative to the .blend. With ``pack`` the sound's
    data also goes into the .blend, so the file keeps its sound when it is moved or sent on
    without the recording (``strip.sound.packed_file`` says whether it worked). Returns the
    strip, or None when this Blender build has no audio support (the 4.2 wheel).
    """
    if not bpy.app.build_options.audaspace:
        return None
    for strip in all_strips(scene):
        if strip.name == strip_name(ob):
            strips_of(scene).remove(strip)
    strips = strips_of(scene)
    used = {s.channel for s in all_strips(scene) if s.frame_final_start < last_frame + 1 and s.frame_final_end > first_frame}
    channel = next(c for c in range(1, 129) if c not in used)
    strip = strips.new_sound(strip_name(ob), bpy.path.relpath(audio) if bpy.data.filepath else audio, channel, int(first_frame))
    if pack:
        try:
            strip.sound.pack()
        except RuntimeError:  # the strip still plays from the file; the caller sees packed_file is None
            pass
    # "Play Every Frame" (the factory default) drifts from the audio; sync to it instead.
    scene.sync_mode = "AUDIO_SYNC"
    end = max(int(round(last_frame)), strip.frame_final_end - 1)
    if scene.frame_end < end:
        scene.frame_end = end
    if scene.frame_start > first_frame:
        scene.frame_start = int(first_frame)
    return strip
