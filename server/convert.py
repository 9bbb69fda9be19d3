"""Build a model bundle from official checkpoint files (FaceFormer, CodeTalker, Wav2Sem).

Dimensions are read from the tensors themselves, so shrunk or enlarged variants convert
as long as their layout is the official one. What cannot be read from shapes (attention
head counts, the dataset's frame rate) comes from the dataset preset or an option.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from wav2sem_contract.errors import ModelError

from . import __version__
from .models.bundle import save_bundle
from .models.checkpoints import load_exactly, map_wav2bert, need, read_state_dict, take_prefix
from .models.encoders import hf_weights_file, load_encoder_config
from .models.host import HostModel, Progress, no_progress
from .models.registry import host_class
from .safe_output import check_output_folder

VOCASET_SUBJECTS = [
    "FaceTalk_170728_03272_TA",
    "FaceTalk_170904_00128_TA",
    "FaceTalk_170725_00137_TA",
    "FaceTalk_170915_00223_TA",
    "FaceTalk_170811_03274_TA",
    "FaceTalk_170913_03279_TA",
    "FaceTalk_170904_03276_TA",
    "FaceTalk_170912_03278_TA",
]
BIWI_SUBJECTS = ["F2", "F3", "F4", "M3", "M4", "M5"]

DATASETS = {
    # fps, ALiBi/PPE period, audio alignment, training subjects in style-index order
    "vocaset": {"fps": 30.0, "period": 30, "alignment": "interpolate", "subjects": VOCASET_SUBJECTS},
    "BIWI": {"fps": 25.0, "period": 25, "alignment": "pairs", "subjects": BIWI_SUBJECTS},
}


def _dataset(name: str) -> dict:
    for key, preset in DATASETS.items():
        if key.lower() == name.lower():
            return preset
    raise ModelError("bad_request", f"Unknown dataset '{name}'.", "Use vocaset or BIWI.")


def _check_subjects(n_styles: int, subjects: list[str], source: str) -> None:
    if n_styles != len(subjects):
        raise ModelError(
            "checkpoint_mismatch",
            f"{source} has {n_styles} speaking styles but {len(subjects)} subject names were given.",
            "Pass --subjects with the training subjects in their training order.",
        )


def _encoder_state(state: dict, encoder_dir: Path, source: str) -> dict:
    """The host's fine-tuned encoder weights; the Hugging Face release only if the file has none."""
    if any(k.startswith("audio_encoder.") for k in state):
        return state
    released = hf_weights_file(encoder_dir)
    if released is None:
        raise ModelError(
            "checkpoint_mismatch",
            f"{source} carries no audio encoder weights and {encoder_dir} has none either.",
            "Use an encoder folder with model.safetensors, or the full host checkpoint.",
        )
    base = {}
    for key, value in read_state_dict(released).items():
        # A *ForCTC release (e.g. wav2vec2-base-960h) nests the base model and adds a CTC head.
        for prefix in ("wav2vec2.", "hubert."):
            key = key.removeprefix(prefix)
        if not key.startswith(("lm_head.", "dropout.", "quantizer.", "project_")):
            base[f"audio_encoder.{key}"] = value
    return {**state, **base}


def _semantic_state(state: dict, wav2sem: str | None, model: HostModel, fusion: str, source: str) -> dict:
    """``semantic.*`` entries from ``Wav2Bert.*`` in the host file or a standalone Wav2Sem file."""
    sem = take_prefix(state, "Wav2Bert.")
    if wav2sem:
        sem = read_state_dict(wav2sem)
    out = {
        f"semantic.encoder.model.{k}": v
        for k, v in map_wav2bert(sem, model.semantic.encoder.model).items()
    }
    project = take_prefix(state, "bert_feature_map.")
    if project:
        out.update({f"semantic.project.{k}": v for k, v in project.items()})
    elif fusion == "consistent":
        raise ModelError(
            "checkpoint_mismatch",
            f"{source} has no trained 'bert_feature_map', which the consistent fusion needs.",
            "Use --fusion official to add the raw semantic vector, or a checkpoint trained with Wav2Sem.",
        )
    else:  # official fusion never uses the projection; keep it as an explicit identity
        width = model.semantic.project.out_features
        out["semantic.project.weight"] = torch.eye(width)
        out["semantic.project.bias"] = torch.zeros(width)
    return out


