"""Model bundles: one folder with everything inference needs, and nothing executable.

```
BUNDLE/
  bundle.json          architecture, dimensions, fps, subjects, fusion, provenance
  model.safetensors    all weights under our module names
  encoder/             Hugging Face config.json + preprocessor_config.json (phonetic encoder)
  semantic_encoder/    config.json of the Wav2Sem semantic encoder (when present)
```
"""

from __future__ import annotations

import json
import shutil
import sys
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from wav2sem_contract.errors import ModelError
from wav2sem_contract.request import PRECISIONS

from ..safe_output import BUNDLE_FORMAT, check_output_folder, commit_folder, staging_folder
from .bundle_schema import check_meta, inside, sha256_of, verified_file
from .checkpoints import load_exactly
from .encoders import load_encoder_config
from .host import HostModel, HostSpec
from .registry import host_class
from .wav2sem import SemanticHead, SemanticHeadSpec

FORMAT = BUNDLE_FORMAT
DEFAULT_BUNDLE = Path(__file__).resolve().parents[1] / "default_bundle"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"


def build_model(meta: dict, folder: Path, attn_implementation: str = "sdpa", initialise: bool = True) -> HostModel:
    """Instantiate the (untrained) module a bundle describes. ``initialise=False`` leaves the
    weights as allocated, for a caller that loads every one of them next (see ``_no_random_init``)."""
    spec = HostSpec(**meta["host"])
    encoder = load_encoder_config(inside(folder, meta["encoder"]["folder"], "encoder.folder"), attn_implementation)
    semantic = meta.get("semantic")
    if semantic is None:
        sem_config = None
    elif semantic.get("type") == "head":
        sem_config = SemanticHeadSpec(**semantic["spec"])
    else:
        sem_config = load_encoder_config(inside(folder, semantic["folder"], "semantic.folder"), attn_implementation)
    fusion = semantic["fusion"] if semantic else "consistent"
    with nullcontext() if initialise else _no_random_init():  # (after the configs: they import transformers)
        return host_class(meta["arch"]).from_meta(spec, encoder, sem_config, fusion, meta)


def _no_random_init() -> AbstractContextManager:
    """Skip the random initialisation of the modules ``load_bundle`` builds: ``load_exactly``
    (strict) then overwrites every parameter and buffer, so it is wasted work. For FaceFormer at
    the official size (two wav2vec2-base encoders) it was 3.0 s of CPU of a cold ``infer``; with
    transformers' ``no_init_weights`` 0.05 s. Only when transformers is already imported (a
    wav2vec2/HuBERT config was read): the embedded default imports none, and needs none here."""
    if "transformers" not in sys.modules:
        return nullcontext()
    try:
        from transformers.initialization import no_init_weights  # transformers 5
    except ImportError:
        try:
            from transformers.modeling_utils import no_init_weights  # transformers 4
        except ImportError:
            return nullcontext()
    return no_init_weights()


@dataclass
class LoadedBundle:
    """A loaded bundle: the eval-mode model and what was read with it (once, not per request)."""

    model: HostModel
    meta: dict
    path: Path
    variant: str  # "main", or "plain": the decoder trained without Wav2Sem
    normalize_audio: bool  # the encoder's preprocessing: zero-mean unit-variance input
    precision: str = "exact"  # or "fast": see models/precision.py
    precision_note: str = ""  # what the fast variant changed ("" for exact)


def default_bundle() -> Path:
    """The embedded default bundle that ships inside the repository (and the extension)."""
    return DEFAULT_BUNDLE


