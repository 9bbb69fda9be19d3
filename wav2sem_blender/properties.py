"""Per-scene settings (saved with the .blend) and per-session job status (on the WindowManager)."""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from .lipsync import CLOSED_STATES
from .writers.registry import DEFAULT_MODE, OUTPUT_MODES

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


class WAV2SEM_PG_lipsync_entry(bpy.types.PropertyGroup):
    """One /p b m/ of the last lip-sync report (wav2sem_contract.lipsync), its frame in the scene."""

    phone: StringProperty(name="Phone")
    word: StringProperty(name="Word")
    start: FloatProperty(name="Start", subtype="TIME_ABSOLUTE")
    end: FloatProperty(name="End", subtype="TIME_ABSOLUTE")
    frame: IntProperty(name="Frame", description="The scene frame of the bilabial's middle")
    state: EnumProperty(name="Lips", items=CLOSED_STATES, default="UNMEASURED")
    peak_close: FloatProperty(name="Peak mouthClose", description="Highest mouthClose in the bilabial (-1: none)",
                              default=-1.0)


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
    output_mode: EnumProperty(name="Output", items=OUTPUT_MODES, default=DEFAULT_MODE)
    use_scene_start: BoolProperty(name="Scene Start", description="Start at the scene's first frame", default=True)
    start_frame: IntProperty(name="Start Frame", default=1)
    fps_policy: EnumProperty(name="Frame Rate", items=FPS_POLICIES, default="RESAMPLE")
    add_sound: BoolProperty(name="Add Sound Strip", description="Add the audio to the sequencer", default=True)
    pack_audio: BoolProperty(
        name="Pack Audio",
        description="Store the audio inside the .blend, so the file keeps its sound when it is moved "
        "without the recording (the .blend grows by the audio's size)",
        default=False,
    )
    # On by default in the panel ("lips only" is a top complaint about peer tools); it lands on NLA tracks of
    # its own, so it is muted in one click. The request's default stays 0 for scripts and older clients.
    performance: FloatProperty(
        name="Performance", description="Intensity of the blinks, brow raises, eye widening, cheek and nose "
        "motion and head nods generated from the audio (0: mouth only); written as the NLA tracks "
        "'W2S Performance' and 'W2S Head Motion'", default=0.5, min=0.0, max=1.0, subtype="FACTOR",
    )
    seed: IntProperty(name="Seed", description="Seed of the performance layer: the same seed, the same blinks",
                      default=0, min=0)
    head_motion: BoolProperty(
        name="Head Motion", description="Also nod and tilt the head with the performance layer (its head bone "
        "when an armature deforms it, else the object's delta rotation about its origin)", default=True,
    )
    # Artist controls (wav2sem_contract.artist): applied by the server after the model; the values used are
    # stored on the object with the result (wav2sem_strength, wav2sem_smoothing, wav2sem_gains)
    strength: FloatProperty(
        name="Strength", description="Articulation strength: scales the mouth's motion from the neutral pose "
        "(1: as the model made it)", default=1.0, min=0.0, max=2.0,
    )
    smoothing: FloatProperty(
        name="Smoothing", description="Zero-phase smoothing of the motion over time, its width in seconds "
        "(0: none); the lip closures of /p b m/ are kept", default=0.0, min=0.0, max=0.25, subtype="TIME_ABSOLUTE",
    )
    gains: StringProperty(
        name="Gains", description="Scale named controls, e.g. 'jawOpen=1.2, mouthSmile_L=0.8' (empty: none; "
        "control models only)",
    )
    transcript: StringProperty(
        name="Transcript", description="The words that are said (the dialogue line): the lips close at every "
        "/p b m/ and Wav2Sem gets the sentence's meaning from the text; empty: from the audio alone",
    )
    transcript_text: PointerProperty(
        name="Transcript Text", type=bpy.types.Text,
        description="A text block with the words that are said (for a longer script); used instead of the line",
    )
    last_summary: StringProperty(name="Last Result")
    use_report: BoolProperty(
        name="Lip-Sync Report", description="After generating, check every /p b m/ (from the transcript, else "
        "from speech recognition) and list whether the lips closed; off saves the recognition's time",
        default=True,
    )
    use_close_recognised: BoolProperty(
        name="Close Heard p/b/m", description="Without a transcript, also close the lips at every /p b m/ of the "
        "words speech recognition hears, as a transcript does (a misheard word can close them where nothing is "
        "said; control models only)",
        default=False,
    )
    # the last report, saved with the .blend: its entries for the panel's list, its summary line, its JSON
    lipsync: CollectionProperty(type=WAV2SEM_PG_lipsync_entry)
    lipsync_index: IntProperty(name="Bilabial")
    lipsync_summary: StringProperty(name="Lip Sync")
    lipsync_json: StringProperty(name="Lip-Sync Report")
    lipsync_object: StringProperty(name="Lip-Sync Object", description="The object the report was made for")


