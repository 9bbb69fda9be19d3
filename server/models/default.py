"""The embedded default model: Whisper tiny.en (frozen) -> [+ Wav2Sem semantic vector] ->
a small FaceFormer-style decoder -> ARKit-style control weights at 30 fps.

The semantic encoder is a small transformer head on the same frozen Whisper states,
trained (stage 1) to map the utterance onto the text teacher's sentence embedding; its
vector is fused into every frame through a trained projection (the "consistent" fusion).
"""

from __future__ import annotations

from wav2sem_contract.controls import CONTROLS, MOTION_FPS

from .faceformer import FaceFormer
from .host import HostSpec
from .wav2sem import SemanticHeadSpec
from .whisper import WhisperEncoderConfig

DECODER = {"d_model": 128, "n_head": 4, "n_layers": 2, "d_ff": 256}
SEMANTIC = {"width": 192, "layers": 2, "heads": 4, "out_width": 384}


def default_spec() -> HostSpec:
    return HostSpec(
        arch="faceformer",
        n_vertices=0,
        fps=MOTION_FPS,
        alignment="interpolate",
        period=int(MOTION_FPS),
        subjects=["default"],
        result="weights",
        control_names=list(CONTROLS),
        **DECODER,
    )


def semantic_spec(whisper: WhisperEncoderConfig) -> SemanticHeadSpec:
    return SemanticHeadSpec(in_width=whisper.d_model, **SEMANTIC)


def build_default(whisper: WhisperEncoderConfig, semantic: bool) -> FaceFormer:
    return FaceFormer(default_spec(), whisper, semantic_spec(whisper) if semantic else None, "consistent")
