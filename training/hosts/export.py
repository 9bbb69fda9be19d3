"""Our FaceFormer weights as the state dict official FaceFormer saves (``torch.save(model.state_dict())``),
and CodeTalker stage 2's the same way (its style table and ``feat_map`` under the official names, no
stage-1 keys; ``python -m server convert --arch codetalker --checkpoint best.pth --vqvae STAGE1``).

The inverse of ``server/models/checkpoints.py:map_host`` (+ ``map_wav2bert`` for a Wav2Sem encoder,
stored under ``Wav2Bert.*`` with ``bert_feature_map.*`` as in CodeTalker+Wav2Sem files), so
``python -m server convert --arch faceformer --checkpoint best.pth`` builds a bundle from it. The
periodic encoding is tiled to the official table length (600 // period + 1 periods).
"""

from __future__ import annotations

import re

import torch

from server.models.host import HostModel

_RULES = [
    (r"^decoder\.layers\.(\d+)\.self_attn\.in_proj\.(weight|bias)$", r"transformer_decoder.layers.\1.self_attn.in_proj_\2"),
    (r"^decoder\.layers\.(\d+)\.self_attn\.out_proj\.", r"transformer_decoder.layers.\1.self_attn.out_proj."),
    (r"^decoder\.layers\.(\d+)\.cross_attn\.in_proj\.(weight|bias)$",
     r"transformer_decoder.layers.\1.multihead_attn.in_proj_\2"),
    (r"^decoder\.layers\.(\d+)\.cross_attn\.out_proj\.", r"transformer_decoder.layers.\1.multihead_attn.out_proj."),
    (r"^decoder\.layers\.(\d+)\.ff_in\.", r"transformer_decoder.layers.\1.linear1."),
    (r"^decoder\.layers\.(\d+)\.ff_out\.", r"transformer_decoder.layers.\1.linear2."),
    (r"^decoder\.layers\.(\d+)\.norm_self\.", r"transformer_decoder.layers.\1.norm1."),
    (r"^decoder\.layers\.(\d+)\.norm_cross\.", r"transformer_decoder.layers.\1.norm2."),
    (r"^decoder\.layers\.(\d+)\.norm_ff\.", r"transformer_decoder.layers.\1.norm3."),
    (r"^audio_proj\.", "audio_feature_map."),
    (r"^motion_in\.", "vertice_map."),
    (r"^motion_out\.", "vertice_map_r."),
    (r"^feat_map\.", "feat_map."),
    (r"^audio_encoder\.model\.", "audio_encoder."),
    (r"^semantic\.project\.", "bert_feature_map."),
    (r"^semantic\.encoder\.model\.feature_extractor\.", "Wav2Bert.FeatureExtractor."),
    (r"^semantic\.encoder\.model\.feature_projection\.", "Wav2Bert.FeatureProjection."),
    (r"^semantic\.encoder\.model\.encoder\.", "Wav2Bert.Encoder."),
]
_COMPILED = [(re.compile(p), r) for p, r in _RULES]
# torch's weight-norm parametrisation names -> the legacy names the official files carry
_WEIGHT_NORM = (("parametrizations.weight.original0", "weight_g"), ("parametrizations.weight.original1", "weight_v"))
OFFICIAL_MAX_LEN = 600


def _official_name(key: str) -> str:
    for pattern, repl in _COMPILED:
        new, n = pattern.subn(repl, key)
        if n:
            key = new
            break
    else:
        raise KeyError(f"no official name for {key}")
    for new, old in _WEIGHT_NORM:
        if key.endswith(new):
            key = key[: -len(new)] + old
    return key


def official_state(model: HostModel) -> dict[str, torch.Tensor]:
    """A plain ``name -> tensor`` dict in the official layout of the host (CPU, contiguous).

    CodeTalker stage 2 leaves out its stage-1 VQ-VAE, as official ``save_checkpoint(stage=2)`` drops
    every ``autoencoder`` key (``convert --vqvae`` reads it from the stage-1 file)."""
    out: dict[str, torch.Tensor] = {}
    period = model.spec.period
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        if key.startswith("vq."):
            continue
        if key == "decoder.ppe":
            out["PPE.pe"] = value.repeat(OFFICIAL_MAX_LEN // period + 1, 1)[None].contiguous()
        elif key == "style.weight":
            style = value.t() if model.official_style_transposed else value
            out[model.official_style_key] = style.contiguous()
        else:
            out[_official_name(key)] = value.contiguous()
    return out
