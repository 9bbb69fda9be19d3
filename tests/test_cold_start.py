"""The embedded default runs without importing transformers, and our own Whisper encoder and
log-mel front end compute what transformers' do (the default model was trained through theirs)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from server.models.bundle import default_bundle, load_bundle
from server.models.whisper import LogMel, WhisperEncoderConfig, mel_filters
from tests.bundles import speech_like
from tests.helpers import REPO


@pytest.fixture(scope="module")
def default_model():
    return load_bundle(default_bundle()).model


def test_default_inference_imports_no_transformers(tmp_path):
    audio = speech_like(tmp_path / "s.wav", 1.0)
    code = (
        "import sys; from server.models.bundle import default_bundle, load_bundle; from server.pipeline import run; "
        "from wav2sem_contract.request import InferRequest; "
        f"r = run(load_bundle(default_bundle()), InferRequest(audio={str(audio)!r})); "
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('transformers', 'scipy', 'sympy')); "
        "print(r.kind, heavy)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["controls", "[]"], proc.stdout


def test_mel_filters_match_transformers():
    from transformers.audio_utils import mel_filter_bank

    theirs = mel_filter_bank(num_frequency_bins=201, num_mel_filters=80, min_frequency=0.0, max_frequency=8000.0,
                             sampling_rate=16000, norm="slaney", mel_scale="slaney")
    np.testing.assert_allclose(mel_filters(80), theirs, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("seconds", [0.5, 3.0, 30.0])
def test_log_mel_matches_transformers(tmp_path, seconds):
    from transformers import WhisperFeatureExtractor

    from server.audio import load_audio

    audio = load_audio(speech_like(tmp_path / "s.wav", seconds))
    theirs = WhisperFeatureExtractor(feature_size=80)(audio, sampling_rate=16000, return_tensors="np").input_features[0]
    ours = LogMel(80)(audio).numpy()
    assert ours.shape == theirs.shape == (80, 3000)
    assert np.abs(ours - theirs).max() < 1e-5


def test_encoder_matches_transformers_on_the_default_weights(tmp_path, default_model):
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder as TheirEncoder

    from server.audio import load_audio

    frames = default_model.audio_encoder.model
    config = WhisperConfig(**frames.encoder.config.to_dict())
    config._attn_implementation = "sdpa"
    theirs = TheirEncoder(config).eval()
    theirs.load_state_dict(frames.encoder.state_dict(), strict=True)
    mel = frames.log_mel(load_audio(speech_like(tmp_path / "s.wav", 4.0)))
    with torch.no_grad():
        expected = theirs(mel[None]).last_hidden_state[0]
        ours = frames.encode_mel(mel)
    err = float((ours - expected).abs().max() / expected.abs().max())
    print(f"Whisper encoder, ours vs transformers: {err:.1e} relative")
    assert ours.shape == expected.shape == (1500, 384) and err < 1e-5


def test_whisper_config_round_trips_and_transformers_reads_it(tmp_path):
    raw = json.loads((default_bundle() / "encoder" / "config.json").read_text())
    config = WhisperEncoderConfig.from_dict(raw)
    assert (config.d_model, config.encoder_layers, config.encoder_attention_heads) == (384, 4, 6)
    config.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text()) == raw
    from transformers import WhisperConfig

    assert WhisperConfig.from_pretrained(str(tmp_path)).encoder_ffn_dim == 1536


def test_broken_whisper_config_is_refused_with_the_field():
    from wav2sem_contract.errors import ModelError

    with pytest.raises(ModelError, match="encoder_layers"):
        WhisperEncoderConfig.from_dict({"model_type": "whisper", "d_model": 384, "encoder_attention_heads": 6,
                                        "encoder_ffn_dim": 1536})
    with pytest.raises(ModelError, match="d_model"):
        WhisperEncoderConfig.from_dict({"model_type": "whisper", "d_model": "384", "encoder_layers": 4,
                                        "encoder_attention_heads": 6, "encoder_ffn_dim": 1536})

