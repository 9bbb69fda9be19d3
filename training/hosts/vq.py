"""CodeTalker stage 1: the motion VQ-VAE to train, its training forward and loss, its official file.

The model is ``server.models.codetalker.MotionVQ`` (the inference code, exact against the official
one); training adds what inference never runs (read in ``Doubiiu/CodeTalker``, not copied):

- the dropout (p = 0.1) of the official ``PositionalEncoding``, applied after its constant vector
  in both the encoder and the decoder (the transformer blocks have none);
- the quantiser's straight-through output ``z + sg(z_q - z)`` and its loss
  ``beta * mean((sg(z_q) - z)^2) + mean((z_q - sg(z))^2)``, beta = 0.25 (``models/lib/quantizer.py``);
- ``metrics/loss.py:calc_vq_loss``: L1 reconstruction + quant_loss_weight (1.0) x that loss.

From scratch follows the official construction: ``nn.Linear``/``nn.Conv1d``/``nn.LayerNorm``
defaults (ours are the same modules) and the codebook uniform in +-1/n_codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from server.models.checkpoints import (
    STAGE1_BLOCK_PARTS,
    STAGE1_NAMES,
    load_exactly,
    map_stage1,
    ours_to_official,
    read_state_dict,
    rename,
    take_prefix,
)
from server.models.codetalker import MotionVQ, VQBlock, VQSpec, vq_spec_of
from server.models.decoding import periodic_encoding
from wav2sem_contract.errors import Wav2SemError

from ..datasets.layout import Layout

BETA = 0.25  # official VectorQuantizer(beta=0.25)
QUANT_LOSS_WEIGHT = 1.0  # config/*/stage1.yaml LOSS.quant_loss_weight
DROPOUT = 0.1  # official PositionalEncoding's
VQ_HEADS = 8  # official num_attention_heads (not stored in the checkpoint; convert's --vq-heads default)
OFFICIAL_PE_ROWS = 5000  # official PositionalEncoding(max_len=5000)
# config/{vocaset,BIWI}/stage1.yaml: hidden 1024, 6 layers, MLP 1536, codes per frame x code width
PRESETS = {"vocaset": {"codes_per_frame": 16, "code_projection": False, "output_bias": True},
           "biwi": {"codes_per_frame": 8, "code_projection": True, "output_bias": False}}
HIDDEN, LAYERS, N_CODES = 1024, 6, 256


def stage1_spec(layout: Layout, hidden: int | None = None) -> VQSpec:
    """The official stage-1 dimensions of the layout; ``hidden`` scales the width (code width = hidden / codes)."""
    preset = PRESETS[layout.name]
    h = hidden or HIDDEN
    codes = preset["codes_per_frame"]
    if h % codes or h % VQ_HEADS:
        raise Wav2SemError("bad_request", f"--feature-dim {h} is not a multiple of {codes} codes per frame and "
                           f"{VQ_HEADS} heads.", "Use a multiple of 16 (official: 1024).")
    return VQSpec(hidden=h, n_layers=LAYERS, n_heads=VQ_HEADS, intermediate=h * 3 // 2, codes_per_frame=codes,
                  code_dim=h // codes, n_codes=N_CODES, code_projection=preset["code_projection"],
                  output_bias=preset["output_bias"])


def build_stage1(layout: Layout, n_vertices: int, hidden: int | None = None) -> MotionVQ:
    model = MotionVQ(stage1_spec(layout, hidden), 3 * n_vertices)
    with torch.no_grad():
        bound = 1.0 / model.spec.n_codes
        nn.init.uniform_(model.codebook.weight, -bound, bound)
    return model


def read_stage1(path: str | Path, n_vertices: int) -> MotionVQ:
    """A trained stage-1 VQ-VAE from an official-format file (``{'state_dict': ...}`` of ``VQAutoEncoder``,
    or a stage-2 file that carries it under ``autoencoder.*``)."""
    state = read_state_dict(path)
    state = take_prefix(state, "autoencoder.") or state
    name = Path(path).name
    if "quantize.embedding.weight" not in state:
        raise Wav2SemError("bad_request", f"{name} is not a CodeTalker stage-1 checkpoint (no quantize.embedding).",
                           "Pass --vqvae with the best.pth of a codetalker-stage1 run (or an official stage-1 file).")
    post = state.get("encoder.encoder_linear_embedding_post.net.weight")
    width = post.shape[0] if post is not None else state["encoder.vertice_mapping.0.weight"].shape[0]
    spec = vq_spec_of(state, {"feat_map.weight": torch.empty(width, 0)}, VQ_HEADS, name)
    in_dim = state["encoder.vertice_mapping.0.weight"].shape[1]
    if in_dim != 3 * n_vertices:
        raise Wav2SemError("bad_request", f"{name} was trained on {in_dim // 3} vertices; the dataset's meshes have "
                           f"{n_vertices}.", "Train stage 1 on this dataset first (--arch codetalker-stage1).")
    model = MotionVQ(spec, in_dim)
    load_exactly(model, map_stage1(state), name)
    return model


# -- the training forward ------------------------------------------------------------------------

def _blocks(x: torch.Tensor, blocks: nn.ModuleList) -> torch.Tensor:
    block: VQBlock
    for block in blocks:
        x = block(x)
    return x


def encode(vq: MotionVQ, offsets: torch.Tensor, p: float) -> torch.Tensor:
    """(1, T, 3V) offsets -> (1, T, width) continuous codes, with the official dropout ``p``."""
    enc = vq.encoder
    x = F.leaky_relu(enc.vertex_in(offsets), enc.neg_slope)
    x = _blocks(F.dropout(enc.embed(enc.conv(x)) + enc.position, p), enc.blocks)
    return enc.post(x) if enc.post is not None else x


def decode(vq: MotionVQ, codes: torch.Tensor, p: float) -> torch.Tensor:
    """(1, T, width) codes -> (1, T, 3V) offsets, with the official dropout ``p``."""
    dec = vq.decoder
    h = dec.conv(dec.project_codes(codes))
    return dec.vertex_out(_blocks(F.dropout(dec.embed(h) + dec.position, p), dec.blocks))


def quantize(vq: MotionVQ, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The official quantiser: (straight-through codes, codebook + beta x commitment loss)."""
    zq = vq.quantize(z)
    loss = BETA * torch.mean((zq.detach() - z) ** 2) + torch.mean((zq - z.detach()) ** 2)
    return z + (zq - z).detach(), loss


