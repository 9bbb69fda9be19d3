"""The shipped default bundle: size, provenance, offline inference, and that it actually lip-syncs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from server.models.bundle import default_bundle
from tests.helpers import REPO, read_ply, shared_fixture
from wav2sem_contract.controls import CONTROLS, MOTION_FPS

BUNDLE = default_bundle()
SAMPLE = REPO / "assets" / "sample_sentence.wav"
SAMPLE_TEXT = "The sheep on the ship could not sleep, so Pam made a map."


def infer(*args, timeout=300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "server", "infer", *map(str, args), "--quiet"], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("default") / "sample.npz"
    proc = infer("--audio", SAMPLE, "--out", out)  # no --bundle: the embedded default
    assert proc.returncode == 0, proc.stderr
    with np.load(out) as npz:
        return {k: npz[k] for k in npz.files}


def test_shipped_bundle_is_small_and_says_how_it_was_made():
    size = sum(p.stat().st_size for p in BUNDLE.rglob("*") if p.is_file())
    assert size <= 20 * 2**20, f"{size / 2**20:.1f} MiB"
    meta = json.loads((BUNDLE / "bundle.json").read_text())
    prov = meta["provenance"]
    assert prov["recipe"]["sentences"] > 0 and prov["training_seconds"] > 0
    assert set(prov["evaluation"]) >= {"test_voice", "test_sentence"}
    assert meta.get("plain"), "the decoder trained without Wav2Sem ships too (--no-semantic)"


def test_default_inference_gives_named_controls_at_30_fps(result):
    seconds = sf.info(str(SAMPLE)).duration
    assert [str(n) for n in result["names"]] == CONTROLS
    assert float(result["fps"]) == MOTION_FPS
    assert abs(result["weights"].shape[0] - seconds * MOTION_FPS) <= 2
    w = result["weights"]
    assert np.isfinite(w).all() and w.std(axis=0)[CONTROLS.index("jawOpen")] > 0.05  # the jaw moves


def test_mouth_closes_on_the_bilabials_an_aligner_finds(result):
    pytest.importorskip("pocketsphinx", reason="the train extra (pocketsphinx) is not installed")
    from server.audio import load_audio
    from training.data.align import align

    _, phones = align(load_audio(str(SAMPLE)), SAMPLE_TEXT)
    close = result["weights"][:, CONTROLS.index("mouthClose")]
    frames = np.arange(len(close)) / MOTION_FPS
    inside = np.zeros(len(close), bool)
    for p, s, e in phones:
        if p in ("P", "B", "M"):
            inside |= (frames >= s - 0.02) & (frames < e + 0.02)
    assert inside.sum() >= 4
    # sheep ship sleep Pam made map: 6 bilabials; closure must peak there, not elsewhere
    assert close[inside].max() > 0.5 and close[inside].mean() > close[~inside].mean() + 0.15


def test_plain_variant_differs(result, tmp_path):
    out = tmp_path / "plain.npz"
    proc = infer("--audio", SAMPLE, "--out", out, "--no-semantic")
    assert proc.returncode == 0, proc.stderr
    with np.load(out) as npz:
        plain = npz["weights"]
    assert plain.shape == result["weights"].shape
    assert np.abs(plain - result["weights"]).max() > 1e-3


def test_offsets_on_a_flame_template(result, tmp_path):
    vertices, _ = read_ply(shared_fixture("flame", "FLAME_sample.ply"))
    np.save(tmp_path / "flame.npy", vertices)
    out = tmp_path / "flame.npz"
    proc = infer("--audio", SAMPLE, "--out", out, "--template", tmp_path / "flame.npy")
    assert proc.returncode == 0, proc.stderr
    with np.load(out) as npz:
        offsets, weights = npz["offsets"], npz["weights"]
    assert offsets.shape == (len(weights), 5023, 3)
    assert 0.002 < np.abs(offsets).max() < 0.05  # metres: millimetres to centimetres of motion
    np.testing.assert_allclose(weights, result["weights"], atol=1e-5)  # same controls underneath


def test_template_without_landmarks_is_refused(tmp_path):
    np.save(tmp_path / "mesh.npy", np.random.default_rng(0).normal(size=(100, 3)))
    proc = infer("--audio", SAMPLE, "--out", tmp_path / "x.npz", "--template", tmp_path / "mesh.npy")
    assert proc.returncode != 0
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "--landmarks" in line
    assert not (tmp_path / "x.npz").exists()
