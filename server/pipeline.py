"""One inference: audio file in, per-frame motion out (the path both `infer` and `serve` take)."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from wav2sem_contract.artist import check_gain_names
from wav2sem_contract.errors import Cancelled, Wav2SemError
from wav2sem_contract.request import InferRequest
from wav2sem_contract.result import InferResult

from . import __version__
from .artist import apply_artist
from .audio import SAMPLE_RATE, load_for_model
from .compact import DEFAULT_MAX_ERROR, svd_basis
from .models.bundle import LoadedBundle, with_precision
from .models.host import Progress, no_progress
from .models.interrupt import cancellation_points


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


def run(bundle: LoadedBundle, request: InferRequest, progress: Progress = no_progress) -> InferResult:
    """Run one request on a loaded bundle; returns the result (arrays, kind, fps, provenance).

    A ``progress`` object with a ``check()`` method is also asked between encoder layers, so
    a cancelled request stops there (``check`` raises).
    """
    bundle = with_precision(bundle, request.precision)  # a no-op when loaded for that precision
    model = bundle.model
    # inference_mode, not just no_grad: no version counters or views to track, which made the
    # default's per-frame decoder 20-25 % faster (its operations are tiny); the encoders gain nothing
    with cancellation_points([model.audio_encoder, model.semantic], getattr(progress, "check", None)), \
            torch.inference_mode():
        return _run(bundle, request, progress)


def _run(bundle: LoadedBundle, request: InferRequest, progress: Progress) -> InferResult:
    started = time.perf_counter()
    request.validate()
    model = bundle.model
    if model.spec.result == "weights":  # a gain for a control this model lacks: refused before any work
        check_gain_names(request.gains, list(model.spec.control_names))
    progress("audio", 0.0)
    raw, input_values = load_for_model(request.audio, max_seconds=request.max_seconds,
                                       do_normalize=bundle.normalize_audio)
    if not model.audio_encoder.normalized_input:
        input_values = raw
    weights = model.style_weights(request.subject, request.subject2, request.blend)
    semantic = request.semantic and model.has_semantic
    transcript, given = _transcript(model, raw, request, semantic, progress)
    x = torch.from_numpy(input_values)
    if model.spec.result == "weights":  # named controls: the result is controls whatever was asked
        kind = "controls"
        weights = model.generate(x, weights, semantic=semantic, progress=progress, semantic_vector=given)
        # Controls are weights in [0, 1] (what shape keys and the rig expect); the regression
        # head is unbounded and overshoots slightly (the default: about -0.07 to 1.01 on speech).
        weights = weights.float().clamp(0.0, 1.0)
        arrays = {"weights": weights.cpu().numpy(), "names": np.array(model.spec.control_names)}
    elif request.result == "compact" and model.exact_compact:
        kind = "compact"
        arrays = model.generate_compact(x, weights, semantic=semantic, progress=progress, semantic_vector=given)
    else:
        offsets = model.generate(x, weights, semantic=semantic, progress=progress, semantic_vector=given)
        if request.result == "compact":
            kind = "compact"
            progress("compact", 0.0)
            arrays = svd_basis(offsets.cpu(), DEFAULT_MAX_ERROR)
        else:
            kind = "offsets"
            arrays = {"offsets": offsets.float().cpu().numpy().reshape(offsets.shape[0], -1, 3)}
    fps = model.spec.fps
    if request.fps:
        key = "offsets" if kind == "offsets" else "weights"
        arrays[key] = resample_time(arrays[key], fps, request.fps)
        fps = request.fps
    # Artist controls before the transcript's closures: a softer or smoother mouth still closes fully at
    # every aligned /p b m/ (after them, strength 0.5 would halve the closures the transcript made certain).
    artist = apply_artist(kind, arrays, fps, request.strength, request.smoothing, request.gains)
    if transcript is not None:
        transcript = _closures(transcript, kind, arrays, fps)
    heard, recognised = None, None
    if request.close_recognised and not _aligned(transcript):
        heard, recognised = _recognised_closures(kind, arrays, fps, raw, progress)
    report = None
    if request.report:  # on the final mouth: after the artist controls and the transcript's closures
        from .lipsync_report import lipsync_report

        progress("report", 0.0)
        report = lipsync_report(kind, arrays, fps, raw, transcript, progress, recognised=recognised)
        progress("report", 1.0)
    if transcript is not None:  # the aligned phones served the closures and the report; not for provenance
        transcript.pop("phones", None)
        transcript.pop("phone_words", None)
    layer = None
    if request.performance > 0:  # the layer beyond the mouth, on the motion's own frames, from the same audio
        from wav2sem_contract import performance as names

        from .performance import performance_layer

        progress("performance", 0.0)
        frames = len(arrays["offsets" if kind == "offsets" else "weights"])
        layer = performance_layer(raw, SAMPLE_RATE, frames, fps, request.performance, request.seed)
        arrays.update({names.WEIGHTS: layer.weights, names.NAMES: np.array(names.PERFORMANCE_CONTROLS),
                       names.HEAD: layer.head})
    provenance = {
        "tool": f"wav2sem-lipsync {__version__}",
        "bundle": str(bundle.path),
        "arch": model.arch,
        "semantic": semantic,
        "fusion": model.semantic.fusion if semantic else None,
        "subject": request.subject if request.subject is not None else model.spec.subjects[0],
        "subject2": request.subject2,
        "blend": request.blend if request.subject2 is not None else None,
        "device": str(next(model.parameters()).device),
        "precision": bundle.precision,
        "precision_changes": bundle.precision_note or "none (the model as trained)",
        "audio": os.path.basename(request.audio),
        "transcript": transcript,
        "recognised_closures": heard,
        "artist": artist,
        "performance": None if layer is None else {"intensity": request.performance, "seed": request.seed,
                                                   **layer.info()},
        "seconds": round(time.perf_counter() - started, 3),
        "bundle_provenance": bundle.meta.get("provenance", {}),
    }
    return InferResult(kind, float(fps), arrays, provenance, lipsync=report)


def _transcript(model, raw: np.ndarray, request: InferRequest, semantic: bool,
                progress: Progress) -> tuple[dict | None, torch.Tensor | None]:
    """Align the request's transcript (if any): (what the provenance records, the teacher's sentence
    vector to fuse instead of the audio-predicted one, or None). A transcript that does not fit the
    audio gives (a notice, None): the audio-only result."""
    if request.text is None or not request.text.strip():
        return None, None
    from .transcript import align_transcript, teacher_vector

    progress("align", 0.0)
    found = align_transcript(raw, request.text)
    progress("align", 1.0)
    info = found.summary()
    info["phones"] = found.phones  # for _closures and the lip-sync report; removed after them
    info["phone_words"] = found.phone_words
    if not found.ok:
        return info, None
    width = model.semantic.teacher_width if semantic else None
    if width is None:  # (b) needs a semantic encoder trained on our teacher (the default's); say why not
        info["semantic_from_text"] = False
        info["semantic_note"] = ("Wav2Sem is off" if not semantic else
                                 "this model's semantic encoder was not trained on the text teacher")
        return info, None
    vector = teacher_vector(request.text)
    if vector.numel() != width:
        info["semantic_from_text"] = False
        info["semantic_note"] = f"the semantic encoder predicts {width} values, the teacher gives {vector.numel()}"
        return info, None
    info["semantic_from_text"] = True
    return info, vector


# why a vertex model (offsets, compact) gets no closures: it has no named lip controls to move
CONTROLS_ONLY = "closures are enforced on control models only (this one writes vertex offsets)"


def _closures(info: dict, kind: str, arrays: dict, fps: float) -> dict:
    """(a) for a controls result: the lips close at every aligned /p b m/. Vertex models (offsets,
    compact) have no named lip controls to move, so their motion is left as the model made it."""
    from .transcript import enforce_closures

    phones = info["phones"]
    if info.get("notice"):
        return info
    if kind == "controls":
        arrays["weights"], info["closures"] = enforce_closures(arrays["weights"], [str(n) for n in arrays["names"]],
                                                               phones, fps)
    else:
        info["closures"] = 0
        info["closures_note"] = CONTROLS_ONLY
    return info


def _aligned(transcript: dict | None) -> bool:
    """A transcript was given and fits the audio (its closures were made)."""
    return transcript is not None and not transcript.get("notice")


def _recognised_closures(kind: str, arrays: dict, fps: float, raw: np.ndarray,
                         progress: Progress) -> tuple[dict, tuple[list, str] | None]:
    """Close the lips at the /p b m/ of the recognised words (``close_recognised``): (what the provenance
    records, the recognised phones and note for the report, which then need not recognise again; None
    when recognition did not run)."""
    from .lipsync_report import recognised_phones
    from .transcript import enforce_closures

    info: dict = {"closures": 0, "note": ""}
    if kind != "controls":
        info["note"] = CONTROLS_ONLY
        return info, None
    progress("report", 0.0)
    try:
        phones, note = recognised_phones(raw, progress)
    except Cancelled:
        raise
    except Wav2SemError as exc:  # PocketSphinx is missing: the model's own motion stands, the note says why
        info["note"] = f"{exc.message} {exc.hint}".strip()
        return info, None
    arrays["weights"], info["closures"] = enforce_closures(
        arrays["weights"], [str(n) for n in arrays["names"]], [(p, s, e) for p, _, s, e in phones], fps)
    info["note"] = note
    return info, (phones, note)


def _bad(message: str, hint: str) -> Wav2SemError:
    return Wav2SemError("bad_request", message, hint)


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
