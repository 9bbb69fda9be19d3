"""Numerical parity with the official code: official-format checkpoints go through our
converter and bundle loader, and the outputs are compared with what the official code
produced (``../shared/fixtures/parity``). Relative error = max abs error / max abs offset."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import Wav2Vec2Config

from server.convert import convert
from server.models.bundle import load_bundle
from server.models.wav2sem import load_semantic_encoder
from tests.helpers import shared_fixture

TOLERANCE = 1e-4


def fixture(name: str):
    folder = shared_fixture("parity", name)
    meta = json.loads((folder / "meta.json").read_text())
    x = torch.from_numpy(np.load(folder / "input_values.npy"))
    return folder, meta, x


def expected_offsets(folder, name: str = "expected_predict.npy") -> np.ndarray:
    return np.load(folder / name) - np.load(folder / "template.npy").reshape(1, -1)


def relative_error(got: torch.Tensor, expected: np.ndarray) -> float:
    got = got.detach().numpy()
    assert got.shape == expected.shape
    return float(np.abs(got - expected).max() / np.abs(expected).max())


def converted(tmp_path, name: str, arch: str, checkpoint: str, **kwargs):
    folder, meta, x = fixture(name)
    out = convert(arch=arch, checkpoint=str(folder / checkpoint), encoder=str(folder / "wav2vec2"),
                  dataset="vocaset", out=str(tmp_path / name), **kwargs)
    return load_bundle(out).model, folder, meta, x


def test_faceformer_matches_official_predict(tmp_path):
    model, folder, meta, x = converted(tmp_path, "faceformer_vocaset", "faceformer", "faceformer_vocaset.pth")
    assert model.spec.subjects == meta["train_subjects"]
    err = relative_error(model.generate(x, model.style_weights(meta["subject_index"])), expected_offsets(folder))
    print(f"FaceFormer VOCASET relative error {err:.2e}")
    assert err <= TOLERANCE
    # the style really is selected by name: another subject gives another motion
    other = model.generate(x, model.style_weights(meta["train_subjects"][0]))
    assert relative_error(other, expected_offsets(folder)) > 1e-2


def test_codetalker_matches_official_predict(tmp_path):
    model, folder, meta, x = converted(tmp_path, "codetalker_vocaset", "codetalker", "stage2.pth.tar")
    err = relative_error(model.generate(x, model.style_weights(meta["subject_index"])), expected_offsets(folder))
    print(f"CodeTalker VOCASET relative error {err:.2e}")
    assert err <= TOLERANCE


@pytest.mark.parametrize("fusion,expected", [("official", "expected_predict.npy"),
                                             ("consistent", "expected_predict_consistent.npy")])
def test_codetalker_wav2sem_both_fusions(tmp_path, fusion, expected):
    model, folder, meta, x = converted(tmp_path, "codetalker_wav2sem_vocaset", "codetalker", "stage2.pth.tar",
                                       fusion=fusion)
    assert model.has_semantic and model.semantic.fusion == fusion
    got = model.generate(x, model.style_weights(meta["subject_index"]))
    err = relative_error(got, expected_offsets(folder, expected))
    print(f"CodeTalker+Wav2Sem {fusion} relative error {err:.2e}")
    assert err <= TOLERANCE
    # the two fusions differ, so this test tells which one ran
    other = "expected_predict_consistent.npy" if fusion == "official" else "expected_predict.npy"
    assert relative_error(got, expected_offsets(folder, other)) > 1e-2


def test_wav2sem_switch_gives_the_plain_host(tmp_path):
    model, folder, meta, x = converted(tmp_path, "codetalker_wav2sem_vocaset", "codetalker", "stage2.pth.tar",
                                       fusion="official")
    style = model.style_weights(meta["subject_index"])
    with_semantic = model.generate(x, style)
    plain = model.generate(x, style, semantic=False)
    # Wav2Sem changes the output: the switch really turns it off
    assert relative_error(plain, with_semantic.numpy()) > 1e-2
    assert relative_error(plain, expected_offsets(folder)) > 1e-2
    model.semantic = None  # the host without the module at all
    assert relative_error(plain, model.generate(x, style).numpy()) <= 1e-6


def test_wav2bert_standalone_matches_official(tmp_path):
    folder = shared_fixture("parity", "wav2bert_standalone")
    meta = json.loads((folder / "meta.json").read_text())
    Wav2Vec2Config(**meta["config"]).save_pretrained(tmp_path / "config")
    encoder = load_semantic_encoder(folder / "wav2bert.pth.tar", tmp_path / "config")
    x = torch.from_numpy(np.load(folder / "input_values.npy"))[None]
    with torch.no_grad():
        hidden = encoder.hidden(x)[0].numpy()
        mean = encoder(x)[0].numpy()
    expected_hidden, expected_mean = np.load(folder / "expected_hidden.npy"), np.load(folder / "expected_mean.npy")
    err_h = np.abs(hidden - expected_hidden).max() / np.abs(expected_hidden).max()
    err_m = np.abs(mean - expected_mean).max() / np.abs(expected_mean).max()
    print(f"Wav2Bert hidden {err_h:.2e}, mean {err_m:.2e}")
    assert hidden.shape == expected_hidden.shape == (meta["frames"], 768)
    assert err_h <= TOLERANCE and err_m <= TOLERANCE
