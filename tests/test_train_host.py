"""Host training (``python -m training train --arch faceformer``): the official loss, resume after a kill,
two DDP processes against one, the official-format output through ``convert``, and that it learns.

Small on purpose (CI has 2 cores): a random-init wav2vec2 of width 32, a 16-wide decoder, a synthetic
dataset of 3 subjects x 3 sentences on an 8 x 8 vertex face (4 training, 2 validation sequences).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from server.convert import convert
from server.models.bundle import load_bundle
from tests.bundles import tiny_encoder_dir
from tests.helpers import REPO, shared_fixture
from tests.training_runs import column, rows, tiny_dataset, train
from training.datasets.layout import read_vertices
from training.datasets.registry import detect_layout
from training.datasets.templates import load_templates
from training.eval.face_metrics import face_metrics, read_regions
from training.hosts.data import load_split
from training.hosts.forward import sequence_loss

# float32 sums in another order (the fixture was made by another program): far below this
LOSS_RTOL = 1e-5
# 2 processes x 1 vs 1 process x 2: the same gradients summed in another order, then Adam
DDP_RTOL = 1e-4
ARGS = ["--feature-dim", "16", "--quiet"]  # the official lr, 1e-4


def run_training(out: Path, data: Path, encoder: Path, *extra: str, processes: int = 1,
                 check: bool = True) -> subprocess.CompletedProcess:
    return train(out, data, "--encoder", encoder, *ARGS, *extra, processes=processes, check=check)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_host")
    data, encoder = tiny_dataset(root)
    reference = root / "reference"
    run_training(reference, data, encoder, "--epochs", "3")
    return root, data, encoder, reference


# -- item 3: the official loss -----------------------------------------------------------------------

def test_training_loss_equals_official_forward_loss(tmp_path):
    """Official training runs ``forward(teacher_forcing=False)``: the predict loop with gradients, for as many
    frames as the ground truth has. In eval mode (no dropout) its MSE against any ``gt`` of the prediction's
    frame count is therefore ``mean((official predict - gt)^2)``, computed here from the fixture."""
    folder = shared_fixture("parity", "faceformer_vocaset")
    meta = json.loads((folder / "meta.json").read_text())
    model = load_bundle(convert(arch="faceformer", checkpoint=str(folder / "faceformer_vocaset.pth"),
                                encoder=str(folder / "wav2vec2"), dataset="vocaset", out=str(tmp_path / "b"))).model
    expected = np.load(folder / "expected_predict.npy").reshape(-1, 15069).astype(np.float64)
    template = np.load(folder / "template.npy").reshape(-1).astype(np.float32)
    # a ground truth that is not the prediction: the template plus a smooth known motion
    t = np.arange(len(expected))[:, None] / 30.0
    field = np.random.default_rng(0).normal(size=(1, template.size)) * 2e-3
    gt = (template[None] + np.sin(2 * np.pi * 1.5 * t) * field).astype(np.float32)
    official = float(np.mean((expected - gt) ** 2))
    assert np.abs(expected - gt).max() > 1e-3  # not the prediction itself

    x = torch.from_numpy(np.load(folder / "input_values.npy"))
    model.eval()
    loss = sequence_loss(model, x, torch.from_numpy(gt), torch.from_numpy(template),
                         model.style_weights(meta["subject_index"]))
    rel = abs(loss.item() - official) / official
    print(f"official loss {official:.9e}, ours {loss.item():.9e}, relative {rel:.1e}")
    assert rel <= LOSS_RTOL
    # another style is another loss: the comparison sees the style
    other = sequence_loss(model, x, torch.from_numpy(gt), torch.from_numpy(template), model.style_weights(0))
    assert abs(other.item() - official) / official > 100 * LOSS_RTOL

    loss.backward()
    for name, param in (("decoder self-attention", model.decoder.layers[0].self_attn.in_proj.weight),
                        ("feedback map", model.motion_in.weight), ("audio projection", model.audio_proj.weight),
                        ("encoder", model.audio_encoder.model.encoder.layers[0].attention.q_proj.weight)):
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().max() > 0, name
    # the teacher-forced variant (official validation) has no fixture value: only that it is a different loss
    tf = sequence_loss(model, x, torch.from_numpy(gt), torch.from_numpy(template),
                       model.style_weights(meta["subject_index"]), teacher_forcing=True)
    assert np.isfinite(tf.item()) and tf.item() != loss.item()


# -- item 4: trainer outputs, resume -------------------------------------------------------------------

def test_outputs_and_official_format_checkpoint_converts(setup, tmp_path):
    root, data, encoder, reference = setup
    metrics = rows(reference / "metrics.csv")
    assert [int(r["epoch"]) for r in metrics] == [0, 1, 2]
    assert len(rows(reference / "steps.csv")) == 3 * 4  # 4 training sequences, batch 1
    assert sum(int(r["best"]) for r in metrics) >= 1
    for name in ("last.pt", "best.pt"):
        ckpt = torch.load(reference / name, map_location="cpu", weights_only=True)
        assert "model" in ckpt
    assert torch.load(reference / "last.pt", weights_only=True)["epoch"] == 2
    if importlib.util.find_spec("tensorboard") is not None:  # optional: event files only when installed
        assert list((reference / "tensorboard").glob("events.*"))

    # best.pth is a plain official-format state dict: convert builds a bundle of the same model
    official = torch.load(reference / "best.pth", map_location="cpu", weights_only=True)
    assert "obj_vector.weight" in official and "vertice_map_r.weight" in official
    layout = detect_layout(data)
    out = convert(arch="faceformer", checkpoint=str(reference / "best.pth"), encoder=str(encoder), dataset="vocaset",
                  out=str(tmp_path / "converted"), subjects=list(layout.style_order))
    converted = load_bundle(out).model
    direct = load_bundle(reference / "bundle").model
    seq = load_split(data, layout, "test")[0]
    a = converted.generate(seq.input_values, converted.style_weights(1))
    b = direct.generate(seq.input_values, direct.style_weights(1))
    assert a.shape[1] == seq.vertices.shape[1] and a.abs().max() > 0
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_killed_run_resumes_with_nothing_lost(setup, tmp_path):
    root, data, encoder, reference = setup
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "training", "train", "--data", str(data), "--encoder", str(encoder), "--out",
           str(out), "--epochs", "3", *ARGS]
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while not (out / "last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)  # in the second epoch (or wherever it got to): no clean exit
        proc.wait()
    assert (out / "last.pt").exists()
    run_training(out, data, encoder, "--epochs", "3", "--resume", str(out / "last.pt"))
    np.testing.assert_allclose(column(out / "steps.csv", "loss"), column(reference / "steps.csv", "loss"), rtol=1e-6)
    assert [r["epoch"] for r in rows(out / "metrics.csv")] == ["0", "1", "2"]
    np.testing.assert_allclose(column(out / "metrics.csv", "val_loss"), column(reference / "metrics.csv", "val_loss"),
                               rtol=1e-6)


# -- item 5: distributed ------------------------------------------------------------------------------

def test_two_processes_equal_one_with_the_same_global_batch(setup, tmp_path):
    root, data, encoder, _ = setup
    run_training(tmp_path / "one", data, encoder, "--epochs", "2", "--batch-size", "2", "--no-bundle")
    run_training(tmp_path / "two", data, encoder, "--epochs", "2", "--batch-size", "1", "--no-bundle", processes=2)
    one, two = column(tmp_path / "one" / "steps.csv", "loss"), column(tmp_path / "two" / "steps.csv", "loss")
    assert len(one) == len(two) == 4  # 4 sequences, global batch 2, 2 epochs
    print("1 process x 2:", one, "\n2 processes x 1:", two)
    np.testing.assert_allclose(two, one, rtol=DDP_RTOL)
    np.testing.assert_allclose(column(tmp_path / "two" / "metrics.csv", "val_loss"),
                               column(tmp_path / "one" / "metrics.csv", "val_loss"), rtol=DDP_RTOL)
    # only rank 0 wrote: one header and one row per step
    assert (tmp_path / "two" / "steps.csv").read_text().count("epoch") == 1


# -- item 6: it learns --------------------------------------------------------------------------------

def test_training_learns_beyond_the_still_face(setup):
    root, data, encoder, reference = setup
    layout = detect_layout(data)
    templates = load_templates(data / "templates.pkl")
    regions = read_regions(data / "regions")
    val = load_split(data, layout, "val")
    still = face_metrics([(np.repeat(templates[s.subject].reshape(1, -1), len(s.vertices), 0),
                           read_vertices(data / "vertices_npy" / f"{s.name}.npy", layout.stride), None) for s in val],
                         regions).lve
    # the trainer's own baseline file says the same
    assert json.loads((reference / "still_face.json").read_text())["val_lve"] == pytest.approx(still, rel=1e-5)
    metrics = rows(reference / "metrics.csv")
    best = min(float(r["val_lve"]) for r in metrics)
    print(f"val LVE: still face {still:.3e}, best epoch {best:.3e}")
    # the output layer starts at zero (official init), i.e. at the still face: training moved it the right way
    assert best < 0.95 * still
    assert float(metrics[-1]["train_loss"]) < float(metrics[0]["train_loss"])


def test_bad_requests_are_one_sentence(setup, tmp_path, capsys):
    from training.__main__ import main

    root, data, encoder, reference = setup
    base = ["train", "--data", str(data), "--encoder", str(encoder), *ARGS]
    assert main([*base, "--out", str(tmp_path / "x"), "--arch", "codetalker-stage2"]) != 0
    err = capsys.readouterr().err
    assert "needs the trained stage-1" in err and "Traceback" not in err
    assert main([*base, "--out", str(tmp_path / "y"), "--resume", str(tmp_path / "missing.pt")]) != 0
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    # a resume with another recipe would silently train something else
    assert main([*base, "--out", str(tmp_path / "z"), "--lr", "1e-3", "--resume", str(reference / "last.pt")]) != 0
    err = capsys.readouterr().err
    assert "lr 0.0001 instead of 0.001" in err and "Traceback" not in err


def test_init_from_a_bundle_or_an_official_checkpoint(setup, tmp_path):
    from training.hosts.distributed import setup as dist_setup
    from training.hosts.trainer import TrainConfig, Trainer

    root, data, encoder, reference = setup
    want = load_bundle(reference / "bundle").model.state_dict()
    for init in (reference / "bundle", reference / "best.pth"):
        out = tmp_path / init.name
        cfg = TrainConfig(data=str(data), out=str(out), encoder=str(encoder), init=str(init), quiet=True)
        got = Trainer(cfg, dist_setup(cpu=True)).model.state_dict()
        assert got.keys() == want.keys()
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=0, atol=0, msg=key)


def test_wav2sem_training_exports_the_semantic_encoder_and_its_fusion(setup, tmp_path):
    """--wav2sem: the official Wav2Sem file (the parity fixture's, random weights) is frozen, its fusion layer
    trained; best.pth carries Wav2Bert.* and bert_feature_map.* as CodeTalker+Wav2Sem files do, and converts."""
    from training.__main__ import main

    root, data, encoder, _ = setup
    fixture = shared_fixture("parity", "wav2bert_standalone")
    config = shared_fixture("parity", "faceformer_vocaset", "wav2vec2")
    wav2sem = fixture / "wav2bert.pth.tar"
    out = tmp_path / "w2s"
    assert main(["train", "--data", str(data), "--encoder", str(encoder), "--out", str(out), "--epochs", "1",
                 "--wav2sem", str(wav2sem), "--wav2sem-config", str(config), *ARGS]) == 0
    official = torch.load(out / "best.pth", map_location="cpu", weights_only=True)
    assert "bert_feature_map.weight" in official
    # the semantic encoder is exported unchanged (frozen)
    original = torch.load(wav2sem, map_location="cpu", weights_only=True)["state_dict"]
    for key, value in original.items():
        torch.testing.assert_close(official[f"Wav2Bert.{key}"], value, rtol=0, atol=0)
    layout = detect_layout(data)
    converted = load_bundle(convert(arch="faceformer", checkpoint=str(out / "best.pth"), encoder=str(encoder),
                                    dataset="vocaset", subjects=list(layout.style_order), wav2sem_config=str(config),
                                    out=str(tmp_path / "converted"))).model
    direct = load_bundle(out / "bundle").model
    assert converted.has_semantic and converted.semantic.fusion == "consistent"
    x = load_split(data, layout, "test")[0].input_values
    torch.testing.assert_close(converted.generate(x, converted.style_weights(0)),
                               direct.generate(x, direct.style_weights(0)), rtol=0, atol=0)
    # the fusion changed the function: without the semantic vector the output differs
    assert (direct.generate(x, direct.style_weights(0), semantic=False)
            - direct.generate(x, direct.style_weights(0))).abs().max() > 0


@pytest.mark.parametrize("layout", ["vocaset", "biwi"])
def test_training_forward_in_eval_mode_is_the_inference_decoder(tmp_path, layout):
    """Both audio alignments (VOCASET interpolation, BIWI pairs): without dropout the training loop's prediction
    equals the cached inference decoding of the same memory (server/models/decoding.py), and one epoch trains."""
    from training.__main__ import main
    from training.datasets.synthetic import make_dataset
    from training.hosts.build import build_scratch
    from training.hosts.forward import autoregressive_offsets, teacher_forced_offsets, training_memory

    data = make_dataset(tmp_path / "data", layout=layout, subjects=2, sentences=2, grid=8,
                        voices=("flite:slt", "flite:rms"), progress=False)
    encoder = tiny_encoder_dir(tmp_path / "encoder", hidden=32)
    lay = detect_layout(data)
    seq = load_split(data, lay, "train")[0]
    torch.manual_seed(0)
    model, _ = build_scratch(lay, seq.vertices.shape[1] // 3, encoder, d_model=16)
    torch.nn.init.normal_(model.output_layer.weight, std=1e-2)  # not the zero start: a moving face
    model.eval()
    with torch.no_grad():
        memory, usable = training_memory(model, seq.input_values, seq.vertices.shape[0])
        style = model.style(model.style_weights(0))
        trained = autoregressive_offsets(model, memory, style, usable, 0.0)[0]
        inferred = model.decode(memory[0, : usable * model.spec.audio_per_frame], style)
        assert trained.shape == inferred.shape == (usable, seq.vertices.shape[1])
        torch.testing.assert_close(trained, inferred, rtol=1e-5, atol=1e-6)
        # the official teacher-forced path starts from vertice_map(0) + style, not the bare style: frame 0 differs
        forced = teacher_forced_offsets(model, memory, style, trained[None], 0.0)[0]
        assert (forced[0] - trained[0]).abs().max() > 0
    assert main(["train", "--data", str(data), "--encoder", str(encoder), "--out", str(tmp_path / "run"),
                 "--epochs", "1", "--no-bundle", *ARGS]) == 0
    assert np.isfinite(column(tmp_path / "run" / "steps.csv", "loss")).all()
