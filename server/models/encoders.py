"""Audio encoders: Hugging Face wav2vec 2.0 / HuBERT, wrapped (not copied).

``PhoneticEncoder`` reproduces the hosts' custom forward: the 512-d conv features are
rate-converted to the motion frame rate *before* the feature projection (VOCASET: linear
interpolation to ``int((n / 50.0) * fps)`` frames; BIWI: two audio frames per motion
frame). ``SemanticEncoder`` is the plain model; its time-mean is Wav2Sem's utterance vector.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from wav2sem_contract.errors import ModelError

if TYPE_CHECKING:
    from .whisper import WhisperEncoderConfig

# model_type -> (config class, model class) in transformers. Imported only when a bundle with
# such an encoder is built: transformers' model modules cost seconds to import, and the
# embedded default (Whisper, our own module) needs none of them.
SUPPORTED_TYPES = {
    "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2Model"),
    "hubert": ("HubertConfig", "HubertModel"),
}
# The hosts label the conv rate 50 Hz although it is 49 frames/s; the frame count depends on it.
NOMINAL_AUDIO_RATE = 50.0


def _transformers(name: str) -> Any:
    import transformers

    return getattr(transformers, name)


def load_encoder_config(folder: str | Path, attn_implementation: str = "sdpa") -> Any:
    """Read a local encoder config (never a hub download): a transformers wav2vec2/HuBERT
    config, or for Whisper our own ``WhisperEncoderConfig`` (no transformers import)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ModelError(
            "encoder_missing",
            f"The audio encoder folder {folder} has no config.json.",
            "Point --encoder at a Hugging Face wav2vec2/HuBERT folder (config.json, preprocessor_config.json).",
        )
    raw = _refuse_remote_code(folder)
    if raw["model_type"] == "whisper":
        from .whisper import WhisperEncoderConfig

        return WhisperEncoderConfig.from_dict(raw, str(folder / "config.json"))
    config_class = _transformers(SUPPORTED_TYPES[raw["model_type"]][0])
    try:
        config = config_class.from_pretrained(str(folder), local_files_only=True)
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise ModelError(
            "encoder_invalid",
            f"The audio encoder config in {folder} cannot be read ({type(exc).__name__}).",
            "Use the config.json of a Hugging Face wav2vec2/HuBERT (or Whisper) release.",
        ) from exc
    return prepare_config(config, attn_implementation)


def _refuse_remote_code(folder: Path) -> dict[str, Any]:
    """A config that maps to code in the model folder is refused before transformers sees it;
    returns the parsed file."""
    try:
        raw = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise ModelError(
            "encoder_invalid", f"The audio encoder config {folder / 'config.json'} is not valid JSON.",
            "Use the config.json of a Hugging Face wav2vec2/HuBERT (or Whisper) release.",
        ) from exc
    if not isinstance(raw, dict):
        raise ModelError("encoder_invalid", f"The audio encoder config {folder / 'config.json'} is not a JSON object.",
                         "Use the config.json of a Hugging Face wav2vec2/HuBERT (or Whisper) release.")
    if "auto_map" in raw:
        raise ModelError(
            "encoder_remote_code",
            f"The audio encoder config in {folder} asks to run code shipped with the model (auto_map); "
            "this tool never runs code from model files.",
            "Use a standard wav2vec2/HuBERT config without auto_map.",
        )
    if raw.get("model_type") not in (*SUPPORTED_TYPES, "whisper"):
        raise ModelError(
            "encoder_unsupported",
            f"The audio encoder type '{raw.get('model_type')}' is not supported.",
            "Use a wav2vec2 or HuBERT encoder folder.",
        )
    return raw


def prepare_config(config: Any, attn_implementation: str = "sdpa") -> Any:
    """A transformers wav2vec2/HuBERT config set up for inference (a Whisper config is returned as is)."""
    if config.model_type == "whisper":  # our own encoder: always SDPA, nothing to switch off
        return config
    if config.model_type not in SUPPORTED_TYPES:
        raise ModelError(
            "encoder_unsupported",
            f"The audio encoder type '{config.model_type}' is not supported.",
            "Use a wav2vec2 or HuBERT encoder folder.",
        )
    # SpecAugment is training-only; with both probabilities at 0 the unused
    # ``masked_spec_embed`` parameter is not created (official checkpoints carry one; it is dropped).
    config.mask_time_prob = 0.0
    config.mask_feature_prob = 0.0
    # SDPA keeps attention memory linear in length (10-minute clips); eager differs by ~1e-6.
    config._attn_implementation = attn_implementation
    return config


