"""Output folders that are written whole or not at all, and never wipe anything of the user's.

A bundle is built in a fresh hidden folder beside its target and renamed into place. An
existing target is replaced only when it is itself a bundle of ours and the caller asked
for it (``--force``); an empty folder is filled; anything else is refused before any work.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from wav2sem_contract.errors import ModelError

BUNDLE_FORMAT = "wav2sem-bundle"


def is_our_bundle(folder: Path) -> bool:
    """True when ``folder`` holds a ``bundle.json`` this tool wrote."""
    try:
        meta = json.loads((folder / "bundle.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == BUNDLE_FORMAT


def _refuse(message: str, hint: str) -> ModelError:
    return ModelError("bad_output", message, hint)


def check_output_folder(out: str | Path, *, force: bool = False, inputs: Iterable[str | Path] = ()) -> Path:
    """Validate a bundle output folder before any work; returns it resolved.

    Refuses ``.``/``..``/the working folder or any folder above it, a file, a folder that
    holds (or is) one of ``inputs``, a non-empty folder that is not a bundle, and an
    existing bundle without ``force``.
    """
    raw = Path(out)
    if str(out).strip() in ("", ".", "..") or raw.name in ("", ".", ".."):
        raise _refuse(f"'{out}' cannot be a bundle folder.", "Name a new folder for the bundle, e.g. --out bundles/my-model.")
    target = raw.resolve()
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents or target == Path(target.anchor):
        raise _refuse(
            f"'{out}' is the working folder or a folder above it; writing a bundle there would replace it.",
            "Name a new folder for the bundle, e.g. --out bundles/my-model.",
        )
    for given in inputs:
        if not given:
            continue
        source = Path(given).resolve()
        if target == source or target in source.parents:
            what = "is one of the inputs" if target == source else f"contains the input '{given}'"
            raise _refuse(f"'{out}' {what}; writing the bundle there would destroy it.",
                          "Write the bundle to another folder.")
    if target.exists() or target.is_symlink():
        if not target.is_dir() or target.is_symlink():
            raise _refuse(f"'{out}' exists and is not a folder.", "Name a new folder for the bundle.")
        if is_our_bundle(target):
            if not force:
                raise _refuse(
                    f"'{out}' already holds a model bundle.",
                    "Pass --force to replace it, or name another folder.",
                )
        elif any(target.iterdir()):
            raise _refuse(
                f"'{out}' is a folder with other files in it, not a model bundle; nothing was changed.",
                "Name a new or empty folder for the bundle.",
            )
    parent = target.parent
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise _refuse(f"The folder '{parent}' is not writable.", "Choose an --out in a folder you can write to.")
    return target


def staging_folder(target: Path) -> Path:
    """A fresh, empty, uniquely named folder beside ``target`` (never an existing one)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))


def commit_folder(staged: Path, target: Path) -> Path:
    """Move ``staged`` into place; an existing bundle (or empty folder) at ``target`` is replaced.

    If the move fails, whatever was at ``target`` is back there and the error says so.
    """
    if not target.exists():
        try:
            os.rename(staged, target)
        except OSError as exc:
            raise _not_moved(target, exc, "nothing was written there") from exc
        return target
    if not (is_our_bundle(target) or not any(target.iterdir())):
        raise _refuse(f"'{target}' changed while the bundle was written; nothing was replaced.", "Try again.")
    graveyard = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    old = graveyard / "bundle"
    try:
        os.rename(target, old)
    except OSError as exc:
        graveyard.rmdir()
        raise _not_moved(target, exc, "the old one was kept") from exc
    try:
        os.rename(staged, target)
    except OSError as exc:
        # Half way: the old bundle is out of its place. Put it back, or it would be left in a
        # hidden folder with nothing at ``target``.
        os.rename(old, target)
        graveyard.rmdir()
        raise _not_moved(target, exc, "the old one was kept") from exc
    shutil.rmtree(graveyard, ignore_errors=True)
    return target


def _not_moved(target: Path, exc: OSError, kept: str) -> ModelError:
    return _refuse(f"The new bundle could not be moved into '{target}' ({exc.strerror or exc}); {kept}.",
                   "Check that the folder is writable and not in use, then run the command again.")
