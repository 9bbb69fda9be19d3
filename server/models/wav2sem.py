"""The Wav2Sem module: a semantic encoder whose utterance vector is fused into every frame.

Fusion happens on the host's 768-d phonetic frames, before the host's
``audio_feature_map``. Two forms exist in the released code:

* ``official``   -- what the released CodeTalker+Wav2Sem ``predict`` computes: the raw
  mean vector is added (the trained ``bert_feature_map`` layer is skipped);
* ``consistent`` -- what training computed: ``project(mean)`` is added. This is the
  default for bundles we build, since it is the function the decoder was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .checkpoints import load_exactly, map_wav2bert, read_state_dict
from .encoders import SemanticEncoder, load_encoder_config

FUSION_MODES = ("official", "consistent")


class SemanticFusion(nn.Module):
    """Adds one utterance vector to every phonetic frame: ``frames + vector`` or ``frames + project(vector)``."""

    def __init__(self, encoder: nn.Module, vector_width: int, frame_width: int, fusion: str = "consistent") -> None:
        super().__init__()
        if fusion not in FUSION_MODES:
            raise ValueError(f"fusion must be one of {FUSION_MODES}, not {fusion!r}")
        if fusion == "official" and vector_width != frame_width:
            raise ValueError("official fusion adds the raw vector: widths must match")
        self.encoder = encoder
        self.project = nn.Linear(vector_width, frame_width)
        self.fusion = fusion

    @property
    def teacher_width(self) -> int | None:
        """The width of the text teacher's embedding this encoder was trained to predict from audio,
        or None when it was not trained on a teacher we have (official Wav2Sem encoders)."""
        return self.encoder.spec.out_width if isinstance(self.encoder, SemanticHead) else None

    def vector(self, source: torch.Tensor, given: torch.Tensor | None = None) -> torch.Tensor:
        """What the semantic encoder reads (audio, or phonetic states) -> (B, frame_width).

        ``given`` (B, vector_width) replaces the encoder's utterance vector: the teacher's embedding
        of a known transcript, i.e. the target the encoder was trained to predict from the audio.
        """
        mean = self.encoder(source) if given is None else given.to(self.project.weight)
        return mean if self.fusion == "official" else self.project(mean)

    def forward(self, frames: torch.Tensor, source: torch.Tensor, given: torch.Tensor | None = None) -> torch.Tensor:
        return frames + self.vector(source, given)[:, None, :]


@dataclass
class SemanticHeadSpec:
    """A small transformer on the (frozen) phonetic encoder's states, mean-pooled to a vector."""

    in_width: int
    width: int = 192
    layers: int = 2
    heads: int = 4
    out_width: int = 384  # the text teacher's embedding size


class SemanticHead(nn.Module):
    def __init__(self, spec: SemanticHeadSpec) -> None:
        super().__init__()
        self.spec = spec
        self.inp = nn.Linear(spec.in_width, spec.width)
        layer = nn.TransformerEncoderLayer(
            spec.width, spec.heads, 2 * spec.width, dropout=0.1, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, spec.layers, enable_nested_tensor=False)
        self.out = nn.Linear(spec.width, spec.out_width)

    def frames(self, states: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, in) -> (B, T, out); ``mask`` (B, T) True where padded."""
        return self.out(self.blocks(self.inp(states), src_key_padding_mask=mask))

    def forward(self, states: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, in) -> (B, out): the time-mean of the per-frame outputs (padding excluded)."""
        per_frame = self.frames(states, mask)
        if mask is None:
            return per_frame.mean(dim=1)
        keep = (~mask).unsqueeze(-1).to(per_frame.dtype)
        return (per_frame * keep).sum(1) / keep.sum(1).clamp(min=1)


def build_semantic(config, frame_width: int, fusion: str) -> SemanticFusion:
    """A fusion around an HF wav2vec2-architecture encoder (Wav2Sem) or a semantic head."""
    if isinstance(config, SemanticHeadSpec):
        return SemanticFusion(SemanticHead(config), config.out_width, frame_width, fusion)
    return SemanticFusion(SemanticEncoder(config), config.hidden_size, frame_width, fusion)


def load_semantic_encoder(checkpoint: str | Path, config_dir: str | Path) -> SemanticEncoder:
    """An official standalone Wav2Sem file (``{'state_dict': Wav2Bert...}``) as an eval-mode encoder."""
    encoder = SemanticEncoder(load_encoder_config(config_dir))
    state = map_wav2bert(read_state_dict(checkpoint), encoder.model)
    load_exactly(encoder.model, state, Path(checkpoint).name)
    return encoder.eval()
