"""One inference: audio file in, per-frame motion out (the path both `infer` and `serve` take)."""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .audio import DEFAULT_MAX_SECONDS, load_for_model
from .compact import DEFAULT_MAX_ERROR, exact_linear_basis, svd_basis
from .errors import Wav2SemError
from .models.faceformer import FaceFormer
from .models.host import HostModel, Progress, no_progress
from .models.interrupt import cancellation_points


@dataclass
class InferRequest:
    audio: str
    subject: str | None = None
    subject2: str | None = None
    blend: float = 1.0
    semantic: bool = True
    fps: float | None = None
    max_seconds: float = DEFAULT_MAX_SECONDS
    result: str = "offsets"  # or "compact": bias + weights @ basis (see compact.py)
    max_error: float = DEFAULT_MAX_ERROR

    def validate(self) -> InferRequest:
        """Refuse out-of-range values before any work (and before any large allocation)."""
        if not isinstance(self.audio, str) or not self.audio.strip():
            raise _bad("The request names no audio file (the 'audio' field is missing or empty).", "Pick an audio file.")
        if self.fps is not None and not (_number(self.fps) and FPS_RANGE[0] <= self.fps <= FPS_RANGE[1]):
            raise _bad(
                f"The frame rate must be between {FPS_RANGE[0]:g} and {FPS_RANGE[1]:g} fps, not {self.fps!r}.",
                "Pass --fps in that range, or leave it out for the model's own rate.",
            )
        if not (_number(self.max_seconds) and 0 < self.max_seconds <= MAX_SECONDS_LIMIT):
            raise _bad(
                f"The audio length limit must be above 0 and at most {MAX_SECONDS_LIMIT:g} s, not {self.max_seconds!r}.",
                "Pass a --max-seconds in that range (the default is 600).",
            )
        if not (_number(self.blend) and 0.0 <= self.blend <= 1.0):
            raise _bad(f"The style blend must be between 0 and 1, not {self.blend!r}.", "Pass --blend in 0..1.")
        if self.result not in ("offsets", "compact"):
            raise _bad(f"Unknown result kind '{self.result}'.", "Use offsets or compact.")
        for name in ("subject", "subject2"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (str, int)) or isinstance(value, bool)):
                raise _bad(f"The '{name}' field must be a style name or index, not {value!r}.", "")
        return self

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> InferRequest:
        """The request an ``infer`` message describes, with each field's type checked."""
        types = {"audio": str, "subject": (str, int), "subject2": (str, int), "blend": (int, float),
                 "semantic": bool, "fps": (int, float), "max_seconds": (int, float), "result": str}
        if "audio" not in message:
            raise _bad("The request has no 'audio' field.", "Send the audio file's path in 'audio'.")
        values = {}
        for f in fields(cls):
            if f.name not in message or f.name not in types:
                continue
            value = message[f.name]
            if value is None and f.name in ("subject", "subject2", "fps"):
                continue
            if not isinstance(value, types[f.name]) or (isinstance(value, bool) and types[f.name] is not bool):
                raise _bad(f"The request's '{f.name}' field has the wrong type ({type(value).__name__}).",
                           "Update the add-on.")
            values[f.name] = value
        return cls(**values).validate()


FPS_RANGE = (1.0, 240.0)
MAX_SECONDS_LIMIT = 3600.0


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _bad(message: str, hint: str) -> Wav2SemError:
    return Wav2SemError("bad_request", message, hint)


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise Wav2SemError(
            "no_cuda",
            "A CUDA GPU was requested but PyTorch sees none.",
            "Use --device cpu (or auto), or install a CUDA build of PyTorch.",
        )
    if name not in ("cpu", "cuda"):
        raise Wav2SemError("bad_request", f"Unknown device '{name}'.", "Use auto, cpu or cuda.")
    return torch.device(name)


def resample_time(motion: np.ndarray, fps_in: float, fps_out: float) -> np.ndarray:
    """Linear resampling along axis 0 from ``fps_in`` to ``fps_out`` (same duration)."""
    if abs(fps_in - fps_out) < 1e-9:
        return motion
    n_out = max(1, int(round(len(motion) * fps_out / fps_in)))
    t = np.arange(n_out) * (fps_in / fps_out)
    lo = np.clip(np.floor(t).astype(int), 0, len(motion) - 1)
    hi = np.clip(lo + 1, 0, len(motion) - 1)
    w = (t - lo).clip(0, 1).reshape((-1,) + (1,) * (motion.ndim - 1)).astype(motion.dtype)
    return motion[lo] * (1 - w) + motion[hi] * w


