"""CodeTalker training (``python -m training train --arch codetalker-stage1|codetalker-stage2``).

What the parity fixture allows (it holds an official stage-2 checkpoint with stage 1 inside and the official
``predict`` output, no loss values): the stage-2 training path (our training decoder, ``feat_map``, the
straight-through quantiser, the stage-1 decoder) fed the tokens ``predict`` feeds reproduces ``predict``;
the stage-1 loss of the fixture's autoencoder follows the official formula. Then the trainer on a tiny
synthetic dataset: stage 1 learns and converts, stage 2 trains over it, converts and infers, a killed
stage-1 run and a stopped stage-2 run resume exactly, both stages train and convert on a BIWI-layout
folder. The DDP machinery is the FaceFormer test's.
"""

from __future__ import annotations

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

from server.audio import load_for_model
from server.convert import convert
from server.models.bundle import load_bundle
from server.models.checkpoints import map_stage1
from server.models.codetalker import FeedbackDecoder
from tests.bundles import tiny_encoder_dir
from tests.helpers import REPO, shared_fixture
from tests.training_runs import column, rows, tiny_dataset, train
from training.datasets.registry import detect_layout
from training.hosts.codetalker import decode_features, stage2_losses
from training.hosts.forward import decoder_states
from training.hosts.vq import BETA, encode, quantize, stage1_loss, stage1_state

PARITY_TOLERANCE = 1e-4  # the parity suite's (max abs error / max abs offset)
S1 = ["--arch", "codetalker-stage1", "--feature-dim", "32", "--quiet"]


