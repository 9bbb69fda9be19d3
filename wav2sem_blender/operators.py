"""Generate Lip Sync (modal in the UI, blocking in background) and Cancel.

One operator serves both: ``invoke`` runs modal with a timer so Blender stays responsive
(scrub, cancel with Esc or the Cancel button); ``execute`` blocks, which is what background
mode and scripts get (``bpy.ops.wav2sem.generate(audio=..., object=..., ...)``). Nothing in
the scene changes until the result is in hand; then one writer puts it in, in one undo step.
"""

from __future__ import annotations

import os
import threading
import time

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from wav2sem_contract.artist import format_gains, parse_gains
from wav2sem_contract.errors import Wav2SemError
from wav2sem_contract.lipsync import heard_closures_line
from wav2sem_contract.paths import not_regular
from wav2sem_contract.request import InferRequest

from . import lipsync, runtime
from . import performance as performance_layer
from .generation import Generation, Plan
from .properties import FPS_POLICIES
from .writers import registry
from .writers.base import Timing
from .writers.common import scene_fps
from .writers.sound import add_sound_strip

# Set from any thread (a signal handler, a script, a test) to cancel the running generation;
# the UI's Cancel button sets it too.
CANCEL = threading.Event()
# The running generation, readable from other threads (progress displays, tests).
ACTIVE: list[Generation] = []
# The line this add-on shows in Blender's status bar now (empty when none), readable the same way.
STATUS_BAR: list[str] = []

# The client's and the server's stage names, in a user's words.
_STAGE_WORDS = {
    "starting": "starting",
    "starting server": "starting the server",
    "reading model": "reading the model",
    "queued": "waiting for the server",
    "load": "loading the model",
    "audio": "reading audio",
    "encode": "encoding audio",
    "decode": "decoding motion",
    "compact": "compacting",
    "performance": "making the performance layer",
    "align": "aligning the transcript",
    "report": "checking the lip closures",
    "write": "saving the result",
}


def status_line(stage: str, fraction: float) -> str:
    """The status bar's text for a stage and its fraction done, e.g. 'Lip sync: encoding audio 40%'."""
    return f"Lip sync: {_STAGE_WORDS.get(stage, stage)} {100 * min(max(fraction, 0.0), 1.0):.0f}%"


def show_in_status_bar(context: bpy.types.Context, text: str | None) -> None:
    """Put ``text`` in the window's status bar, or clear it with None. Harmless headless: there the
    workspace exists but no one sees it, and a context without a workspace is left alone."""
    workspace = getattr(context, "workspace", None)
    if workspace is not None:
        workspace.status_text_set(text)
    STATUS_BAR[:] = [text] if text else []

# Operator arguments that fall back to the scene's settings when not given.
_FROM_SETTINGS = {
    "audio": "audio",
    "bundle": "bundle",
    "subject": "subject",
    "subject2": "subject2",
    "blend": "blend",
    "semantic": "use_semantic",
    "mode": "output_mode",
    "fps_policy": "fps_policy",
    "add_sound": "add_sound",
    "pack_audio": "pack_audio",
    "performance": "performance",
    "seed": "seed",
    "head_motion": "head_motion",
    "strength": "strength",
    "smoothing": "smoothing",
    "gains": "gains",
    "lipsync": "use_report",
    "close_recognised": "use_close_recognised",
}