def _file_id(path: str | Path) -> dict:
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return {"file": Path(path).name, "sha256": digest}


def convert(
    *,
    arch: str,
    checkpoint: str,
    encoder: str,
    dataset: str,
    out: str,
    subjects: list[str] | None = None,
    vqvae: str | None = None,
    wav2sem: str | None = None,
    wav2sem_config: str | None = None,
    fusion: str = "consistent",
    n_head: int = 4,
    vq_heads: int = 8,
    force: bool = False,
    progress: Progress = no_progress,
) -> Path:
    """Convert official checkpoint file(s) into a bundle at ``out``; returns its path.

    ``out`` is checked before anything is read (see ``safe_output``): an existing bundle
    there is replaced only with ``force``, and nothing else is ever removed. ``progress(stage,
    fraction)`` hears of each stage (reading, mapping, hashing, saving) as it starts.
    """
    inputs = (checkpoint, encoder, vqvae, wav2sem, wav2sem_config)
    check_output_folder(out, force=force, inputs=[p for p in inputs if p])
    host_class(arch)  # an unknown name is refused before any file is read
    preset = _dataset(dataset)
    subjects = subjects or preset["subjects"]
    source = Path(checkpoint).name
    progress("reading", 0.0)
    state = _encoder_state(read_state_dict(checkpoint), Path(encoder), source)
    enc_config = load_encoder_config(encoder)
    has_semantic = bool(wav2sem) or any(k.startswith("Wav2Bert.") for k in state)
    if not has_semantic and any(k.startswith("bert_feature_map.") for k in state):
        raise ModelError(
            "checkpoint_mismatch",
            f"{source} was trained with Wav2Sem but does not include the semantic encoder (Wav2Bert.*).",
            "Pass the Wav2Sem semantic encoder checkpoint with --wav2sem.",
        )
    sem_dir = Path(wav2sem_config or encoder)
    sem_config = load_encoder_config(sem_dir) if has_semantic else None
    host = host_class(arch)
    spec = host.official_spec(state, preset, subjects, n_head, source)
    width = need(state, "audio_feature_map.weight", source).shape[1]
    if width != enc_config.hidden_size:
        raise ModelError(
            "checkpoint_mismatch",
            f"{source} expects {width}-wide audio features but the encoder config gives {enc_config.hidden_size}.",
            "Pass the encoder folder the model was trained with.",
        )
    progress("mapping", 0.0)
    style = need(state, host.official_style_key, source)
    _check_subjects(style.shape[1 if host.official_style_transposed else 0], subjects, source)
    options = {"vqvae": vqvae, "vq_heads": vq_heads}
    model, mapped = host.from_official(spec, enc_config, sem_config, fusion, state, source, options)
    if has_semantic:
        mapped = {k: v for k, v in mapped.items() if not k.startswith("semantic.")}
        mapped.update(_semantic_state(state, wav2sem, model, fusion, source))
    load_exactly(model, mapped, source)
    files = [checkpoint] + [f for f in (vqvae, wav2sem) if f]
    progress("hashing", 0.0)
    provenance = {
        "converted_by": f"wav2sem-lipsync {__version__}",
        "dataset": dataset,
        "sources": [_file_id(f) for f in files],
    }
    progress("saving", 0.0)
    return save_bundle(
        model, out, encoder_dir=encoder, semantic_dir=sem_dir, provenance=provenance,
        force=force, inputs=inputs,
    )
