"""Tiny but real model bundles for tests: a small Hugging Face wav2vec2 config saved with
``save_pretrained`` and reloaded, random weights, written with the real ``save_bundle``."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor

from server.models.bundle import save_bundle
from server.models.codetalker import VQSpec
from server.models.encoders import load_encoder_config
from server.models.host import HostSpec
from server.models.registry import host_class

SUBJECTS = ["alice", "bob", "carol"]


def tiny_encoder_dir(folder: Path, hidden: int = 32) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = Wav2Vec2Config(
        hidden_size=hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=4,
    )
    config.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False).save_pretrained(folder)
    return folder


def make_tiny_bundle(
    folder: Path,
    arch: str = "faceformer",
    n_vertices: int = 5023,
    semantic: bool = False,
    seed: int = 0,
    scale: float = 0.02,
) -> Path:
    """A bundle whose offsets are non-trivial (a few millimetres) for any speech input."""
    torch.manual_seed(seed)
    enc_dir = tiny_encoder_dir(folder.parent / f"{folder.name}-encoder")
    config = load_encoder_config(enc_dir)
    spec = HostSpec(arch, n_vertices, 30.0, "interpolate", 30, 16, 4, 1, 32, list(SUBJECTS))
    vq = VQSpec(hidden=16, n_layers=1, n_heads=2, intermediate=32, codes_per_frame=1, code_dim=16, n_codes=32)
    model = host_class(arch).from_meta(spec, config, config if semantic else None, "consistent", {"vq": asdict(vq)})
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.normal_(0.0, 0.3)
        out = model.output_layer
        out.weight.mul_(scale / 0.3 * 0.1)
        if out.bias is not None:
            out.bias.mul_(scale / 0.3 * 0.1)
    return save_bundle(model, folder, encoder_dir=enc_dir, provenance={"made_by": "tests"}, force=True)


def speech_like(path: Path, seconds: float = 2.0, rate: int = 22050, seed: int = 0) -> Path:
    """A voiced, syllable-rhythm signal (harmonics under a 4 Hz envelope) written as WAV."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * t)) ** 2
    signal = 0.2 * voice * envelope + 0.003 * rng.standard_normal(len(t))
    sf.write(path, signal.astype(np.float32), rate)
    return path