RETARGET_MODES = [
    ("BAKE", "Bake", "Transfer the source's shape keys and their F-curves; the source can then be deleted"),
    ("LIVE", "Live", "A Surface Deform modifier that follows the source mesh while it exists"),
]
JAW_AXES = [
    ("X", "X", "Rotate about the bone's local X axis"),
    ("Y", "Y", "Rotate about the bone's local Y axis"),
    ("Z", "Z", "Rotate about the bone's local Z axis"),
    ("-X", "-X", "Rotate about the bone's local X axis, the other way"),
    ("-Y", "-Y", "Rotate about the bone's local Y axis, the other way"),
    ("-Z", "-Z", "Rotate about the bone's local Z axis, the other way"),
]


def _is_armature(settings, obj) -> bool:
    return obj.type == "ARMATURE"


class WAV2SEM_PG_retarget(bpy.types.PropertyGroup):
    """Settings of the Retarget sub-panel (the operators take the same names as arguments)."""

    source: PointerProperty(
        name="Source", description="The animated head (FLAME, or any mesh with lip sync shape keys)",
        type=bpy.types.Object, poll=_is_mesh,
    )
    target: PointerProperty(
        name="Target", description="The custom head or rig to drive", type=bpy.types.Object, poll=_is_mesh
    )
    vertex_group: StringProperty(
        name="Vertex Group", description="Only the target's vertices in this group follow (empty: all)"
    )
    max_distance: FloatProperty(
        name="Max Distance", description="Target vertices farther than this from the source do not follow "
        "(0: 2% of the source's size)", default=0.0, min=0.0, subtype="DISTANCE", unit="LENGTH",
    )
    falloff: FloatProperty(
        name="Falloff", description="Distance over which the following fades out beyond Max Distance "
        "(0: as much as Max Distance)", default=0.0, min=0.0, subtype="DISTANCE", unit="LENGTH",
    )
    mode: EnumProperty(name="Transfer", items=RETARGET_MODES, default="BAKE")
    keys: StringProperty(
        name="Keys", description="Target shape keys to solve for, comma separated (empty: all but the basis)"
    )
    smooth: FloatProperty(
        name="Smoothness", description="Temporal smoothing of the solved weights", default=0.01, min=0.0, soft_max=10.0
    )
    mapping_text: StringProperty(
        name="Mapping", description="A text block name or inline lines like 'jawOpen = aa * 0.8, oh * 0.3' "
        "(empty: controls map to keys of the same name)",
    )
    smoothing: FloatProperty(
        name="Smoothing", description="Smoothing of the mapped curves, in seconds", default=0.0, min=0.0, soft_max=0.2
    )
    armature: PointerProperty(
        name="Armature", description="The rig whose jaw bone to animate", type=bpy.types.Object, poll=_is_armature
    )
    bone: StringProperty(name="Jaw Bone", description="The bone that opens the jaw")
    axis: EnumProperty(name="Axis", items=JAW_AXES, default="X")
    max_angle: FloatProperty(
        name="Max Angle", description="Rotation at jawOpen = 1", default=0.3490658503988659,
        min=-3.14159, max=3.14159, subtype="ANGLE",
    )
    last_summary: StringProperty(name="Last Result")


class WAV2SEM_PG_status(bpy.types.PropertyGroup):
    running: BoolProperty(default=False)
    cancel_requested: BoolProperty(default=False)
    progress: FloatProperty(subtype="PERCENTAGE", min=0.0, max=100.0, default=0.0)
    stage: StringProperty()
    message: StringProperty()


classes = (WAV2SEM_PG_lipsync_entry, WAV2SEM_PG_settings, WAV2SEM_PG_retarget, WAV2SEM_PG_status)


_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register() -> None:
    _register_classes()
    bpy.types.Scene.wav2sem = PointerProperty(type=WAV2SEM_PG_settings)
    bpy.types.Scene.wav2sem_retarget = PointerProperty(type=WAV2SEM_PG_retarget)
    bpy.types.WindowManager.wav2sem_status = PointerProperty(type=WAV2SEM_PG_status)


def unregister() -> None:
    del bpy.types.WindowManager.wav2sem_status
    del bpy.types.Scene.wav2sem_retarget
    del bpy.types.Scene.wav2sem
    _unregister_classes()
