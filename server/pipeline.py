"""One inference: audio file in, per-frame motion out (the path both `infer` and `serve` take)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .audio import DEFAULT_MAX_SECONDS, load_for_model
from .compact import DEFAULT_MAX_ERROR, exact_linear_basis, svd_basis
from .errors import Wav2SemError
from .models.faceformer import FaceFormer
from .models.host import HostModel, Progress, no_progress


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
    """Run one request; returns the arrays and metadata an ``.npz`` result holds."""
    started = time.perf_counter()
    progress("audio", 0.0)
    do_norm = _do_normalize(model)
    raw, input_values = load_for_model(request.audio, max_seconds=request.max_seconds, do_normalize=do_norm)
    if not model.audio_encoder.normalized_input:
        input_values = raw
    weights = model.style_weights(request.subject, request.subject2, request.blend)
    semantic = request.semantic and model.has_semantic
    x = torch.from_numpy(input_values)
    if request.result not in ("offsets", "compact"):
        raise Wav2SemError("bad_request", f"Unknown result kind '{request.result}'.", "Use offsets or compact.")
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