class WAV2SEM_OT_generate(bpy.types.Operator):
    """Animate the target head from the audio file with the Wav2Sem model"""

    bl_idname = "wav2sem.generate"
    bl_label = "Generate Lip Sync"
    bl_options = {"REGISTER", "UNDO"}

    audio: StringProperty(name="Audio", subtype="FILE_PATH", options={"SKIP_SAVE"})
    object: StringProperty(name="Object", description="Name of the mesh object", options={"SKIP_SAVE"})
    bundle: StringProperty(name="Model", subtype="DIR_PATH", options={"SKIP_SAVE"})
    subject: StringProperty(name="Style", options={"SKIP_SAVE"})
    subject2: StringProperty(name="Blend With", options={"SKIP_SAVE"})
    blend: FloatProperty(name="Blend", min=0.0, max=1.0, default=1.0, options={"SKIP_SAVE"})
    semantic: BoolProperty(name="Wav2Sem", default=True, options={"SKIP_SAVE"})
    mode: EnumProperty(name="Output", items=registry.OUTPUT_MODES, default=registry.DEFAULT_MODE,
                       options={"SKIP_SAVE"})
    fps_policy: EnumProperty(name="Frame Rate", items=FPS_POLICIES, default="RESAMPLE", options={"SKIP_SAVE"})
    start_frame: IntProperty(name="Start Frame", default=1, options={"SKIP_SAVE"})
    add_sound: BoolProperty(name="Add Sound Strip", default=True, options={"SKIP_SAVE"})
    pack_audio: BoolProperty(
        name="Pack Audio", description="Store the audio inside the .blend (the sound strip then needs no file)",
        default=False, options={"SKIP_SAVE"},
    )
    performance: FloatProperty(
        name="Performance", description="Intensity of blinks, brows, eyes, cheeks and head motion from the audio "
        "(0: mouth only)", min=0.0, max=1.0, default=0.5, options={"SKIP_SAVE"},
    )
    seed: IntProperty(name="Seed", description="Seed of the performance layer's random draws", min=0, default=0,
                      options={"SKIP_SAVE"})
    head_motion: BoolProperty(name="Head Motion", description="Also nod and tilt the head (its head bone when an "
                              "armature deforms it, else the object's delta rotation) with the performance layer", default=True, options={"SKIP_SAVE"})
    strength: FloatProperty(name="Strength", description="Articulation strength (1: as the model made it)",
                            min=0.0, max=2.0, default=1.0, options={"SKIP_SAVE"})
    smoothing: FloatProperty(name="Smoothing", description="Zero-phase smoothing in seconds (0: none)",
                             min=0.0, max=0.25, default=0.0, options={"SKIP_SAVE"})
    gains: StringProperty(name="Gains", description="e.g. 'jawOpen=1.2, mouthSmile_L=0.8' (default: the panel's)",
                          options={"SKIP_SAVE"})
    # not "report": that is the operator's own method
    lipsync: BoolProperty(name="Lip-Sync Report", description="Check every /p b m/ after generating "
                          "(default: the panel's setting)", default=True, options={"SKIP_SAVE"})
    close_recognised: BoolProperty(name="Close Heard p/b/m", description="Without a transcript, close the lips "
                                   "at the /p b m/ speech recognition hears (default: the panel's setting)",
                                   default=False, options={"SKIP_SAVE"})
    text: StringProperty(
        name="Transcript", description="The words that are said (default: the panel's Transcript; empty: audio only)",
        options={"SKIP_SAVE"},
    )

    _generation: Generation | None = None
    _timer = None

    @classmethod
    def poll(cls, context):
        status = context.window_manager.wav2sem_status
        return not status.running

    # -- shared by both paths -----------------------------------------------------------------
    def arg(self, context, name: str):
        if self.properties.is_property_set(name) or name not in _FROM_SETTINGS:
            return getattr(self, name)
        return getattr(context.scene.wav2sem, _FROM_SETTINGS[name])

    def target(self, context) -> bpy.types.Object:
        if self.object:
            ob = bpy.data.objects.get(self.object)
            if ob is None:
                raise Wav2SemError("no_target", f"There is no object called '{self.object}'.", "Check the name.")
        else:
            ob = context.scene.wav2sem.target or context.active_object
        if ob is None:
            raise Wav2SemError("no_target", "No target object is chosen.", "Pick the head mesh in the Lip Sync panel.")
        if ob.type != "MESH":
            raise Wav2SemError("not_mesh", f"'{ob.name}' is a {ob.type.lower()}, not a mesh.", "Pick a head mesh.")
        if ob.library is not None or ob.data.library is not None:
            raise Wav2SemError(
                "linked_data",
                f"'{ob.name}' is linked from another .blend, so its shape keys cannot be changed here.",
                "Make it local (Object > Relations > Make Local) or edit it in its own file.",
            )
        return ob

    def make_plan(self, context) -> tuple[Plan, bpy.types.Object]:
        ob = self.target(context)
        audio = bpy.path.abspath(self.arg(context, "audio"))
        if not audio:
            raise Wav2SemError("no_audio", "No audio file is chosen.", "Pick a voice recording in the Lip Sync panel.")
        check_audio_path(audio)
        bundle = bpy.path.abspath(self.arg(context, "bundle")) or runtime.default_bundle()
        mode = self.arg(context, "mode")
        registry.check(mode, ob)  # refuse before spending time on inference
        out = runtime.cache_dir() / f"result-{os.getpid()}-{time.monotonic_ns()}.npz"
        request = InferRequest(
            audio=audio,
            bundle=bundle.rstrip("/\\") or bundle,
            out=str(out),
            result=registry.request_for(mode),
            subject=self.arg(context, "subject") or None,
            subject2=self.arg(context, "subject2") or None,
            blend=self.arg(context, "blend"),
            semantic=self.arg(context, "semantic"),
            device=runtime.device(),
            performance=self.arg(context, "performance"),
            seed=self.arg(context, "seed"),
            # rounded: a float property is single precision, and the provenance should say 0.05, not 0.0500000007
            strength=round(self.arg(context, "strength"), 6),
            smoothing=round(self.arg(context, "smoothing"), 6),
            gains=parse_gains(self.arg(context, "gains")),
            text=self.transcript(context),
            report=self.arg(context, "lipsync"),
            close_recognised=self.arg(context, "close_recognised"),
        ).validate()
        plan = Plan(request, mesh_vertices=len(ob.data.vertices) if mode != "CONTROLS" else None)
        return plan, ob

    def transcript(self, context) -> str | None:
        """The operator's ``text`` if given, else the panel's Transcript (its text block, else its line)."""
        if self.properties.is_property_set("text"):
            text = self.text
        else:
            settings = context.scene.wav2sem
            block = settings.transcript_text
            text = block.as_string() if block is not None else settings.transcript
        return text if text.strip() else None

    def start(self, context) -> None:
        plan, ob = self.make_plan(context)
        self._object_name = ob.name
        self._generation = Generation(runtime.client(), plan)
        ACTIVE[:] = [self._generation]
        status = context.window_manager.wav2sem_status
        CANCEL.clear()
        status.running, status.cancel_requested = True, False
        status.progress, status.stage, status.message = 0.0, "starting", ""

    def finish(self, context) -> set[str]:
        """Write the finished generation into the scene (main thread, one undo step)."""
        show_in_status_bar(context, None)
        status = context.window_manager.wav2sem_status
        status.running = False
        gen = self._generation
        self._generation = None
        ACTIVE.clear()
        if gen.error is not None:
            return self.fail(context, gen.error)
        if gen.state == "cancelled":
            status.message = "Cancelled; the scene was not changed."
            self.report({"WARNING"}, status.message)
            return {"CANCELLED"}
        try:
            summary = self.write(context, bpy.data.objects[self._object_name], gen)
        except Wav2SemError as exc:
            return self.fail(context, exc)
        status.message = summary
        context.scene.wav2sem.last_summary = summary
        self.report({"INFO"}, summary)
        return {"FINISHED"}

    def fail(self, context, exc: Wav2SemError) -> set[str]:
        text = f"{exc.message} {exc.hint}".strip()
        context.window_manager.wav2sem_status.message = text
        self.report({"ERROR"}, text)
        return {"CANCELLED"}

    def write(self, context, ob: bpy.types.Object, gen: Generation) -> str:
        result = gen.load_result()
        scene = context.scene
        if self.arg(context, "fps_policy") == "MATCH" and abs(scene_fps(scene) - result.fps) > 1e-6:
            scene.render.fps, scene.render.fps_base = round(result.fps), round(result.fps) / result.fps
        fps = scene_fps(scene)
        if self.properties.is_property_set("start_frame"):
            first = self.start_frame
        else:
            settings = scene.wav2sem
            first = scene.frame_start if settings.use_scene_start else settings.start_frame
        writer = registry.resolve(self.arg(context, "mode"), result.kind)
        was_edit = ob.mode == "EDIT"
        if was_edit:  # keep the user's unsaved edits, write in object mode, then go back
            ob.update_from_editmode()
            with context.temp_override(active_object=ob, object=ob):
                bpy.ops.object.mode_set(mode="OBJECT")
        try:
            result = registry.prepare(writer, ob, result)  # a refusal here leaves the earlier run's output
            registry.clear_all(ob)
            summary = writer.write(ob, result, Timing(result.fps, first, fps))
            # its own NLA tracks, after the mouth: it never touches the mouth's curves (its note goes first,
            # so that what the mouth's writer replaced stays the summary's last word)
            summary.notes[:0] = performance_layer.write(ob, result, Timing(result.fps, first, fps),
                                                        head=self.arg(context, "head_motion"))
        finally:
            if was_edit:
                with context.temp_override(active_object=ob, object=ob):
                    bpy.ops.object.mode_set(mode="EDIT")
        notes = list(summary.notes)
        if self.arg(context, "add_sound"):
            pack = self.arg(context, "pack_audio")
            strip = add_sound_strip(scene, ob, gen.plan.request.audio, first, summary.last_frame, pack=pack)
            if pack and strip is not None:
                notes.append("audio packed into the .blend" if strip.sound.packed_file is not None
                             else "the audio could not be packed; the sound strip reads the file")
        for note in (transcript_note(result.provenance.get("transcript")),
                     heard_closures_line(result.provenance.get("recognised_closures"))):
            if note:
                notes.append(note)
        line = lipsync.store(scene.wav2sem, result.lipsync, Timing(result.fps, first, fps), ob.name)
        if line:
            notes.append(line)
        ob["wav2sem_model_fps"] = result.fps
        ob["wav2sem_scene_fps"] = fps
        ob["wav2sem_audio"] = gen.plan.request.audio
        # the artist controls used, with the result: set them again (or pass them to infer) to reproduce it
        artist = result.provenance.get("artist") or {}
        ob["wav2sem_strength"] = float(artist.get("strength", 1.0))
        ob["wav2sem_smoothing"] = float(artist.get("smoothing", 0.0))
        ob["wav2sem_gains"] = format_gains(artist.get("gains") or {})
        if artist.get("note"):
            notes.append(artist["note"])
        seconds = time.monotonic() - gen.started
        rate = f"{result.fps:g} fps" + (f" -> scene {fps:g} fps" if abs(fps - result.fps) > 1e-6 else "")
        tail = "".join(f"; {note}" for note in notes)
        return f"{summary.frames} frames at {rate}, {summary.detail}, {seconds:.1f} s{tail}"

    # -- blocking path ----------------------------------------------------------------------------
    def execute(self, context):
        try:
            self.start(context)
        except Wav2SemError as exc:
            return self.fail(context, exc)
        status = context.window_manager.wav2sem_status
        wm = context.window_manager
        wm.progress_begin(0, 100)

        def progress(stage: str, fraction: float) -> None:
            status.stage, status.progress = stage, 100 * fraction
            wm.progress_update(int(100 * fraction))
            show_in_status_bar(context, status_line(stage, fraction))

        try:
            while not self._generation.step():
                if CANCEL.is_set() and not self._generation.cancel_requested:
                    self._generation.cancel()
                progress(self._generation.stage, self._generation.fraction)
                time.sleep(0.05)
        finally:
            wm.progress_end()
            show_in_status_bar(context, None)
        return self.finish(context)

    # -- modal path -------------------------------------------------------------------------------
    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        try:
            self.start(context)
        except Wav2SemError as exc:
            return self.fail(context, exc)
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        status = context.window_manager.wav2sem_status
        if (event.type == "ESC" or status.cancel_requested or CANCEL.is_set()) and not self._generation.cancel_requested:
            self._generation.cancel()
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        done = self._generation.step()
        status.stage, status.progress = self._generation.stage, 100 * self._generation.fraction
        show_in_status_bar(context, status_line(self._generation.stage, self._generation.fraction))
        for area in context.screen.areas if context.screen else []:
            if area.type == "VIEW_3D":
                area.tag_redraw()
        if not done:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        return self.finish(context)


