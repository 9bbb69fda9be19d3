"""Blender 4.2 LTS ... 5.x differences, in one place.

* 4.4 moved F-curves into an action slot's channelbag; 5.0 removed ``Action.fcurves``.
* 5.0 renamed the sequencer's ``sequences`` to ``strips``.
"""

from __future__ import annotations

import bpy


def fcurves_of(id_data: bpy.types.ID, action_name: str | None = None, create: bool = True):
    """The F-curve collection animating ``id_data`` (``.fcurves.new/remove/find`` work on it).

    Returns None when ``create`` is False and the ID has no action.
    """
    ad = id_data.animation_data
    if ad is None:
        if not create:
            return None
        ad = id_data.animation_data_create()
    if ad.action is None:
        if not create:
            return None
        ad.action = bpy.data.actions.new(action_name or f"{id_data.name}Action")
    action = ad.action
    if hasattr(action, "fcurves") and not getattr(action, "is_action_layered", False):
        return action.fcurves  # 4.2/4.3, and legacy actions in 4.4/4.5
    from bpy_extras.anim_utils import action_ensure_channelbag_for_slot

    if ad.action_slot is None:
        slot = next((s for s in action.slots if s.target_id_type == id_data.id_type), None)
        ad.action_slot = slot or action.slots.new(id_type=id_data.id_type, name=id_data.name)
    return action_ensure_channelbag_for_slot(action, ad.action_slot).fcurves


def strips_of(scene: bpy.types.Scene, create: bool = True):
    """The scene's sequencer strip collection (``new_sound``, ``remove``, iteration)."""
    sed = scene.sequence_editor
    if sed is None:
        if not create:
            return None
        sed = scene.sequence_editor_create()
    strips = getattr(sed, "strips", None)
    return strips if strips is not None else sed.sequences


def all_strips(scene: bpy.types.Scene):
    sed = scene.sequence_editor
    if sed is None:
        return []
    return list(getattr(sed, "strips_all", None) or getattr(sed, "sequences_all", []))


def action_fcurves(action: bpy.types.Action) -> list:
    """Every F-curve of an action, whatever its layout (legacy or layered/slotted)."""
    if hasattr(action, "fcurves") and not getattr(action, "is_action_layered", False):
        return list(action.fcurves)
    return [fc for layer in action.layers for strip in layer.strips for bag in strip.channelbags for fc in bag.fcurves]