def run(out: Path, data: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    return train(out, data, *extra, check=check)


def s2_args(encoder: Path, stage1: Path) -> list[str]:
    return ["--arch", "codetalker-stage2", "--encoder", str(encoder), "--vqvae", str(stage1 / "best.pth"),
            "--feature-dim", "16", "--quiet"]


@pytest.fixture(scope="module")
def fixture_model(tmp_path_factory):
    folder = shared_fixture("parity", "codetalker_vocaset")
    meta = json.loads((folder / "meta.json").read_text())
    out = convert(arch="codetalker", checkpoint=str(folder / "stage2.pth.tar"), encoder=str(folder / "wav2vec2"),
                  dataset="vocaset", out=str(tmp_path_factory.mktemp("ct") / "bundle"))
    template = torch.from_numpy(np.load(folder / "template.npy").reshape(-1).astype(np.float32))
    return load_bundle(out).model.eval(), folder, meta, template


# -- item 3: what the fixture can check -----------------------------------------------------------------

def test_stage2_training_path_reproduces_official_predict(fixture_model):
    """Official ``predict`` ends with quantise + decode of the final feature sequence, whose tokens are
    the style, then ``vertice_map(last frame of each prefix decode)`` + style. Our exact inference gives
    those tokens; the training decoder (dropout off), ``feat_map`` and ``decode_features`` fed them must
    reproduce the official output."""
    model, folder, meta, template = fixture_model
    x = torch.from_numpy(np.load(folder / "input_values.npy"))
    expected = np.load(folder / "expected_predict.npy") - template.numpy()[None]
    with torch.no_grad():
        memory = model.memory(x, True)
        style = model.style(model.style_weights(meta["subject_index"]))
        codes = model.decode_codes(memory, style)
        feedback = FeedbackDecoder(model.vq.decoder, len(codes), memory)
        tokens = [style] + [model.motion_in(feedback.push(c)) + style for c in codes[:-1]]
        features = model.feat_map(decoder_states(model.decoder, torch.stack(tokens)[None], memory[None], 0.0))
        offsets = decode_features(model, features)[0].numpy()
    err = float(np.abs(offsets - expected).max() / np.abs(expected).max())
    print(f"stage-2 training path vs official predict: relative error {err:.1e}")
    assert err <= PARITY_TOLERANCE
    # the teacher-forced loss itself has no official value to compare with: only that it runs and is finite
    gt = torch.from_numpy(np.load(folder / "expected_predict.npy").astype(np.float32))
    motion, reg = stage2_losses(model, x, gt, template, model.style_weights(meta["subject_index"]))
    assert torch.isfinite(motion) and torch.isfinite(reg)


def test_stage1_loss_is_the_official_formula(fixture_model):
    """A ground truth that decodes exactly from chosen codes: those codes cost nothing and rebuild it;
    the encoder's own codes (re-encoding need not recover the chosen ones: checked) cost what
    ``calc_vq_loss`` says, with the gradients of beta x commitment + codebook terms."""
    model, _, _, template = fixture_model
    vq = model.vq.eval()
    n, spec = 40, vq.spec
    idx = torch.randint(0, spec.n_codes, (n, spec.codes_per_frame), generator=torch.Generator().manual_seed(0))
    chosen = vq.codebook.weight.detach()[idx].reshape(1, n, -1)
    with torch.no_grad():
        gt_offsets = vq.decoder(chosen)
    codes, loss = quantize(vq, chosen)
    assert loss.item() == 0.0 and torch.equal(codes, chosen)

    out = stage1_loss(vq, gt_offsets[0] + template, template)
    z = encode(vq, gt_offsets, 0.0).detach().numpy().reshape(-1, spec.code_dim)
    book = vq.codebook.weight.detach().numpy()
    nearest = book[((z[:, None] - book[None]) ** 2).sum(-1).argmin(1)]  # independent nearest-code search
    recovered = float((nearest == chosen.numpy().reshape(-1, spec.code_dim)).all(1).mean())
    print(f"codes recovered by re-encoding: {recovered:.0%}")
    expected_quant = (1 + BETA) * np.mean((nearest - z) ** 2)
    np.testing.assert_allclose(out.quantization.item(), expected_quant, rtol=1e-5)
    with torch.no_grad():
        rebuilt = vq.decoder(torch.from_numpy(nearest.reshape(1, n, -1)))
    expected_rec = torch.mean(torch.abs(rebuilt - gt_offsets)).item()
    np.testing.assert_allclose(out.reconstruction.item(), expected_rec, rtol=1e-5)
    np.testing.assert_allclose(out.total.item(), expected_rec + expected_quant, rtol=1e-5)
    if recovered == 1.0:
        assert out.reconstruction.item() < 1e-6

    # gradients: d/dz = 2 beta (z - z_q) / N (commitment), d/de = 2 (z_q - z) / N summed per code (codebook)
    zt = torch.from_numpy(z).reshape(1, n, -1).requires_grad_(True)
    vq.codebook.weight.requires_grad_(True)
    vq.codebook.weight.grad = None
    _, loss = quantize(vq, zt)
    loss.backward()
    diff = (zt.detach() - torch.from_numpy(nearest).reshape(1, n, -1)) / z.size
    torch.testing.assert_close(zt.grad, 2 * BETA * diff, rtol=1e-4, atol=1e-9)
    assert vq.codebook.weight.grad.abs().sum() > 0


def test_stage1_official_file_round_trips(fixture_model):
    """Our export is the inverse of convert's stage-1 mapping, in the official layout (5000-row tables)."""
    vq = fixture_model[0].vq
    state = stage1_state(vq)
    assert state["encoder.encoder_pos_embedding.pe"].shape == (5000, 1, vq.spec.hidden)
    assert "decoder.decoder_transformer.net.1.fn.fn.l1.weight" in state and "quantize.embedding.weight" in state
    back = map_stage1(state)
    assert set(back) == set(vq.state_dict())
    for key, value in vq.state_dict().items():
        assert torch.equal(back[key], value), key


# -- items 2, 4: the trainer --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_codetalker")
    data, encoder = tiny_dataset(root)
    stage1, stage2 = root / "stage1", root / "stage2"
    run(stage1, data, *S1, "--epochs", "3")
    run(stage2, data, *s2_args(encoder, stage1), "--epochs", "2")
    return root, data, encoder, stage1, stage2


def test_stage1_learns_and_its_file_converts(trained, tmp_path):
    root, data, encoder, stage1, stage2 = trained
    metrics = rows(stage1 / "metrics.csv")
    assert [int(r["epoch"]) for r in metrics] == [0, 1, 2]
    rec = column(stage1 / "metrics.csv", "val_loss_ar")  # validation reconstruction MSE
    print("stage-1 validation reconstruction MSE per epoch:", rec)
    assert rec[-1] < rec[0] and column(stage1 / "metrics.csv", "train_loss")[-1] < column(stage1 / "metrics.csv",
                                                                                           "train_loss")[0]
    assert not (stage1 / "bundle").exists()
    last = torch.load(stage1 / "last.pt", map_location="cpu", weights_only=True)
    assert last["scheduler"]["last_epoch"] == 3 and last["scheduler"]["step_size"] == 20  # VOCASET StepLR
    official = torch.load(stage1 / "best.pth", map_location="cpu", weights_only=True)
    assert set(official) == {"state_dict"} and "quantize.embedding.weight" in official["state_dict"]
    # convert --vqvae reads it: the bundle's VQ-VAE is the trained one
    out = convert(arch="codetalker", checkpoint=str(stage2 / "best.pth"), vqvae=str(stage1 / "best.pth"),
                  encoder=str(encoder), dataset="vocaset", out=str(tmp_path / "b"),
                  subjects=list(detect_layout(data).style_order))
    best = torch.load(stage1 / "best.pt", map_location="cpu", weights_only=True)["model"]
    for key, value in load_bundle(out).model.vq.state_dict().items():
        assert torch.equal(value, best[key]), key


def test_stage2_trains_converts_and_infers(trained, tmp_path):
    root, data, encoder, stage1, stage2 = trained
    assert [int(r["epoch"]) for r in rows(stage2 / "metrics.csv")] == [0, 1]
    official = torch.load(stage2 / "best.pth", map_location="cpu", weights_only=True)["state_dict"]
    assert "feat_map.weight" in official and "learnable_style_emb.weight" in official
    assert not any(k.startswith("autoencoder.") for k in official)  # as official save_checkpoint(stage=2)
    trained_map = torch.load(stage2 / "best.pt", map_location="cpu", weights_only=True)["model"]["feat_map.weight"]
    assert trained_map.abs().max() > 0  # zero at the start (official init): it trained
    out = convert(arch="codetalker", checkpoint=str(stage2 / "best.pth"), vqvae=str(stage1 / "best.pth"),
                  encoder=str(encoder), dataset="vocaset", out=str(tmp_path / "converted"),
                  subjects=list(detect_layout(data).style_order))
    wav = sorted((data / "wav").glob("*.wav"))[0]
    _, values = load_for_model(wav)
    x = torch.from_numpy(np.ascontiguousarray(values))
    a, b = load_bundle(out).model, load_bundle(stage2 / "bundle").model
    torch.testing.assert_close(a.generate(x, a.style_weights(0)), b.generate(x, b.style_weights(0)), rtol=0, atol=0)
    result = tmp_path / "result.npz"
    subject = detect_layout(data).style_order[0]
    proc = subprocess.run([sys.executable, "-m", "server", "infer", "--bundle", str(out), "--audio", str(wav),
                           "--out", str(result), "--subject", subject, "--quiet", "--no-report"], cwd=REPO,
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert result.is_file() and result.stat().st_size > 0


def test_stage2_with_wav2sem_exports_the_semantic_encoder(trained, tmp_path):
    root, data, encoder, stage1, stage2 = trained
    folder = shared_fixture("parity")
    out = tmp_path / "w2s"
    run(out, data, *s2_args(encoder, stage1), "--epochs", "1", "--wav2sem",
        str(folder / "wav2bert_standalone" / "wav2bert.pth.tar"), "--wav2sem-config",
        str(folder / "faceformer_vocaset" / "wav2vec2"))
    official = torch.load(out / "best.pth", map_location="cpu", weights_only=True)["state_dict"]
    assert any(k.startswith("Wav2Bert.") for k in official) and "bert_feature_map.weight" in official
    converted = load_bundle(convert(arch="codetalker", checkpoint=str(out / "best.pth"),
                                    vqvae=str(stage1 / "best.pth"), encoder=str(encoder), dataset="vocaset",
                                    wav2sem_config=str(folder / "faceformer_vocaset" / "wav2vec2"),
                                    out=str(tmp_path / "b"), subjects=list(detect_layout(data).style_order))).model
    direct = load_bundle(out / "bundle").model
    theirs = direct.state_dict()
    for key, value in converted.state_dict().items():
        assert torch.equal(value, theirs[key]), key


def test_a_killed_stage1_run_resumes_exactly(trained, tmp_path):
    root, data, encoder, stage1, stage2 = trained
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "training", "train", "--data", str(data), "--out", str(out), *S1, "--epochs", "3"]
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while not (out / "last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (out / "last.pt").exists()
    run(out, data, *S1, "--epochs", "3", "--resume", str(out / "last.pt"))
    np.testing.assert_allclose(column(out / "steps.csv", "loss"), column(stage1 / "steps.csv", "loss"), rtol=1e-6)
    np.testing.assert_allclose(column(out / "metrics.csv", "val_loss"), column(stage1 / "metrics.csv", "val_loss"),
                               rtol=1e-6)


def test_a_stopped_stage2_run_resumes_exactly(trained, tmp_path):
    root, data, encoder, stage1, stage2 = trained
    out = tmp_path / "stopped"
    run(out, data, *s2_args(encoder, stage1), "--epochs", "1", "--no-bundle")
    run(out, data, *s2_args(encoder, stage1), "--epochs", "2", "--resume", str(out / "last.pt"))
    np.testing.assert_allclose(column(out / "steps.csv", "loss"), column(stage2 / "steps.csv", "loss"), rtol=1e-6)
    assert [r["epoch"] for r in rows(out / "metrics.csv")] == ["0", "1"]


def test_biwi_layout_trains_both_stages_and_converts(tmp_path):
    """BIWI's stage 1 has the extra linears and no output bias, its stage 2 12 layers and paired audio frames."""
    from training.__main__ import main
    from training.datasets.synthetic import make_dataset

    data = make_dataset(tmp_path / "data", layout="biwi", subjects=2, sentences=2, grid=8,
                        voices=("flite:slt", "flite:rms"), progress=False)
    encoder = tiny_encoder_dir(tmp_path / "encoder", hidden=32)
    s1, s2 = tmp_path / "s1", tmp_path / "s2"
    assert main(["train", "--data", str(data), "--out", str(s1), *S1, "--epochs", "1"]) == 0
    assert "scheduler" not in torch.load(s1 / "last.pt", map_location="cpu", weights_only=True)  # BIWI: no StepLR
    assert main(["train", "--data", str(data), "--out", str(s2), *s2_args(encoder, s1), "--epochs", "1"]) == 0
    out = convert(arch="codetalker", checkpoint=str(s2 / "best.pth"), vqvae=str(s1 / "best.pth"), encoder=str(encoder),
                  dataset="BIWI", out=str(tmp_path / "b"), subjects=list(detect_layout(data).style_order))
    converted, direct = load_bundle(out).model, load_bundle(s2 / "bundle").model
    assert converted.vq.spec.code_projection and not converted.vq.spec.output_bias
    assert converted.spec.n_layers == 12 and converted.spec.alignment == "pairs"
    theirs = direct.state_dict()
    for key, value in converted.state_dict().items():
        assert torch.equal(value, theirs[key]), key


def test_codetalker_bad_requests_are_one_sentence(trained, tmp_path, capsys):
    from training.__main__ import main

    root, data, encoder, stage1, stage2 = trained
    base = ["train", "--data", str(data), "--quiet"]
    cases = [
        (["--arch", "codetalker-stage2", "--encoder", str(encoder)], "needs the trained stage-1"),
        (["--arch", "codetalker-stage2", "--encoder", str(encoder), "--vqvae", str(stage2 / "best.pth")],
         "is not a CodeTalker stage-1 checkpoint"),
        (["--arch", "codetalker-stage1", "--wav2sem", str(stage1 / "best.pth")], "trains the motion VQ-VAE alone"),
        (["--arch", "faceformer"], "needs the audio encoder folder"),
    ]
    for i, (extra, message) in enumerate(cases):
        assert main([*base, "--out", str(tmp_path / str(i)), *extra]) != 0
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
