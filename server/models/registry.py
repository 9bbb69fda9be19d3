"""The host architectures, listed once.

``convert`` (and the CLI's ``--arch`` choices), the bundle reader and writer, the pipeline, the
benchmark and the test helpers all look a host up here by name. Adding a host is one model
module (a ``HostModel`` subclass declaring ``arch``, its official key map in
``from_official`` and its bundle fields) plus one entry in ``ARCHITECTURES``.

Entries are "module:Class" strings resolved on first use (as transformers' auto mappings
do), so reading the names (``--help``, argument parsing) never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from wav2sem_contract.errors import ModelError

if TYPE_CHECKING:
    from .host import HostModel

ARCHITECTURES: dict[str, str] = {
    "faceformer": ".faceformer:FaceFormer",
    "codetalker": ".codetalker:CodeTalker",
}


def host_class(name: str) -> type[HostModel]:
    """The model class registered as ``name``; a clear error for anything else."""
    if name not in ARCHITECTURES:
        raise ModelError(
            "bad_request", f"Unknown architecture '{name}'.", f"Use one of: {', '.join(ARCHITECTURES)}."
        )
    module, cls = ARCHITECTURES[name].split(":")
    host = getattr(importlib.import_module(module, __package__), cls)
    if host.arch != name:  # the table and the class must agree, or bundles would be mislabelled
        raise RuntimeError(f"registry entry {name!r} points at a class declaring arch {host.arch!r}")
    return host
