"""Blender 4.2 LTS ... 5.x differences, in one place.

* 4.4 moved F-curves into an action slot's channelbag; 5.0 removed ``Action.fcurves``.
* 5.0 renamed the sequencer's ``sequences`` to ``strips``.
"""

from __future__ import annotations

import bpy

from .key_paths import key_name_of


def _is_legacy(action: bpy.types.Action) -> bool:
    """Whether the action keeps its F-curves on itself: every action in 4.2/4.3, and the ones 4.4/4.5
    have not converted to layers (5.0 has no ``Action.fcurves`` at all)."""
    return hasattr(action, "fcurves") and not getattr(action, "is_action_layered", False)


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
    if _is_legacy(action):
        return action.fcurves
    from bpy_extras.anim_utils import action_ensure_channelbag_for_slot

    if ad.action_slot is None:
        slot = next((s for s in action.slots if s.target_id_type == id_data.id_type), None)
        ad.action_slot = slot or action.slots.new(id_type=id_data.id_type, name=id_data.name)
    return action_ensure_channelbag_for_slot(action, ad.action_slot).fcurves


def active_fcurves(id_data: bpy.types.ID | None) -> list[bpy.types.FCurve]:
    """The F-curves animating ``id_data`` through its active action (in a layered action: those of the
    ID's slot); empty without one.

    Read only, unlike ``fcurves_of(create=False)``, which may assign a slot and add a channelbag.
    """
    ad = id_data.animation_data if id_data is not None else None
    if ad is None or ad.action is None:
        return []
    action = ad.action
    if _is_legacy(action):
        return list(action.fcurves)
    if ad.action_slot is None:
        return []
    from bpy_extras.anim_utils import action_get_channelbag_for_slot

    bag = action_get_channelbag_for_slot(action, ad.action_slot)
    return list(bag.fcurves) if bag is not None else []


def key_fcurves(key: bpy.types.Key | None) -> dict[str, bpy.types.FCurve]:
    """Shape-key name -> the unmuted F-curve animating its value in the key's active action (read only)."""
    out = {}
    for fc in active_fcurves(key):
        name = key_name_of(fc.data_path)
        if name is not None and not fc.mute:
            out[name] = fc
    return out


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
    if _is_legacy(action):
        return list(action.fcurves)
    return [fc for layer in action.layers for strip in layer.strips for bag in strip.channelbags for fc in bag.fcurves]