def transcript_note(info: dict | None) -> str:
    """The summary's words for what transcript mode did: its one-line notice when the transcript was
    ignored, else the closures it enforced ('' without a transcript)."""
    if not info:
        return ""
    if info.get("notice"):
        return str(info["notice"])
    text = "the sentence vector from the text" if info.get("semantic_from_text") else "the audio's sentence vector"
    return f"transcript: {info.get('aligned_words', 0)} words aligned, {info.get('closures', 0)} lip closures, {text}"


def check_audio_path(audio: str) -> None:
    """Refuse anything but an existing regular file, saying what the path is instead.

    Only ``os.stat`` is used: opening a named pipe to look at it would block until a writer appears.
    """
    try:
        mode = os.stat(audio).st_mode
    except FileNotFoundError:
        if os.path.islink(audio):
            raise Wav2SemError(
                "audio_missing", f"The audio path '{audio}' is a link to a file that does not exist.", "Check the link."
            ) from None
        raise Wav2SemError("audio_missing", f"The audio file '{audio}' does not exist.", "Check the path.") from None
    except OSError as exc:  # e.g. a folder on the way that cannot be searched
        raise Wav2SemError(
            "audio_unreadable", f"The audio file '{audio}' cannot be reached ({exc.strerror}).", "Check the path."
        ) from None
    kind = not_regular(mode)
    if kind is None:
        return
    raise Wav2SemError(
        "audio_not_file", f"The audio path '{audio}' is {kind}, not an audio file.", "Pick a regular audio file."
    )


