"""precision exact | fast (wav2sem_contract/request.py, server/models/precision.py) and the [0, 1]
range of control weights."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from server.models.bundle import default_bundle, load_bundle, with_precision
from server.models.precision import hf_encoders
from server.pipeline import run
from tests.bundles import make_tiny_bundle, speech_like
from tests.helpers import REPO
from wav2sem_contract.errors import Wav2SemError
from wav2sem_contract.request import InferRequest


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    bundle = make_tiny_bundle(folder / "bundle", semantic=True)
    return bundle, speech_like(folder / "speech.wav", 2.0)


def test_request_precision_is_exact_by_default_and_travels():
    request = InferRequest(audio="a.wav")
    assert request.precision == "exact"
    message = InferRequest(audio="a.wav", precision="fast").to_message("r1")
    assert message["precision"] == "fast"
    assert InferRequest.from_message(message).precision == "fast"
    assert InferRequest.from_message({"type": "infer", "audio": "a.wav"}).precision == "exact"  # older clients


@pytest.mark.parametrize("value", ["faster", "", "EXACT"])
def test_unknown_precision_is_refused(value):
    with pytest.raises(Wav2SemError, match="precision"):
        InferRequest(audio="a.wav", precision=value).validate()


def test_precision_of_the_wrong_type_is_refused():
    with pytest.raises(Wav2SemError, match="'precision' field has the wrong type"):
        InferRequest.from_message({"type": "infer", "audio": "a.wav", "precision": 1})


def _linears(model: nn.Module) -> tuple[int, int]:
    """(float nn.Linear, dynamically quantised Linear) counts."""
    floats = sum(type(m) is nn.Linear for m in model.modules())
    quantised = sum("quantized" in type(m).__module__ for m in model.modules())
    return floats, quantised


def test_fast_quantises_the_wav2vec2_encoders_and_stays_close(tiny):
    bundle, audio = tiny
    exact = load_bundle(bundle)
    fast = with_precision(exact, "fast")
    assert fast.precision == "fast" and "int8" in fast.precision_note
    assert len(hf_encoders(fast.model)) == 2  # phonetic and Wav2Sem
    for encoder in hf_encoders(fast.model):
        assert _linears(encoder) == (0, _linears(encoder)[1]) and _linears(encoder)[1] > 0
    assert _linears(fast.model.decoder)[1] == 0  # the decoder, which feeds back its outputs, stays exact
    assert all(_linears(e)[1] == 0 for e in hf_encoders(exact.model))  # the exact model is untouched
    a = run(exact, InferRequest(audio=str(audio)))
    b = run(fast, InferRequest(audio=str(audio), precision="fast"))
    assert a.provenance["precision"] == "exact" and b.provenance["precision"] == "fast"
    dev = np.abs(a["offsets"] - b["offsets"]).max() / np.abs(a["offsets"]).max()
    assert 0 < dev < 0.2  # random N(0, 0.3) weights everywhere: far wilder than trained ones (next test)


def test_fast_deviation_at_wav2vec2_base_size():
    """Official dimensions (wav2vec2-base phonetic and Wav2Sem encoders, FaceFormer VOCASET), random
    weights: the number benchmarks/precision.py prints (0.4 % measured)."""
    from server.benchmark import _signal, build
    from server.models.precision import fast_variant

    exact = build("faceformer", "full")
    fast, note = fast_variant(exact, "cpu")
    assert "146 linear layers" in note
    x, style = _signal(2.0), exact.style(exact.style_weights(0))
    with torch.no_grad():
        a = exact.decode(exact.memory(x), style)
        b = fast.decode(fast.memory(x), style)
    dev = float((a - b).abs().max() / a.abs().max())
    print(f"wav2vec2-base size, fast vs exact: {dev:.1e} relative")
    assert 0 < dev < 0.02


def test_run_converts_an_exact_bundle_for_a_fast_request(tiny):
    bundle, audio = tiny
    result = run(load_bundle(bundle), InferRequest(audio=str(audio), precision="fast"))
    assert result.provenance["precision"] == "fast"
    with pytest.raises(Wav2SemError, match="loaded for fast"):
        run(load_bundle(bundle, precision="fast"), InferRequest(audio=str(audio)))


def test_the_default_model_runs_exact_under_fast():
    exact = load_bundle(default_bundle())
    fast = with_precision(exact, "fast")
    assert fast.model is exact.model and "Whisper stays exact" in fast.precision_note


def test_cli_precision_option(tiny, tmp_path):
    bundle, audio = tiny
    out = tmp_path / "fast.npz"
    proc = subprocess.run([sys.executable, "-m", "server", "infer", "--bundle", str(bundle), "--audio", str(audio),
                           "--out", str(out), "--precision", "fast", "--quiet"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    from wav2sem_contract.result import InferResult

    assert InferResult.load(out).provenance["precision"] == "fast"
    proc = subprocess.run([sys.executable, "-m", "server", "infer", "--audio", str(audio), "--out", str(out),
                           "--precision", "rough"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "--precision" in proc.stderr


def test_serve_keeps_exact_and_fast_apart(tiny):
    from server.service import Server

    bundle, _ = tiny
    server = Server(outbox=None, max_message=1 << 20)
    exact = server.bundle(str(bundle), "cpu", True, "exact")
    fast = server.bundle(str(bundle), "cpu", True, "fast")
    assert (exact.precision, fast.precision) == ("exact", "fast")
    assert server.bundle(str(bundle), "cpu", True, "fast") is fast