def build_hf_model(config: Any) -> nn.Module:
    return _transformers(SUPPORTED_TYPES[config.model_type][1])(config)


def hf_weights_file(folder: str | Path) -> Path | None:
    """The released weights in an encoder folder, if any (safetensors preferred)."""
    for name in ("model.safetensors", "pytorch_model.bin"):
        path = Path(folder) / name
        if path.is_file():
            return path
    return None


class PhoneticEncoder(nn.Module):
    """Frame-level speech features at the motion frame rate, as the hosts compute them."""

    normalized_input = True  # takes the feature extractor's zero-mean unit-variance audio

    def __init__(self, config: Any, alignment: str, fps: float) -> None:
        super().__init__()
        if alignment not in ("interpolate", "pairs"):
            raise ValueError(f"unknown alignment {alignment!r}")
        self.model = build_hf_model(config)
        self.alignment = alignment
        self.fps = fps

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    def conv_features(self, input_values: torch.Tensor) -> torch.Tensor:
        """(B, N) normalised audio -> (B, n, C) conv features at ~50 Hz."""
        return self.model.feature_extractor(input_values).transpose(1, 2)

    def motion_frames(self, n_conv: int) -> int:
        """Number of motion frames the hosts decode for ``n_conv`` conv frames."""
        if self.alignment == "interpolate":
            return int((n_conv / NOMINAL_AUDIO_RATE) * self.fps)
        return n_conv // 2

    def forward(self, input_values: torch.Tensor, frame_num: int | None = None) -> torch.Tensor:
        """(B, N) normalised audio -> (B, S, hidden): S = motion frames (or 2x for pairs)."""
        feats = self.conv_features(input_values)
        if self.alignment == "interpolate":
            size = frame_num if frame_num is not None else self.motion_frames(feats.shape[1])
            feats = F.interpolate(feats.transpose(1, 2), size=size, mode="linear", align_corners=True)
            feats = feats.transpose(1, 2)
        else:
            feats = feats[:, : feats.shape[1] - feats.shape[1] % 2]
            if frame_num is not None:
                feats = feats[:, : 2 * frame_num]
        projected = self.model.feature_projection(feats)
        if isinstance(projected, tuple):  # wav2vec2 returns (projected, normed); HuBERT a tensor
            projected = projected[0]
        return self.model.encoder(projected)[0]

    def encode(self, input_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(frames at motion rate, what the semantic encoder reads: the audio itself)."""
        return self(input_values), input_values


class SemanticEncoder(nn.Module):
    """Wav2Sem's semantic encoder: the wav2vec2 architecture, mean-pooled over the clip at 50 Hz."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.model = build_hf_model(config)

    def hidden(self, input_values: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, T, hidden) last hidden states."""
        return self.model(input_values).last_hidden_state

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, hidden) the utterance's semantic vector."""
        return self.hidden(input_values).mean(dim=1)


class WhisperPhonetic(nn.Module):
    """Whisper's encoder states (50 Hz), linearly interpolated to the motion frame rate."""

    normalized_input = False  # Whisper computes its own log-mel from raw audio

    def __init__(self, config: WhisperEncoderConfig, fps: float) -> None:
        super().__init__()
        from .whisper import WhisperFrames

        self.model = WhisperFrames(config)
        self.fps = fps

    @property
    def hidden_size(self) -> int:
        return self.model.hidden_size

    def motion_frames(self, n_states: int) -> int:
        return int((n_states / NOMINAL_AUDIO_RATE) * self.fps)

    def to_motion_rate(self, states: torch.Tensor) -> torch.Tensor:
        """(B, T50, d) -> (B, T, d) as the VOCASET hosts interpolate (align_corners)."""
        size = self.motion_frames(states.shape[1])
        return F.interpolate(states.transpose(1, 2), size=size, mode="linear", align_corners=True).transpose(1, 2)

    def encode(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, N) raw audio -> (frames at motion rate, 50 Hz states for the semantic head)."""
        states = self.model(audio.reshape(-1).cpu().numpy())[None]
        return self.to_motion_rate(states), states

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.encode(audio)[0]


def build_phonetic(config: Any, alignment: str, fps: float) -> nn.Module:
    if config.model_type == "whisper":
        return WhisperPhonetic(config, fps)
    return PhoneticEncoder(config, alignment, fps)