def read_meta(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / "bundle.json"
    if not path.is_file():
        raise ModelError(
            "bundle_missing",
            f"{folder} is not a model bundle (no bundle.json).",
            "Build one with `python -m server convert ...` or pick the bundle folder itself.",
        )
    try:
        meta = json.loads(path.read_text())
    except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, absurd nesting
        raise ModelError("bundle_invalid", f"{path} is not valid JSON.", "Rebuild the bundle.") from exc
    except OSError as exc:
        raise ModelError("bundle_invalid", f"{path} cannot be read ({exc.strerror}).", "Check its permissions.") from exc
    version = meta.get("format_version", 0) if isinstance(meta, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelError(
            "bundle_invalid",
            f"{folder} is not a bundle this version can read (format {version}).",
            "Update the add-on or rebuild the bundle with this version.",
        )
    if isinstance(meta.get("host"), dict):
        meta["host"].pop("extra", None)  # always empty; bundles from 0.1.0 still carry it
    check_meta(meta, folder)
    return meta


def variant_for(meta: dict, semantic: bool) -> str:
    """``plain`` when Wav2Sem is switched off and the bundle (its ``read_meta``) ships a decoder trained without it."""
    return "plain" if not semantic and meta.get("plain") else "main"


def load_bundle(folder: str | Path, device: str | torch.device = "cpu", variant: str = "main",
                precision: str = "exact") -> LoadedBundle:
    """Load a bundle folder into an eval-mode model on ``device``.

    ``variant="plain"`` loads the decoder the bundle's recipe trained without Wav2Sem (same
    seed and budget), sharing the main weights' frozen encoder. ``precision="fast"`` returns
    the measured approximation of ``models/precision.py`` where the model has one.
    """
    folder = Path(folder)
    meta = read_meta(folder)
    state = _read_weights(folder, meta, meta["weights"], "weights")
    for key, shape in (meta.get("derived") or {}).items():  # left out when saved: rebuilt from its formula
        state[key] = _derived(key, shape)
    if variant == "plain":
        meta = {**meta, "semantic": None}
        shared = {k: v for k, v in state.items() if k.startswith("audio_encoder.")}
        state = {**shared, **_read_weights(folder, meta, meta["plain"]["weights"], "plain.weights")}
    try:
        model = build_model(meta, folder, initialise=False)
    except (ValueError, TypeError, RuntimeError, AssertionError, ZeroDivisionError) as exc:
        raise ModelError(
            "bundle_invalid",
            f"The bundle {folder.name} describes a model that cannot be built ({type(exc).__name__}: {exc}).",
            "Rebuild the bundle with `python -m server convert`.",
        ) from exc
    load_exactly(model, state, f"The bundle {folder.name}")
    loaded = LoadedBundle(model.eval().to(device), meta, folder, variant, _normalizes(folder, meta))
    if precision == "exact":
        return loaded

    return with_precision(loaded, precision)


def _normalizes(folder: Path, meta: dict) -> bool:
    """The encoder folder's ``do_normalize`` (wav2vec2 processors normalise by default)."""
    cfg = inside(folder, meta["encoder"]["folder"], "encoder.folder") / "preprocessor_config.json"
    if not cfg.is_file():
        return True
    try:
        value = json.loads(cfg.read_text()).get("do_normalize", True)
    except (OSError, ValueError, AttributeError) as exc:
        raise ModelError("bundle_invalid", f"The bundle {folder.name} has an unreadable preprocessor_config.json.",
                         "Rebuild the bundle with `python -m server convert`.") from exc
    return bool(value)


def _read_weights(folder: Path, meta: dict, relative: str, field: str) -> dict[str, torch.Tensor]:
    path = verified_file(folder, meta, relative, field)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(
            "bundle_corrupt",
            f"The weights file {relative} of the bundle {folder.name} cannot be read ({exc}).",
            "Re-run `python -m server convert`.",
        ) from exc


def save_bundle(
    model: HostModel,
    out: str | Path,
    *,
    force: bool = False,
    inputs: tuple[str | Path | None, ...] = (),
    encoder_dir: str | Path | None = None,
    semantic_dir: str | Path | None = None,
    provenance: dict | None = None,
    half: bool = False,
    plain: HostModel | None = None,
) -> Path:
    """Write ``model`` as a bundle folder, atomically (see ``safe_output``).

    An existing bundle at ``out`` is replaced only with ``force``; a folder holding anything
    else, or holding one of ``inputs``, is refused before anything is written. Encoder configs are copied from ``encoder_dir``/``semantic_dir`` when given, else written
    from the model's own config objects. ``half`` stores floating-point weights as float16
    (they are loaded back into float32 modules).
    """
    target = check_output_folder(out, force=force, inputs=[p for p in inputs if p])
    tmp = staging_folder(target)
    try:
        _write_bundle(tmp, model, encoder_dir, semantic_dir, provenance, half, plain)
        commit_folder(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # our own staging folder (gone once committed), never the user's
        raise
    return Path(out)


def _write_bundle(
    tmp: Path,
    model: HostModel,
    encoder_dir: str | Path | None,
    semantic_dir: str | Path | None,
    provenance: dict | None,
    half: bool,
    plain: HostModel | None,
) -> None:
    encoder_config = _hf_config(model.audio_encoder)
    if encoder_dir:
        _copy_hf_config(encoder_dir, tmp / "encoder")
    else:
        encoder_config.save_pretrained(tmp / "encoder")
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": model.arch,
        "result": model.spec.result,
        "host": asdict(model.spec),
        "encoder": {"folder": "encoder", "type": encoder_config.model_type},
        "semantic": None,
        "weights": WEIGHTS,
        "provenance": provenance or {},
    }
    meta.update(model.bundle_extra())
    if model.semantic is not None:
        if isinstance(model.semantic.encoder, SemanticHead):
            meta["semantic"] = {"type": "head", "spec": asdict(model.semantic.encoder.spec)}
        else:
            if semantic_dir or encoder_dir:
                _copy_hf_config(semantic_dir or encoder_dir, tmp / "semantic_encoder")
            else:
                model.semantic.encoder.model.config.save_pretrained(tmp / "semantic_encoder")
            meta["semantic"] = {"type": "encoder", "folder": "semantic_encoder"}
        meta["semantic"]["fusion"] = model.semantic.fusion
    state = _state(model, half)
    derived = {k: list(v.shape) for k, v in state.items() if k == WHISPER_POSITIONS}
    if derived:
        meta["derived"] = derived
    save_file({k: v for k, v in state.items() if k not in derived}, str(tmp / WEIGHTS))
    if plain is not None:  # the same host trained without Wav2Sem; the encoder is shared
        own = {k: v for k, v in _state(plain, half).items() if not k.startswith("audio_encoder.")}
        save_file(own, str(tmp / "plain.safetensors"))
        meta["plain"] = {"weights": "plain.safetensors"}
    names = [WEIGHTS] + (["plain.safetensors"] if plain is not None else [])
    meta["checksums"] = {name: sha256_of(tmp / name) for name in names}
    (tmp / "bundle.json").write_text(json.dumps(meta, indent=1))


WHISPER_POSITIONS = "audio_encoder.model.encoder.embed_positions.weight"


def _derived(key: str, shape: list[int]) -> torch.Tensor:
    if key == WHISPER_POSITIONS:
        from .whisper import sinusoids

        return sinusoids(*shape)
    raise ModelError("bundle_corrupt", f"The bundle names an unknown derived weight {key}.", "Rebuild it.")


def _state(model: nn.Module, half: bool) -> dict:
    state = {}
    for key, value in model.state_dict().items():
        value = value.detach().contiguous().cpu()
        state[key] = value.half() if half and value.is_floating_point() else value
    return state


def _hf_config(audio_encoder: nn.Module):
    inner = audio_encoder.model
    return inner.encoder.config if hasattr(inner, "mel") else inner.config


def _copy_hf_config(src: str | Path, dst: Path) -> None:
    """Copy only configuration (the weights live in model.safetensors)."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "preprocessor_config.json"):
        if (Path(src) / name).is_file():
            shutil.copy(Path(src) / name, dst / name)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def with_precision(loaded: LoadedBundle, precision: str) -> LoadedBundle:
    """``loaded`` as ``precision`` asks: itself, or a fast copy (the exact model stays as it is)."""
    if precision not in PRECISIONS:
        raise ModelError("bad_request", f"Unknown precision '{precision}'.", "Use exact or fast.")
    if precision == loaded.precision:
        return loaded
    if loaded.precision != "exact":
        raise ModelError("bad_request", "This model was loaded for fast precision; exact needs the bundle "
                         "loaded again.", "Load the bundle with precision exact.")
    from .precision import fast_variant  # torch quantisation code, only when a fast model is asked for

    device = next(loaded.model.parameters()).device
    model, note = fast_variant(loaded.model, device)
    return replace(loaded, model=model, precision=precision, precision_note=note)
