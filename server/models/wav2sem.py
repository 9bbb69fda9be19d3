"""The Wav2Sem module: a semantic encoder whose utterance vector is fused into every frame.

Fusion happens on the host's 768-d phonetic frames, before the host's
``audio_feature_map``. Two forms exist (see paper-spec §1.4):

* ``official``   -- what the released CodeTalker+Wav2Sem ``predict`` computes: the raw
  mean vector is added (the trained ``bert_feature_map`` layer is skipped);
* ``consistent`` -- what training computed: ``project(mean)`` is added. This is the
  default for bundles we build, since it is the function the decoder was trained on.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import PretrainedConfig

from .checkpoints import load_exactly, map_wav2bert, read_state_dict
from .encoders import SemanticEncoder, load_encoder_config

FUSION_MODES = ("official", "consistent")


class SemanticFusion(nn.Module):
    def __init__(self, config: PretrainedConfig, frame_width: int, fusion: str = "consistent") -> None:
        super().__init__()
        if fusion not in FUSION_MODES:
            raise ValueError(f"fusion must be one of {FUSION_MODES}, not {fusion!r}")
        self.encoder = SemanticEncoder(config)
        self.project = nn.Linear(config.hidden_size, frame_width)
        self.fusion = fusion
        if fusion == "official" and config.hidden_size != frame_width:
            raise ValueError("official fusion adds the raw vector: widths must match")

    def vector(self, input_values: torch.Tensor) -> torch.Tensor:
        """(B, N) normalised audio -> (B, frame_width) the vector added to every frame."""
        mean = self.encoder(input_values)
        return mean if self.fusion == "official" else self.project(mean)

    def forward(self, frames: torch.Tensor, input_values: torch.Tensor) -> torch.Tensor:
        return frames + self.vector(input_values)[:, None, :]


def load_semantic_encoder(checkpoint: str | Path, config_dir: str | Path) -> SemanticEncoder:
    """An official standalone Wav2Sem file (``{'state_dict': Wav2Bert...}``) as an eval-mode encoder."""
    encoder = SemanticEncoder(load_encoder_config(config_dir))
    state = map_wav2bert(read_state_dict(checkpoint), encoder.model)
    load_exactly(encoder.model, state, Path(checkpoint).name)
    return encoder.eval()
