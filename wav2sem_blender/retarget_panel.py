"""The "Retarget" sub-panel of the Lip Sync sidebar tab: lip sync from one head onto a custom one."""

from __future__ import annotations

import bpy


class WAV2SEM_PT_retarget(bpy.types.Panel):
    bl_idname = "WAV2SEM_PT_retarget"
    bl_label = "Retarget"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Lip Sync"
    bl_parent_id = "WAV2SEM_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        settings = context.scene.wav2sem_retarget
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False

        col = layout.column()
        col.prop(settings, "source")
        col.prop(settings, "target")
        col.operator("wav2sem.align_heads", icon="ORIENTATION_GIMBAL")

        col = layout.column(heading="Transfer")
        col.prop(settings, "mode", expand=True)
        if settings.target is not None:
            col.prop_search(settings, "vertex_group", settings.target, "vertex_groups")
        else:
            col.prop(settings, "vertex_group")
        col.prop(settings, "max_distance")
        col.prop(settings, "falloff")
        col.operator("wav2sem.transfer_motion", icon="MOD_MESHDEFORM")

        col = layout.column(heading="Solve")
        col.prop(settings, "keys")
        col.prop(settings, "smooth")
        col.operator("wav2sem.solve_shape_keys", icon="SHAPEKEY_DATA")

        col = layout.column(heading="Controls")
        col.prop(settings, "mapping_text", icon="TEXT")
        col.prop(settings, "smoothing")
        col.operator("wav2sem.map_controls", icon="LINKED")

        col = layout.column(heading="Jaw Bone")
        col.prop(settings, "armature")
        if settings.armature is not None:
            col.prop_search(settings, "bone", settings.armature.data, "bones")
        else:
            col.prop(settings, "bone")
        col.prop(settings, "axis")
        col.prop(settings, "max_angle")
        col.operator("wav2sem.jaw_bone", icon="BONE_DATA")

        if settings.last_summary:
            layout.label(text=settings.last_summary, icon="CHECKMARK")


classes = (WAV2SEM_PT_retarget,)


register, unregister = bpy.utils.register_classes_factory(classes)
