"""Per-scene settings (saved with the .blend) and per-session job status (on the WindowManager)."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

OUTPUT_MODES = [
    ("COMPACT", "Compact Shape Keys", "A few basis shape keys with one F-curve each: light and editable (default)"),
    ("PER_FRAME", "Shape Key per Frame", "One absolute shape key per frame, exact but heavy"),
    ("POINT_CACHE", "Point Cache", "Mesh keyframes in a .pc2 file next to the .blend, with a Mesh Cache modifier"),
    ("CONTROLS", "Control Curves", "F-curves on the object's own shape keys named like the model's controls"),
]
FPS_POLICIES = [
    ("RESAMPLE", "Keep Scene Rate", "Resample the motion in time to the scene's frame rate"),
    ("MATCH", "Use Model Rate", "Set the scene's frame rate to the model's"),
]

# Subjects of recently inspected bundles, for the style search fields.
SUBJECTS: dict[str, list[str]] = {}


def _subjects(settings, context, edit_text):
    return SUBJECTS.get(bpy.path.abspath(settings.bundle), [])


def _is_mesh(settings, obj) -> bool:
    return obj.type == "MESH"


class WAV2SEM_PG_settings(bpy.types.PropertyGroup):
    audio: StringProperty(name="Audio", description="Voice recording (WAV, FLAC, OGG, MP3)", subtype="FILE_PATH")
    target: PointerProperty(name="Target", description="Head mesh to animate", type=bpy.types.Object, poll=_is_mesh)
    bundle: StringProperty(
        name="Model", description="Model bundle folder (empty: the embedded default)", subtype="DIR_PATH"
    )
    subject: StringProperty(name="Style", description="Speaking style (a training subject)", search=_subjects)
    subject2: StringProperty(name="Blend With", description="Second style to blend with", search=_subjects)
    blend: FloatProperty(name="Blend", description="Weight of the first style", default=1.0, min=0.0, max=1.0)
    use_semantic: BoolProperty(name="Wav2Sem", description="Fuse the utterance's semantic vector", default=True)
    output_mode: EnumProperty(name="Output", items=OUTPUT_MODES, default="COMPACT")
    use_scene_start: BoolProperty(name="Scene Start", description="Start at the scene's first frame", default=True)
    start_frame: IntProperty(name="Start Frame", default=1)
    fps_policy: EnumProperty(name="Frame Rate", items=FPS_POLICIES, default="RESAMPLE")
    add_sound: BoolProperty(name="Add Sound Strip", description="Add the audio to the sequencer", default=True)
    last_summary: StringProperty(name="Last Result")


class WAV2SEM_PG_status(bpy.types.PropertyGroup):
    running: BoolProperty(default=False)
    cancel_requested: BoolProperty(default=False)
    progress: FloatProperty(subtype="PERCENTAGE", min=0.0, max=100.0, default=0.0)
    stage: StringProperty()
    message: StringProperty()


classes = (WAV2SEM_PG_settings, WAV2SEM_PG_status)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.wav2sem = PointerProperty(type=WAV2SEM_PG_settings)
    bpy.types.WindowManager.wav2sem_status = PointerProperty(type=WAV2SEM_PG_status)


def unregister() -> None:
    del bpy.types.WindowManager.wav2sem_status
    del bpy.types.Scene.wav2sem
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
