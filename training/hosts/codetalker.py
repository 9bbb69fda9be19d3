"""CodeTalker stage 2 to train: built around a trained stage-1 VQ-VAE, and its teacher-forced loss.

Official ``models/stage2.py`` / ``config/*/stage2.yaml`` (read, not copied): d = 1024, 4 heads,
feed-forward 2d, 6 decoder layers (VOCASET) or 12 (BIWI), ``feat_map`` zero-initialised without
bias, the style table an ``nn.Embedding`` (N(0, 1) init), ``nn.TransformerDecoderLayer``'s attention
init; the stage-1 VQ-VAE loaded from its file, frozen and in eval mode. ``forward`` always
teacher-forces: tokens ``vertice_map([0, gt offsets shifted by one]) + style``, decoder, ``feat_map``,
the frozen quantiser (straight-through, so the motion loss reaches the predictor), the frozen
decoder; loss = motion_weight x MSE(vertices) + reg_weight x MSE(features, quantised stage-1 codes
of the ground truth), both weights 1.0.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from server.models.codetalker import CodeTalker
from server.models.host import HostSpec
from wav2sem_contract.errors import Wav2SemError

from ..datasets.layout import Layout
from .build import OFFICIAL, audio_configs, init_decoder_layers, load_encoders
from .forward import DROPOUT, decoder_states, training_memory
from .vq import read_stage1

D_MODEL, N_HEAD = 1024, 4
LAYERS = {"vocaset": 6, "biwi": 12}
MOTION_WEIGHT = REG_WEIGHT = 1.0  # config/*/stage2.yaml LOSS


def stage2_spec(layout: Layout, n_vertices: int, d_model: int | None = None) -> HostSpec:
    d = d_model or D_MODEL
    if d % N_HEAD:
        raise Wav2SemError("bad_request", f"--feature-dim {d} is not a multiple of {N_HEAD} heads.",
                           f"Use a multiple of {N_HEAD} (official: {D_MODEL}).")
    preset = OFFICIAL[layout.name]
    return HostSpec("codetalker", n_vertices, layout.fps, preset["alignment"], preset["period"], d, N_HEAD,
                    LAYERS[layout.name], 2 * d, list(layout.style_order))


def build_stage2(layout: Layout, n_vertices: int, encoder_dir: str | Path, vqvae: str | Path | None,
                 d_model: int | None = None, wav2sem: str | Path | None = None,
                 wav2sem_config: str | Path | None = None) -> tuple[CodeTalker, str]:
    """A new stage-2 CodeTalker over the stage-1 file ``vqvae``, and a note of where its encoder came from."""
    if not vqvae:
        raise Wav2SemError("bad_request", "Stage 2 needs the trained stage-1 VQ-VAE.",
                           "Pass --vqvae with the best.pth of a codetalker-stage1 run.")
    stage1 = read_stage1(vqvae, n_vertices)
    config, sem_config = audio_configs(encoder_dir, wav2sem, wav2sem_config)
    model = CodeTalker(stage2_spec(layout, n_vertices, d_model), config, stage1.spec, sem_config, "consistent")
    init_decoder_layers(model)
    with torch.no_grad():
        nn.init.normal_(model.style.weight)  # nn.Embedding's init
        nn.init.zeros_(model.feat_map.weight)
    model.vq.load_state_dict(stage1.state_dict())
    return model, load_encoders(model, encoder_dir, wav2sem)


def stage2_losses(model: CodeTalker, input_values: torch.Tensor, vertices: torch.Tensor, template: torch.Tensor,
                  style_weights: torch.Tensor, dropout: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(motion MSE, feature regression MSE) of official ``forward``; dropout 0.1 in train mode, 0 in eval."""
    p = (DROPOUT if model.training else 0.0) if dropout is None else dropout
    memory, usable = training_memory(model, input_values, vertices.shape[0])
    vertices = vertices[:usable]  # BIWI: the motion is cut where the audio ends
    target = (vertices - template.reshape(1, -1))[None]
    with torch.no_grad():  # official get_quant under the frozen, eval-mode autoencoder
        gt_codes = model.vq.quantize(model.vq.encoder(target))
    style = model.style(style_weights).reshape(1, 1, -1)
    shifted = torch.cat([torch.zeros_like(target[:, :1]), target[:, :-1]], dim=1)
    features = model.feat_map(decoder_states(model.decoder, model.motion_in(shifted) + style, memory, p))
    offsets = decode_features(model, features)
    return F.mse_loss(offsets + template.reshape(1, 1, -1), vertices[None]), F.mse_loss(features, gt_codes)


def decode_features(model: CodeTalker, features: torch.Tensor) -> torch.Tensor:
    """(1, T, width) predicted features -> (1, T, 3V) offsets through the frozen quantiser (straight-through)
    and stage-1 decoder, as official ``forward`` and the end of ``predict`` do."""
    q = model.vq.quantize(features)
    return model.vq.decoder(features + (q - features).detach())


def stage2_loss(model: CodeTalker, input_values: torch.Tensor, vertices: torch.Tensor, template: torch.Tensor,
                style_weights: torch.Tensor, dropout: float | None = None) -> torch.Tensor:
    motion, reg = stage2_losses(model, input_values, vertices, template, style_weights, dropout)
    return MOTION_WEIGHT * motion + REG_WEIGHT * reg
