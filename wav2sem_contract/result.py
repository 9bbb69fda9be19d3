"""One inference result with an explicit kind, and its ``.npz`` file.

Kinds and their arrays (``fps`` and ``provenance`` always; frames T, vertices V, keys K):

* ``offsets``:  ``offsets`` (T, V, 3) per-vertex motion
* ``compact``:  ``weights`` (T, K), ``basis`` (K, V, 3), ``bias`` (V, 3), ``max_error``, ``exact``:
  offsets = bias + weights @ basis
* ``controls``: ``weights`` (T, K) in [0, 1], ``names`` (K,): named controls (the default model);
  may also carry ``offsets`` evaluated on a template mesh (``infer --template``)

Any kind may also carry the lip-sync report (``lipsync``, its JSON as a string; see ``lipsync``).

Any kind may also carry the performance layer (``performance_weights`` (T, P) in [0, 1],
``performance_names`` (P,), ``head_rotation`` (T, 3) radians; see ``performance``) when asked for.

The arrays never travel on the pipe: the server saves the file atomically and replies with
``to_message`` (kind, path, sizes); the client rebuilds the descriptor with ``from_message``
and reads the arrays once with ``load``.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import Wav2SemError

KINDS = ("offsets", "compact", "controls")
REQUIRED = {"offsets": ("offsets",), "compact": ("weights", "basis", "bias"), "controls": ("weights", "names")}


def _broken(path: str | Path, what: str) -> Wav2SemError:
    return Wav2SemError("result_invalid", f"The result file '{path}' {what}.", "Run the lip sync again.")


@dataclass
class InferResult:
    kind: str
    fps: float
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    sizes: dict[str, Any] = field(default_factory=dict)  # from a reply, before the arrays are loaded
    lipsync: dict[str, Any] | None = None  # the lip-sync report (wav2sem_contract.lipsync); None: not made

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise _broken(self.path or "", f"has an unknown kind '{self.kind}'")

    # -- arrays ------------------------------------------------------------------------------
    @property
    def frames(self) -> int:
        if not self.arrays:
            return int(self.sizes.get("frames", 0))
        return int(self.arrays["offsets" if self.kind == "offsets" else "weights"].shape[0])

    @property
    def names(self) -> list[str]:
        if not self.arrays:
            return list(self.sizes.get("names", []))
        return [str(n) for n in self.arrays.get("names", [])]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def __contains__(self, name: str) -> bool:
        return name in self.arrays

    def with_arrays(self, **arrays: np.ndarray) -> InferResult:
        return InferResult(self.kind, self.fps, {**self.arrays, **arrays}, self.provenance, self.path,
                           lipsync=self.lipsync)

    # -- file --------------------------------------------------------------------------------
    def save(self, out: str | Path) -> Path:
        """Write the ``.npz`` atomically (a reader never sees a half-written file)."""
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        arrays = {**self.arrays, "kind": np.array(self.kind), "fps": np.float32(self.fps),
                  "provenance": np.array(json.dumps(self.provenance))}
        if self.lipsync is not None:
            arrays["lipsync"] = np.array(json.dumps(self.lipsync))
        try:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
            os.replace(tmp, out)
        except OSError as exc:  # a full disk, a folder at ``out``: no half-written temp file stays behind
            tmp.unlink(missing_ok=True)
            raise Wav2SemError("result_unwritable", f"The result could not be written to '{out}' "
                               f"({exc.strerror or exc}).",
                               "Choose an output path in a folder you can write to, with free space.") from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.path = str(out)
        return out

    @classmethod
    def load(cls, path: str | Path) -> InferResult:
        """Read a result file (no pickles: ``allow_pickle`` stays off) and check its arrays."""
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # BadZipFile: a cut-off or damaged file
            raise _broken(path, f"cannot be read ({exc})") from exc
        kind = str(arrays.pop("kind", "")) or ("controls" if "names" in arrays else
                                                 "compact" if "basis" in arrays else "offsets")
        if "fps" not in arrays:
            raise _broken(path, "has no frame rate")
        fps = float(arrays.pop("fps"))
        try:
            provenance = json.loads(str(arrays.pop("provenance"))) if "provenance" in arrays else {}
        except ValueError:
            raise _broken(path, "has a damaged provenance") from None
        lipsync = json.loads(str(arrays.pop("lipsync"))) if "lipsync" in arrays else None  # older results: none
        result = cls(kind, fps, arrays, provenance, str(path), lipsync=lipsync)
        missing = [n for n in REQUIRED[kind] if n not in arrays]
        if missing:
            raise _broken(path, f"lacks {', '.join(missing)} for a {kind} result")
        return result

    # -- reply -------------------------------------------------------------------------------
    def to_message(self) -> dict[str, Any]:
        """The reply's payload: kind, where the arrays are, and their sizes."""
        message: dict[str, Any] = {"kind": self.kind, "path": self.path, "fps": float(self.fps),
                                   "frames": self.frames, "provenance": self.provenance}
        if self.kind == "offsets":
            message["vertices"] = int(self.arrays["offsets"].shape[1])
        elif self.kind == "compact":
            message.update(vertices=int(self.arrays["basis"].shape[1]), keys=int(self.arrays["weights"].shape[1]),
                           max_error=float(self.arrays["max_error"]), exact=bool(self.arrays["exact"]))
        else:
            message["names"] = self.names
        return message

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> InferResult:
        """The descriptor a ``result`` reply carries; ``load()`` reads its arrays."""
        kind = message.get("kind")
        if kind not in KINDS or not isinstance(message.get("path"), str):
            raise Wav2SemError("result_invalid", "The server's reply does not describe a result.",
                               "Install the add-on and server from the same release.")
        sizes = {k: message[k] for k in ("frames", "vertices", "keys", "names", "max_error", "exact") if k in message}
        return cls(kind, float(message.get("fps", 0.0)), {}, message.get("provenance") or {}, message["path"], sizes)

    def loaded(self) -> InferResult:
        """This result with its arrays read from ``path``."""
        return self if self.arrays else InferResult.load(self.path)