def run(model: HostModel, request: InferRequest, progress: Progress = no_progress) -> dict:
    """Run one request; returns the arrays and metadata an ``.npz`` result holds.

    A ``progress`` object with a ``check()`` method is also asked between encoder layers, so
    a cancelled request stops there (``check`` raises).
    """
    with cancellation_points([model.audio_encoder, model.semantic], getattr(progress, "check", None)):
        return _run(model, request, progress)


def _run(model: HostModel, request: InferRequest, progress: Progress) -> dict:
    started = time.perf_counter()
    request.validate()
    progress("audio", 0.0)
    do_norm = _do_normalize(model)
    raw, input_values = load_for_model(request.audio, max_seconds=request.max_seconds, do_normalize=do_norm)
    if not model.audio_encoder.normalized_input:
        input_values = raw
    weights = model.style_weights(request.subject, request.subject2, request.blend)
    semantic = request.semantic and model.has_semantic
    x = torch.from_numpy(input_values)
    if model.spec.result == "weights":  # named controls: already compact
        weights = model.generate(x, weights, semantic=semantic, progress=progress)
        arrays = {"weights": weights.float().cpu().numpy(), "names": np.array(model.spec.control_names)}
    elif request.result == "compact" and isinstance(model, FaceFormer):
        states = model.generate_states(x, weights, semantic=semantic, progress=progress)
        arrays = exact_linear_basis(states, model.motion_out.weight, model.motion_out.bias)
    else:
        offsets = model.generate(x, weights, semantic=semantic, progress=progress)
        if request.result == "compact":
            progress("compact", 0.0)
            arrays = svd_basis(offsets.cpu(), request.max_error)
        else:
            arrays = {"offsets": offsets.float().cpu().numpy().reshape(offsets.shape[0], -1, 3)}
    fps = model.spec.fps
    if request.fps:
        key = "offsets" if "offsets" in arrays else "weights"
        arrays[key] = resample_time(arrays[key], fps, request.fps)
        fps = request.fps
    meta = model.bundle_meta if hasattr(model, "bundle_meta") else {}
    provenance = {
        "tool": f"wav2sem-lipsync {__version__}",
        "bundle": str(getattr(model, "bundle_path", "")),
        "arch": model.spec.arch,
        "semantic": semantic,
        "fusion": model.semantic.fusion if semantic else None,
        "subject": request.subject if request.subject is not None else model.spec.subjects[0],
        "subject2": request.subject2,
        "blend": request.blend if request.subject2 is not None else None,
        "device": str(next(model.parameters()).device),
        "audio": os.path.basename(request.audio),
        "seconds": round(time.perf_counter() - started, 3),
        "bundle_provenance": meta.get("provenance", {}),
    }
    return {**arrays, "fps": np.float32(fps), "provenance": provenance}


def _do_normalize(model: HostModel) -> bool:
    """The encoder folder's preprocessing setting (wav2vec2 processors normalise by default)."""
    path = getattr(model, "bundle_path", None)
    if path is None:
        return True
    cfg = Path(path) / model.bundle_meta["encoder"]["folder"] / "preprocessor_config.json"
    if cfg.is_file():
        return bool(json.loads(cfg.read_text()).get("do_normalize", True))
    return True


def check_result_path(out: str | Path, audio: str | Path | None = None) -> Path:
    """Refuse a result path that cannot be written, or that is the audio, before any work is done."""
    path = Path(out)
    if path.is_dir():
        raise _bad(f"The output path '{out}' is a folder.", "Name the .npz file to write, e.g. --out result.npz.")
    if audio is not None and path.exists() and path.resolve() == Path(audio).resolve():
        raise _bad(
            f"The output path '{out}' is the audio file itself; writing there would overwrite the recording.",
            "Name a different .npz file.",
        )
    folder = path.resolve().parent
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    probe_dir = folder if folder.exists() else existing
    try:  # os.access says yes to root on read-only mounts: try it for real
        with tempfile.NamedTemporaryFile(dir=probe_dir, prefix=".wav2sem-probe-"):
            pass
    except OSError as exc:
        raise _bad(
            f"The result cannot be written to '{out}' ({exc.strerror or exc}).",
            "Choose an output path in a folder you can write to.",
        ) from exc
    if path.exists() and not os.access(path, os.W_OK):
        raise _bad(f"The output file '{out}' is read-only.", "Choose another output path or make it writable.")
    return path


def save_result(result: dict, out: str | Path) -> Path:
    """Write the result ``.npz`` atomically (a reader never sees a half-written file)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    arrays = {k: v for k, v in result.items() if k != "provenance"}
    arrays["provenance"] = np.array(json.dumps(result["provenance"]))
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, out)
    return out
