"""Our FaceFormer weights as the state dict official FaceFormer saves (``torch.save(model.state_dict())``),
and CodeTalker stage 2's the same way (its style table and ``feat_map`` under the official names, no
stage-1 keys; ``python -m server convert --arch codetalker --checkpoint best.pth --vqvae STAGE1``).

The inverse of ``server/models/checkpoints.py:map_host``, read from the same name tables (+ ``map_wav2bert``
for a Wav2Sem encoder, stored under ``Wav2Bert.*`` with ``bert_feature_map.*`` as in CodeTalker+Wav2Sem
files), so
``python -m server convert --arch faceformer --checkpoint best.pth`` builds a bundle from it. The
periodic encoding is tiled to the official table length (600 // period + 1 periods).
"""

from __future__ import annotations

import torch

from server.models.checkpoints import DECODER_NAMES, WAV2BERT_NAMES, ours_to_official, rename
from server.models.host import HostModel

# the loader's tables read the other way, plus what only a trained model has under our names
_RULES = ours_to_official([
    *DECODER_NAMES,
    ("feat_map.", "feat_map."),
    *(("Wav2Bert." + official, "semantic.encoder.model." + ours) for official, ours in WAV2BERT_NAMES),
])
# torch's weight-norm parametrisation names -> the legacy names the official files carry
_WEIGHT_NORM = (("parametrizations.weight.original0", "weight_g"), ("parametrizations.weight.original1", "weight_v"))
OFFICIAL_MAX_LEN = 600


def _official_name(key: str) -> str:
    key = next(iter(rename({key: None}, _RULES, strict=True)))
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
