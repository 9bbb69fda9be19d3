"""The output modes, listed once: the panel's enum, the operator, ``batch.py`` and ``clear`` read this.

Adding a mode is one writer module (``SPEC``, ``write``, ``clear``, optionally ``check`` and ``prepare``) plus
one entry in ``WRITERS``. What a mode does with each result kind is decided in the writer
(``motion.py`` evaluates a controls result into vertex motion; the curve writer refuses vertex
offsets) and, for the automatic mode, in ``resolve`` below.
"""

from __future__ import annotations

from types import ModuleType

import bpy

from wav2sem_contract.result import InferResult

from . import compact, controls, per_frame, point_cache

WRITERS: dict[str, ModuleType] = {m.SPEC.mode: m for m in (compact, per_frame, point_cache, controls)}
AUTO = "AUTO"
AUTO_ITEM = (AUTO, "Automatic", "Control curves for a model of named controls (the default model), "
             "compact shape keys for a vertex model")
# Enum items carry fixed numbers: a .blend stores the number, so adding a mode never changes old files.
OUTPUT_MODES = [(AUTO, *AUTO_ITEM[1:], "", 4)] + [
    (m.SPEC.mode, m.SPEC.label, m.SPEC.description, "", i) for i, m in enumerate(WRITERS.values())
]
DEFAULT_MODE = AUTO
CLI_MODES = {"auto": AUTO, **{m.SPEC.cli: m.SPEC.mode for m in WRITERS.values()}}


def resolve(mode: str, kind: str) -> ModuleType:
    """The writer for ``mode`` given the result's kind (``offsets`` | ``compact`` | ``controls``)."""
    if mode == AUTO:
        return controls if kind == "controls" else compact
    return WRITERS[mode]


def request_for(mode: str) -> str:
    """What to ask a vertex model for in ``mode`` (a control model always answers controls)."""
    return compact.SPEC.request if mode == AUTO else WRITERS[mode].SPEC.request


def check(mode: str, ob: bpy.types.Object) -> None:
    """A mode's refusal that can be known before inference (e.g. per-frame on a mesh with its own keys)."""
    pre = getattr(WRITERS.get(mode), "check", None)
    if pre is not None:
        pre(ob)


def prepare(writer: ModuleType, ob: bpy.types.Object, result: InferResult) -> InferResult:
    """The writer's refusals and conversions of ``result`` for ``ob`` (its optional ``prepare``): run before
    ``clear_all``, so a result the writer cannot take leaves the earlier run's output in place."""
    pre = getattr(writer, "prepare", None)
    return result if pre is None else pre(ob, result)


def clear_all(ob: bpy.types.Object) -> None:
    """Remove what any earlier run put on ``ob``, in every mode; nothing of the user's."""
    for module in WRITERS.values():
        module.clear(ob)
