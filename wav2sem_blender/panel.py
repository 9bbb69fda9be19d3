"""The 3D Viewport sidebar tab "Lip Sync"."""

from __future__ import annotations

import bpy

from .lipsync import row_text

STATE_ICONS = {"CLOSED": "CHECKMARK", "OPEN": "CANCEL", "UNMEASURED": "QUESTION"}


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
        col.prop(settings, "use_report")
        col.prop(settings, "use_close_recognised")
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
        draw_report(layout, settings)


class WAV2SEM_UL_lipsync(bpy.types.UIList):
    """The report's bilabials: each row a button that jumps to its frame; the open ones in red."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_property, index=0, flt_flag=0):
        row = layout.row()
        row.alert = item.state == "OPEN"
        op = row.operator("wav2sem.jump_to_frame", text=row_text(item), icon=STATE_ICONS[item.state], emboss=False)
        op.frame = item.frame


def draw_report(layout, settings) -> None:
    """The summary row and the list, when there is a report."""
    if not settings.lipsync_summary:
        return
    missed = any(item.state == "OPEN" for item in settings.lipsync)
    row = layout.row()
    row.alert = missed
    row.label(text=settings.lipsync_summary, icon="ERROR" if missed else "CHECKMARK")
    if len(settings.lipsync):
        layout.template_list("WAV2SEM_UL_lipsync", "", settings, "lipsync", settings, "lipsync_index",
                             rows=min(8, len(settings.lipsync)))


classes = (WAV2SEM_UL_lipsync, WAV2SEM_PT_main)


register, unregister = bpy.utils.register_classes_factory(classes)
