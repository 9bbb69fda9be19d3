"""The command line as a user runs it: ``python -m server ...`` subprocesses, real files.

One bundle is converted from the official-format FaceFormer fixture (through the CLI) and
reused; ``infer`` runs on the real-speech fixture (22 kHz WAV).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from tests.helpers import REPO, shared_fixture

SUBJECT = "FaceTalk_170725_00137_TA"


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "server", *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=timeout,
    )


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    folder = shared_fixture("parity", "faceformer_vocaset")
    out = tmp_path_factory.mktemp("cli") / "faceformer"
    proc = cli("convert", "--arch", "faceformer", "--checkpoint", folder / "faceformer_vocaset.pth",
               "--encoder", folder / "wav2vec2", "--dataset", "vocaset", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "bundle written to" in proc.stderr
    assert (out / "bundle.json").is_file() and (out / "model.safetensors").is_file()
    return out


@pytest.fixture(scope="module")
def speech():
    return shared_fixture("speech", "voca_test_sentence.wav")


@pytest.fixture(scope="module")
def base_result(bundle, speech, tmp_path_factory):
    out = tmp_path_factory.mktemp("infer") / "base.npz"
    proc = cli("infer", "--bundle", bundle, "--audio", speech, "--out", out, "--subject", SUBJECT, "--quiet")
    assert proc.returncode == 0, proc.stderr
    with np.load(out) as npz:
        return {k: npz[k] for k in npz.files}


def test_infer_writes_offsets_fps_and_provenance(base_result, speech):
    info = sf.info(str(speech))
    assert info.samplerate != 16000  # used as recorded (22 kHz): resampling is part of the path
    offsets = base_result["offsets"]
    assert offsets.dtype == np.float32 and offsets.ndim == 3 and offsets.shape[1:] == (5023, 3)
    assert abs(offsets.shape[0] - info.duration * 30) <= 3
    assert np.isfinite(offsets).all() and np.abs(offsets).max() > 0
    assert float(base_result["fps"]) == 30.0
    provenance = json.loads(str(base_result["provenance"]))
    assert provenance["arch"] == "faceformer" and provenance["subject"] == SUBJECT
    assert provenance["semantic"] is False and provenance["audio"] == speech.name
    assert provenance["bundle_provenance"]["sources"][0]["file"] == "faceformer_vocaset.pth"


def test_infer_resamples_to_another_frame_rate(bundle, speech, base_result, tmp_path):
    out = tmp_path / "fps24.npz"
    proc = cli("infer", "--bundle", bundle, "--audio", speech, "--out", out, "--subject", SUBJECT, "--fps", "24")
    assert proc.returncode == 0, proc.stderr
    with np.load(out) as npz:
        offsets, fps = npz["offsets"], float(npz["fps"])
    n = base_result["offsets"].shape[0]
    assert fps == 24.0
    assert offsets.shape == (round(n * 24 / 30), 5023, 3)
    np.testing.assert_allclose(offsets[0], base_result["offsets"][0], atol=1e-6)  # t = 0 is the same instant
    # stderr is not a terminal here: no progress bar, just the summary line and the lip-sync report's line
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == f"{offsets.shape[0]} frames at 24 fps written to {out}" and len(lines) == 2, lines
    assert lines[1].startswith("lip sync: ") and "closure not measured" in lines[1]  # a vertex model


def test_no_semantic_on_a_plain_bundle(bundle, speech, base_result, tmp_path):
    out = tmp_path / "plain.npz"
    proc = cli("infer", "--bundle", bundle, "--audio", speech, "--out", out, "--subject", SUBJECT,
               "--no-semantic", "--quiet")
    assert proc.returncode == 0, proc.stderr
    with np.load(out) as npz:
        np.testing.assert_allclose(npz["offsets"], base_result["offsets"], atol=1e-6)


def test_bad_audio_is_one_error_line(bundle, tmp_path):
    text = tmp_path / "speech.wav"
    text.write_text("this is not audio\n")
    line = one_error_line(cli("infer", "--bundle", bundle, "--audio", text, "--out", tmp_path / "o.npz"))
    assert "speech.wav" in line
    assert not (tmp_path / "o.npz").exists()


def test_missing_bundle_is_one_error_line(speech, tmp_path):
    line = one_error_line(cli("infer", "--bundle", tmp_path / "no_bundle", "--audio", speech,
                              "--out", tmp_path / "o.npz"))
    assert "no_bundle" in line and "bundle" in line


def test_convert_failure_is_one_error_line(tmp_path):
    folder = shared_fixture("parity", "faceformer_vocaset")
    line = one_error_line(cli("convert", "--arch", "codetalker", "--checkpoint", folder / "faceformer_vocaset.pth",
                              "--encoder", folder / "wav2vec2", "--dataset", "vocaset", "--out", tmp_path / "b"))
    assert "learnable_style_emb.weight" in line
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("command,options", [
    ("convert", ["--arch", "--checkpoint", "--encoder", "--dataset", "--vqvae", "--wav2sem", "--fusion", "--out"]),
    ("infer", ["--bundle", "--audio", "--out", "--subject", "--subject2", "--blend", "--no-semantic", "--fps",
               "--device", "--compact", "--quiet"]),
    ("serve", ["--max-message", "--idle-timeout"]),
    ("benchmark", ["--seconds", "--arch", "--size", "--device", "--reference-limit"]),
    # training's commands under their old names: forwarded, same options
    ("make-corpus", ["--out", "--sentences", "--voices", "--holdout-voices", "--pairs", "--workers"]),
    ("train-default", ["--corpus", "--out", "--seed", "--semantic-from", "--decoder-epochs"]),
    ("evaluate", ["--bundle", "--corpus", "--speech"]),
])
def test_help(command, options):
    proc = cli(command, "--help", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: python -m server {command}")
    for option in options:
        assert option in proc.stdout, option


def test_training_commands_have_their_own_entry_point():
    proc = subprocess.run([sys.executable, "-m", "training", "train-default", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: python -m training train-default") and "--semantic-from" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "training", "evaluate", "--bundle", REPO / "no_such_bundle"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "no_such_bundle" in one_error_line(proc)