class WAV2SEM_OT_cancel(bpy.types.Operator):
    """Stop the running lip sync generation (the scene stays as it was)"""

    bl_idname = "wav2sem.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return context.window_manager.wav2sem_status.running

    def execute(self, context):
        context.window_manager.wav2sem_status.cancel_requested = True
        CANCEL.set()
        return {"FINISHED"}


class WAV2SEM_OT_inspect_bundle(bpy.types.Operator):
    """Read the model bundle's styles and topology (starts the server if needed)"""

    bl_idname = "wav2sem.inspect_bundle"
    bl_label = "Read Model"

    def execute(self, context):
        from .properties import SUBJECTS

        settings = context.scene.wav2sem
        bundle = bpy.path.abspath(settings.bundle) or runtime.default_bundle()
        try:
            info = runtime.client().info(bundle)
        except Wav2SemError as exc:
            self.report({"ERROR"}, f"{exc.message} {exc.hint}".strip())
            return {"CANCELLED"}
        SUBJECTS[bpy.path.abspath(settings.bundle)] = list(info.get("subjects", []))
        what = f"{info['vertices']} vertices" if info.get("result") == "offsets" else "controls"
        self.report({"INFO"}, f"{info['arch']} at {info['fps']:g} fps, {what}, {len(info['subjects'])} styles")
        return {"FINISHED"}


class WAV2SEM_OT_jump_to_frame(bpy.types.Operator):
    """Go to this bilabial's frame (from the lip-sync report)"""

    bl_idname = "wav2sem.jump_to_frame"
    bl_label = "Jump to Frame"
    bl_options = {"INTERNAL"}

    frame: IntProperty(name="Frame", options={"SKIP_SAVE"})

    def execute(self, context):
        context.scene.frame_set(self.frame)
        return {"FINISHED"}


classes = (WAV2SEM_OT_generate, WAV2SEM_OT_cancel, WAV2SEM_OT_inspect_bundle, WAV2SEM_OT_jump_to_frame)

register, unregister = bpy.utils.register_classes_factory(classes)
