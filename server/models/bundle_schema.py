"""``bundle.json`` checked field by field before anything is built or read from it.

A bundle is data from elsewhere: every field is validated against the spec dataclasses
the model is built from (so the schema cannot drift from the code), every file it names
must resolve inside the bundle folder, and every weights file must match its SHA-256.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import typing
from pathlib import Path
from typing import Any

from wav2sem_contract.errors import ModelError

from .host import HostSpec
from .registry import ARCHITECTURES, host_class
from .wav2sem import SemanticHeadSpec

FUSIONS = ("official", "consistent")
_REBUILD = "Rebuild the bundle with `python -m server convert`."


def _invalid(folder: Path, field: str, what: str) -> ModelError:
    return ModelError("bundle_invalid", f"The bundle {folder.name} has an invalid '{field}' in bundle.json ({what}).",
                      _REBUILD)


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if hint is dict or origin is dict:
        return isinstance(value, dict)
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    return False


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) if typing.get_origin(hint) is None else str(hint)


def check_spec(value: Any, cls: type, field: str, folder: Path) -> None:
    """``value`` must be a dict that builds ``cls``: known fields, right types, sizes >= 0."""
    if not isinstance(value, dict):
        raise _invalid(folder, field, "expected an object")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in value:
        if name not in fields:
            raise _invalid(folder, f"{field}.{name}", "not a known field")
    for name, f in fields.items():
        if name not in value:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise _invalid(folder, f"{field}.{name}", "missing")
            continue
        if not _type_ok(value[name], hints[name]):
            raise _invalid(folder, f"{field}.{name}", f"expected {_type_name(hints[name])}, got {value[name]!r:.40}")
        if hints[name] is int and value[name] < 0:
            raise _invalid(folder, f"{field}.{name}", "must not be negative")


def _need(meta: dict, field: str, hint: Any, folder: Path, optional: bool = False) -> Any:
    if field not in meta or (optional and meta[field] is None):
        if optional:
            return None
        raise _invalid(folder, field, "missing")
    if not _type_ok(meta[field], hint):
        raise _invalid(folder, field, f"expected {_type_name(hint)}")
    return meta[field]


def check_meta(meta: Any, folder: Path) -> None:
    """Raise ``bundle_invalid`` naming the first field of ``meta`` that is wrong."""
    if not isinstance(meta, dict):
        raise _invalid(folder, "bundle.json", "expected an object")
    arch = _need(meta, "arch", str, folder)
    if arch not in ARCHITECTURES:
        raise _invalid(folder, "arch", f"'{arch}' is not one of {', '.join(ARCHITECTURES)}")
    check_spec(meta.get("host"), HostSpec, "host", folder)
    encoder = _need(meta, "encoder", dict, folder)
    _need(encoder, "folder", str, folder)
    _need(meta, "weights", str, folder)
    semantic = _need(meta, "semantic", dict, folder, optional=True)
    if semantic is not None:
        kind = semantic.get("type")
        if semantic.get("fusion") not in FUSIONS:
            raise _invalid(folder, "semantic.fusion", f"expected one of {', '.join(FUSIONS)}")
        if kind == "head":
            check_spec(semantic.get("spec"), SemanticHeadSpec, "semantic.spec", folder)
        elif kind == "encoder":
            if not isinstance(semantic.get("folder"), str):
                raise _invalid(folder, "semantic.folder", "expected str")
        else:
            raise _invalid(folder, "semantic.type", "expected head or encoder")
    for name, spec_class in host_class(arch).bundle_fields.items():
        check_spec(meta.get(name), spec_class, name, folder)
    plain = _need(meta, "plain", dict, folder, optional=True)
    if plain is not None and not isinstance(plain.get("weights"), str):
        raise _invalid(folder, "plain.weights", "expected str")
    derived = _need(meta, "derived", dict[str, list[int]], folder, optional=True) or {}
    for key, shape in derived.items():
        if not _type_ok(shape, list[int]):
            raise _invalid(folder, f"derived.{key}", "expected a list of sizes")
    checksums = _need(meta, "checksums", dict, folder, optional=True) or {}
    for name, digest in checksums.items():
        if not (isinstance(digest, str) and len(digest) == 64):
            raise _invalid(folder, f"checksums.{name}", "expected a SHA-256 hex digest")


def inside(folder: Path, relative: str, field: str) -> Path:
    """``folder / relative``, refused unless it resolves inside ``folder`` (no ``..``, no absolute, no link out)."""
    root = folder.resolve()
    path = (root / relative).resolve()
    if Path(relative).is_absolute() or not path.is_relative_to(root) or path == root:
        raise ModelError(
            "bundle_invalid",
            f"The bundle {folder.name} names a file outside its folder in '{field}' ({relative}).",
            "Use bundles made by `python -m server convert` only.",
        )
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified_file(folder: Path, meta: dict, relative: str, field: str) -> Path:
    """A weights file of the bundle, inside it and matching the SHA-256 that ``bundle.json`` records."""
    path = inside(folder, relative, field)
    if not path.is_file():
        raise ModelError("model_missing", f"The bundle {folder.name} has no weights file ({relative}).", _REBUILD)
    expected = (meta.get("checksums") or {}).get(relative)
    if expected is None:
        raise ModelError(
            "bundle_corrupt",
            f"The bundle {folder.name} records no checksum for {relative}, so its weights cannot be verified.",
            _REBUILD,
        )
    if sha256_of(path) != expected.lower():
        raise ModelError(
            "bundle_corrupt",
            f"The weights file {relative} of the bundle {folder.name} is damaged (its SHA-256 does not match).",
            "Re-run `python -m server convert` (or reinstall the add-on for the embedded default).",
        )
    return path
