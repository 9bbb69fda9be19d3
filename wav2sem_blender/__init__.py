"""Wav2Sem Lip Sync: the Blender side (panel, operators, client, writers).

Registration only; each module registers its own classes.
"""

from __future__ import annotations

from . import operators, panel, preferences, properties, retarget_ops, retarget_panel, rig, runtime

_modules = (properties, preferences, operators, rig, retarget_ops, panel, retarget_panel)


def register() -> None:
    for module in _modules:
        module.register()


def unregister() -> None:
    # The server holds nothing of the scene, so it survives file loads (warm for batch runs)
    # and stops here, or at exit.
    runtime.shutdown()
    for module in reversed(_modules):
        module.unregister()
