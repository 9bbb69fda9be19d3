"""The F-curve data path of a shape key's value, both ways: ``key_blocks["<name>"].value``.

Kept apart from ``compat`` and ``writers`` so that both (and the retargeting modules) can import it
without an import cycle; it imports nothing from the add-on.
"""

from __future__ import annotations

import re

import bpy

KEY_PATH = re.compile(r'^key_blocks\["(.*)"\]\.value$')


def key_path(name: str) -> str:
    """The data path animating shape key ``name``'s value."""
    return f'key_blocks["{bpy.utils.escape_identifier(name)}"].value'


def key_name_of(data_path: str) -> str | None:
    """The shape-key name a ``key_blocks["..."].value`` path animates, unescaped; None for any other path."""
    m = KEY_PATH.match(data_path)
    # Blender's own unescape: it undoes every escape escape_identifier makes (quotes, backslashes,
    # control characters), which a hand-written replace chain gets wrong for some names.
    return bpy.utils.unescape_identifier(m.group(1)) if m else None