@dataclass
class Stage1Loss:
    total: torch.Tensor
    reconstruction: torch.Tensor  # L1 of the offsets
    quantization: torch.Tensor
    offsets: torch.Tensor  # (1, T, 3V) reconstructed


def stage1_loss(vq: MotionVQ, vertices: torch.Tensor, template: torch.Tensor, dropout: float | None = None) -> Stage1Loss:
    """Official ``train_vq.py``: L1(decode(quantize(encode(x - template))) + template, x) + 1.0 x VQ loss.

    ``vertices`` (T, 3V), ``template`` (3V,); ``dropout`` defaults to 0.1 in train mode, 0 in eval."""
    p = (DROPOUT if vq.training else 0.0) if dropout is None else dropout
    target = (vertices - template.reshape(1, -1))[None]
    codes, quant = quantize(vq, encode(vq, target, p))
    offsets = decode(vq, codes, p)
    rec = F.l1_loss(offsets, target)  # = L1 of (offsets + template) against the vertices
    return Stage1Loss(rec + QUANT_LOSS_WEIGHT * quant, rec, quant, offsets)


# -- the official file ---------------------------------------------------------------------------

_BLOCK = re.compile(r"^(encoder|decoder)\.blocks\.(\d+)\.(.+)$")
_EXPORT_RULES = ours_to_official(STAGE1_NAMES)


def stage1_state(vq: MotionVQ) -> dict[str, torch.Tensor]:
    """Our weights as official ``VQAutoEncoder.state_dict()`` (the inverse of ``map_stage1``); the positional
    tables are the official 5000-row sinusoid, of which the official code only ever adds row 0."""
    out = {}
    for key, value in vq.state_dict().items():
        value = value.detach().cpu().contiguous()
        m = _BLOCK.match(key)
        if m:
            side, k, rest = m.groups()
            odd, official, ours = next(row for row in STAGE1_BLOCK_PARTS if rest.startswith(row[2]))
            out[f"{side}.{side}_transformer.net.{2 * int(k) + odd}.fn.{official}{rest[len(ours):]}"] = value
        elif key.endswith(".position"):
            side = key.split(".")[0]
            table = periodic_encoding(value.shape[0], OFFICIAL_PE_ROWS)[:, None]
            out[f"{side}.{side}_pos_embedding.pe"] = table
        else:
            out.update(rename({key: value}, _EXPORT_RULES, strict=True))
    return out
