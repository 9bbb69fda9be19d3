"""The 3D Viewport sidebar tab "Lip Sync"."""

from __future__ import annotations

import bpy


class WAV2SEM_PT_main(bpy.types.Panel):
    bl_idname = "WAV2SEM_PT_main"
    bl_label = "Wav2Sem Lip Sync"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Lip Sync"

    def draw(self, context):
        settings = context.scene.wav2sem
        status = context.window_manager.wav2sem_status
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False

        col = layout.column()
        col.prop(settings, "audio")
        # what is said: a text block for a script, or one line typed here (greyed out when a block is chosen)
        col.prop(settings, "transcript_text")
        sub = col.column()
        sub.active = settings.transcript_text is None
        sub.prop(settings, "transcript")
        col.prop(settings, "target")
        row = col.row(align=True)
        row.operator("wav2sem.find_landmarks", icon="VIEWZOOM")
        row.operator("wav2sem.add_rig", icon="SHAPEKEY_DATA")
        row = col.row(align=True)
        row.prop(settings, "bundle")
        row.operator("wav2sem.inspect_bundle", text="", icon="FILE_REFRESH")

        col = layout.column(heading="Style")
        col.prop(settings, "subject")
        col.prop(settings, "subject2")
        sub = col.column()
        sub.active = bool(settings.subject2)
        sub.prop(settings, "blend", slider=True)
        col.prop(settings, "use_semantic")

        col = layout.column(heading="Performance")
        col.prop(settings, "performance", slider=True)
        sub = col.column()
        sub.active = settings.performance > 0
        sub.prop(settings, "seed")
        sub.prop(settings, "head_motion")

        col = layout.column(heading="Artist")
        col.prop(settings, "strength", slider=True)
        col.prop(settings, "smoothing", slider=True)
        col.prop(settings, "gains")

        col = layout.column()
        col.prop(settings, "output_mode")
        col.prop(settings, "use_scene_start")
        sub = col.column()
        sub.active = not settings.use_scene_start
        sub.prop(settings, "start_frame")
        col.prop(settings, "fps_policy")
        col.prop(settings, "add_sound")
        sub = col.column()
        sub.active = settings.add_sound
        sub.prop(settings, "pack_audio")

        layout.separator()
        if status.running:
            layout.progress(factor=status.progress / 100, type="BAR", text=f"{status.stage} {status.progress:.0f}%")
            layout.operator("wav2sem.cancel", icon="CANCEL")
        else:
            layout.operator("wav2sem.generate", icon="PLAY_SOUND")
        if status.message:
            box = layout.box()
            box.label(text=status.message, icon="INFO")
        elif settings.last_summary:
            layout.label(text=settings.last_summary, icon="CHECKMARK")


classes = (WAV2SEM_PT_main,)


register, unregister = bpy.utils.register_classes_factory(classes)
