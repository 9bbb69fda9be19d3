"""What FaceFormer and CodeTalker stage 2 share: audio front end, style table, motion input map.

A host turns normalised audio into per-frame memory vectors (phonetic frames, optionally
plus the Wav2Sem vector, then ``audio_proj``) and decodes them autoregressively. The first
token is the bare style vector; every later token is ``motion_in(previous offset) + style``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from wav2sem_contract.errors import Wav2SemError

from ..threads import parallel
from .checkpoints import layer_count, map_host, need
from .decoding import CausalDecoder
from .encoders import build_phonetic
from .wav2sem import build_semantic

Progress = Callable[[str, float], None]
# An encoder config: transformers' for wav2vec2/HuBERT, ours for Whisper (typed loosely so that
# reading this module never imports transformers).
PretrainedConfig = Any


def no_progress(stage: str, fraction: float) -> None:  # noqa: ARG001 - the default callback
    return None


@dataclass
class HostSpec:
    """Dimensions of a host decoder; everything a bundle needs to rebuild the module."""

    arch: str
    n_vertices: int
    fps: float
    alignment: str  # "interpolate" (VOCASET) or "pairs" (BIWI)
    period: int
    d_model: int
    n_head: int
    n_layers: int
    d_ff: int
    subjects: list[str]
    result: str = "offsets"  # offsets: 3V per frame; weights: one value per named control
    control_names: list[str] = field(default_factory=list)

    @property
    def out_dim(self) -> int:
        return len(self.control_names) if self.result == "weights" else 3 * self.n_vertices

    @property
    def audio_per_frame(self) -> int:
        return 1 if self.alignment == "interpolate" else 2


class StyleTable(nn.Module):
    """One vector per training subject; a style is any weighting of the rows (one-hot or a blend)."""

    def __init__(self, n_subjects: int, d_model: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_subjects, d_model))

    def forward(self, weights: torch.Tensor) -> torch.Tensor:
        return weights @ self.weight


class HostModel(nn.Module):
    """A host decoder. Subclasses declare what they are and can do as class attributes and are
    listed once in ``registry.ARCHITECTURES``; nothing outside them checks their type."""

    arch: ClassVar[str] = ""  # the registry name, stored in bundle.json
    description: ClassVar[str] = ""
    # the output layer is linear in a per-frame state, so generate_compact is exact
    exact_compact: ClassVar[bool] = False
    official_style_key: ClassVar[str] = ""  # the style table in the official checkpoint
    official_style_transposed: ClassVar[bool] = False
    convert_options: ClassVar[tuple[str, ...]] = ()  # extra convert() arguments this host reads
    bundle_fields: ClassVar[dict[str, type]] = {}  # extra bundle.json fields: name -> spec dataclass

    @classmethod
    def from_meta(cls, spec: HostSpec, encoder_config: PretrainedConfig, semantic_config: Any, fusion: str,
                  meta: dict[str, Any]) -> HostModel:
        """The (untrained) module a bundle's ``bundle.json`` describes."""
        return cls(spec, encoder_config, semantic_config, fusion)

    def bundle_extra(self) -> dict[str, Any]:
        """Fields this host adds to ``bundle.json`` (see ``bundle_fields``)."""
        return {}

    @classmethod
    def official_spec(cls, state: dict[str, torch.Tensor], preset: dict[str, Any], subjects: list[str],
                      n_head: int, source: str) -> HostSpec:
        """The dimensions of an official checkpoint, read from its tensors' shapes (the FaceFormer /
        CodeTalker stage-2 layout both hosts share; a host with another layout overrides this)."""
        d_model, out_dim = need(state, "vertice_map.weight", source).shape
        if out_dim % 3:
            raise Wav2SemError("checkpoint_mismatch", f"{source}: output width {out_dim} is not 3 x vertices.", "")
        return HostSpec(
            arch=cls.arch,
            n_vertices=out_dim // 3,
            fps=preset["fps"],
            alignment=preset["alignment"],
            period=preset["period"],
            d_model=d_model,
            n_head=n_head,
            n_layers=layer_count(state, "transformer_decoder.layers."),
            d_ff=need(state, "transformer_decoder.layers.0.linear1.weight", source).shape[0],
            subjects=list(subjects),
        )

    @classmethod
    def from_official(cls, spec: HostSpec, encoder_config: PretrainedConfig, semantic_config: Any, fusion: str,
                      state: dict[str, torch.Tensor], source: str, options: dict[str, Any]
                      ) -> tuple[HostModel, dict[str, torch.Tensor]]:
        """The module for an official checkpoint and that checkpoint's host weights under our names."""
        model = cls(spec, encoder_config, semantic_config, fusion)
        return model, model.official_host_weights(state)

    def official_host_weights(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """An official checkpoint's host weights under our names (not its stage-1 VQ-VAE or Wav2Bert keys)."""
        host_keys = {k: v for k, v in state.items() if not k.startswith(("autoencoder.", "Wav2Bert."))}
        return map_host(host_keys, self, self.official_style_key, self.official_style_transposed)

    @property
    def output_layer(self) -> nn.Linear:
        """The last layer, whose outputs are the offsets (or control weights)."""
        raise NotImplementedError

    @torch.no_grad()
    def generate(self, input_values: torch.Tensor, style_weights: torch.Tensor, semantic: bool = True,
                 progress: Progress = no_progress, *, semantic_vector: torch.Tensor | None = None) -> torch.Tensor:
        """(N,) audio -> (T, out_dim) per-frame output (offsets relative to the template, or control weights).

        ``semantic_vector``: see ``memory``."""
        progress("encode", 0.0)
        memory = self.memory(input_values, semantic, semantic_vector=semantic_vector)
        progress("encode", 1.0)
        return self.decode(memory, self.style(style_weights), progress)

    def decode(self, memory: torch.Tensor, style: torch.Tensor, progress: Progress = no_progress) -> torch.Tensor:
        """The host's own decoding of the encoder memory (S, d_model) for one style vector."""
        raise NotImplementedError

    def generate_compact(self, input_values: torch.Tensor, style_weights: torch.Tensor, semantic: bool = True,
                         progress: Progress = no_progress, *,
                         semantic_vector: torch.Tensor | None = None) -> dict[str, Any]:
        """Exact ``weights``, ``basis``, ``bias`` arrays; only where ``exact_compact``."""
        raise NotImplementedError(f"{self.arch} has no exact compact form")

    def __init__(
        self,
        spec: HostSpec,
        encoder_config: PretrainedConfig,
        semantic_config: PretrainedConfig | None = None,
        fusion: str = "consistent",
    ) -> None:
        super().__init__()
        self.spec = spec
        self.audio_encoder = build_phonetic(encoder_config, spec.alignment, spec.fps)
        width = self.audio_encoder.hidden_size
        self.semantic = build_semantic(semantic_config, width, fusion) if semantic_config else None
        self.audio_proj = nn.Linear(width, spec.d_model)
        self.motion_in = nn.Linear(spec.out_dim, spec.d_model)
        self.style = StyleTable(len(spec.subjects), spec.d_model)
        self.decoder = CausalDecoder(
            spec.d_model, spec.n_head, spec.d_ff, spec.n_layers, spec.period, spec.audio_per_frame
        )

    # -- inputs ---------------------------------------------------------------------------
    def style_weights(
        self, subject: str | int | None = None, subject2: str | int | None = None, blend: float = 1.0
    ) -> torch.Tensor:
        """Weights over the training subjects: one-hot, or ``blend * s1 + (1 - blend) * s2``."""
        n = len(self.spec.subjects)
        w = torch.zeros(n)
        w[self._subject_index(subject)] += blend if subject2 is not None else 1.0
        if subject2 is not None:
            if not 0.0 <= blend <= 1.0:
                raise Wav2SemError("bad_request", f"The blend weight {blend} is outside 0..1.", "Use 0..1.")
            w[self._subject_index(subject2)] += 1.0 - blend
        return w.to(self.audio_proj.weight.device)

    def _subject_index(self, subject: str | int | None) -> int:
        names = self.spec.subjects
        if subject is None:
            return 0
        if isinstance(subject, int) or (isinstance(subject, str) and subject.isdigit()):
            idx = int(subject)
            if 0 <= idx < len(names):
                return idx
        elif subject in names:
            return names.index(subject)
        raise Wav2SemError(
            "unknown_subject",
            f"The model has no subject (speaking style) called '{subject}'.",
            f"Choose one of: {', '.join(names)}.",
        )

    def memory(self, input_values: torch.Tensor, semantic: bool = True, *,
               semantic_vector: torch.Tensor | None = None) -> torch.Tensor:
        """(N,) audio (normalised if ``audio_encoder.normalized_input``) -> (S, d_model) decoder memory.

        ``semantic_vector`` (vector_width,), with ``semantic``: fused instead of the utterance vector the
        semantic encoder predicts from the audio (transcript mode: the teacher's embedding of the text).
        """
        device = self.audio_proj.weight.device
        x = input_values.reshape(1, -1).to(device)
        with parallel(device):
            frames, source = self.audio_encoder.encode(x)
            if semantic and self.semantic is not None:
                given = None if semantic_vector is None else semantic_vector.reshape(1, -1)
                frames = self.semantic(frames, source, given)
            return self.audio_proj(frames)[0]

    def n_frames(self, memory: torch.Tensor) -> int:
        return memory.shape[0] // self.spec.audio_per_frame

    @property
    def has_semantic(self) -> bool:
        return self.semantic is not None
