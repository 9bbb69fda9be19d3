"""The FaceFormer to train: from scratch around an encoder folder, or from a bundle / official checkpoint.

From scratch follows official ``faceformer.py``'s construction: d = 64 (VOCASET) or 128 (BIWI),
4 heads, one decoder layer with a 2d feed-forward, the output layer (``vertice_map_r``) zero,
``nn.MultiheadAttention``'s init (Xavier in-projection, zero biases), the style table as
``nn.Linear(n_subjects, d, bias=False)`` initialises it, and the encoder's conv feature extractor
frozen. The encoder starts from the folder's released weights when it has them (wav2vec2-base-960h
in the official recipe), else from random init. A Wav2Sem semantic encoder (official standalone file)
is frozen and kept in eval mode; its fusion layer (``bert_feature_map``) is trained, as in
CodeTalker+Wav2Sem's training (``consistent`` fusion).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from server.models.bundle import load_bundle
from server.models.checkpoints import hf_audio_keys, load_exactly, map_wav2bert, read_state_dict
from server.models.codetalker import CodeTalker
from server.models.encoders import hf_weights_file, load_encoder_config
from server.models.faceformer import FaceFormer
from server.models.host import HostModel, HostSpec
from wav2sem_contract.errors import Wav2SemError

from ..datasets.layout import Layout

OFFICIAL = {"vocaset": {"period": 30, "alignment": "interpolate", "d_model": 64},
            "biwi": {"period": 25, "alignment": "pairs", "d_model": 128}}
N_HEAD = 4


def host_spec(layout: Layout, n_vertices: int, d_model: int | None = None) -> HostSpec:
    preset = OFFICIAL[layout.name]
    d = d_model or preset["d_model"]
    if d % N_HEAD:
        raise Wav2SemError("bad_request", f"--feature-dim {d} is not a multiple of {N_HEAD} heads.",
                           f"Use a multiple of {N_HEAD} (official: 64 VOCASET, 128 BIWI).")
    return HostSpec("faceformer", n_vertices, layout.fps, preset["alignment"], preset["period"], d, N_HEAD, 1,
                    2 * d, list(layout.style_order))


def init_decoder_layers(model: HostModel) -> None:
    """``nn.MultiheadAttention``'s init (Xavier in-projection, zero biases), as both official hosts get it."""
    with torch.no_grad():
        for layer in model.decoder.layers:
            for att in (layer.self_attn, layer.cross_attn):
                nn.init.xavier_uniform_(att.in_proj.weight)
                nn.init.zeros_(att.in_proj.bias)
                nn.init.zeros_(att.out_proj.bias)


def _official_init(model: HostModel) -> None:
    init_decoder_layers(model)
    with torch.no_grad():
        bound = 1.0 / math.sqrt(len(model.spec.subjects))
        nn.init.uniform_(model.style.weight, -bound, bound)
        nn.init.zeros_(model.output_layer.weight)
        nn.init.zeros_(model.output_layer.bias)


def _released_encoder(model: HostModel, encoder_dir: Path) -> bool:
    path = hf_weights_file(encoder_dir)
    if path is None:
        return False
    state = {}
    for key, value in read_state_dict(path).items():
        for prefix in ("wav2vec2.", "hubert."):  # a *ForCTC release nests the base model
            key = key.removeprefix(prefix)
        if not key.startswith(("lm_head.", "dropout.", "quantizer.", "project_")):
            state[key] = value
    target = model.audio_encoder.model
    load_exactly(target, hf_audio_keys(state, target), path.name)
    return True


def build_scratch(layout: Layout, n_vertices: int, encoder_dir: str | Path, d_model: int | None = None,
                  wav2sem: str | Path | None = None, wav2sem_config: str | Path | None = None) -> tuple[HostModel, str]:
    """A new FaceFormer and a one-line note of where its encoder weights came from."""
    config, sem_config = audio_configs(encoder_dir, wav2sem, wav2sem_config)
    model = FaceFormer(host_spec(layout, n_vertices, d_model), config, sem_config, "consistent")
    _official_init(model)
    return model, load_encoders(model, encoder_dir, wav2sem)


def audio_configs(encoder_dir: str | Path, wav2sem: str | Path | None, wav2sem_config: str | Path | None):
    """The audio encoder's config (wav2vec2/HuBERT only) and the Wav2Sem encoder's (None without Wav2Sem)."""
    config = load_encoder_config(encoder_dir)
    if config.model_type == "whisper":
        raise Wav2SemError("train_encoder", "Host training needs a wav2vec2/HuBERT audio encoder, not Whisper.",
                           "Pass --encoder with a Hugging Face wav2vec2 or HuBERT folder.")
    return config, load_encoder_config(wav2sem_config or encoder_dir) if wav2sem else None


def load_encoders(model: HostModel, encoder_dir: str | Path, wav2sem: str | Path | None) -> str:
    """The encoder folder's released weights (if any) and the Wav2Sem file; a note of where the weights came from."""
    note = "released weights" if _released_encoder(model, Path(encoder_dir)) else "random init (no weights in folder)"
    if wav2sem:
        target = model.semantic.encoder.model
        load_exactly(target, map_wav2bert(read_state_dict(wav2sem), target), Path(wav2sem).name)
    return note


def build_from(init: str | Path, layout: Layout, n_vertices: int, out: Path, encoder_dir: str | Path,
               wav2sem: str | None, wav2sem_config: str | None) -> HostModel:
    """A bundle folder, or an official checkpoint file (converted into ``out/init-bundle`` first)."""
    init = Path(init)
    if init.is_file():
        from server.convert import convert

        init = convert(arch="faceformer", checkpoint=str(init), encoder=str(encoder_dir), dataset=layout.name,
                       out=str(out / "init-bundle"), subjects=list(layout.style_order), wav2sem=wav2sem,
                       wav2sem_config=wav2sem_config, force=True)
    model = load_bundle(init).model
    if model.spec.arch != "faceformer" or model.spec.n_vertices != n_vertices:
        raise Wav2SemError("bad_request", f"{init} is a {model.spec.arch} model of {model.spec.n_vertices} vertices; "
                           f"the dataset's meshes have {n_vertices}.", "Start from a FaceFormer of this topology.")
    if len(model.spec.subjects) != len(layout.style_order):
        raise Wav2SemError("bad_request", f"{init} has {len(model.spec.subjects)} styles, the dataset's training "
                           f"split {len(layout.style_order)} subjects.", "Start from a model trained on these subjects.")
    return model


def freeze(model: HostModel) -> None:
    """Official: the conv feature extractor is frozen; the Wav2Sem encoder is frozen as a whole; so is
    CodeTalker's stage-1 VQ-VAE in stage 2 (official ``stage2.py`` sets ``requires_grad = False``)."""
    frozen = [model.audio_encoder.model.feature_extractor]
    if model.semantic is not None:
        frozen.append(model.semantic.encoder)
    if isinstance(model, CodeTalker):
        frozen.append(model.vq)
    for module in frozen:
        for p in module.parameters():
            p.requires_grad_(False)


def train_mode(model: HostModel) -> None:
    """Train mode, except the frozen semantic encoder (the released Wav2Sem code left it in train mode,
    so its dropout and LayerDrop made the semantic vector random during training only)."""
    model.train()
    if model.semantic is not None:
        model.semantic.encoder.eval()
    if isinstance(model, CodeTalker):  # official train_pred.py: model.autoencoder.eval()
        model.vq.eval()
