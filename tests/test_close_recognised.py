"""``infer --close-recognised``: without a transcript, the lips close at the /p b m/ of the words speech
recognition hears. Real subprocesses, the embedded default, a real recording from the real-speech set whose
true transcript, force-aligned on its own, is the reference the closures are checked against."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers import REPO
from tests.test_lipsync_report import SAMPLE, SAMPLE_TEXT, check_against_weights, infer
from wav2sem_contract.lipsync import closure_hits
from wav2sem_contract.result import InferResult

pytest.importorskip("pocketsphinx", reason="recognition needs pocketsphinx (a base dependency)")

SPEECH = REPO / "assets" / "real_speech"
CLIP = "librispeech_1995-1837-0001"  # a female LibriSpeech reader, 5 bilabials in her sentence


def clip() -> dict:
    manifest = json.loads((SPEECH / "manifest.json").read_text(encoding="utf-8"))
    return next(c for c in manifest["clips"] if c["id"] == CLIP)


def test_the_lips_close_at_every_bilabial_of_the_true_transcript_and_nothing_far_from_them_moves(tmp_path):
    from server.align import align
    from server.audio import load_audio

    entry = clip()
    audio = SPEECH / entry["file"]
    plain, closed = tmp_path / "plain.npz", tmp_path / "closed.npz"
    for out, flags in ((plain, ()), (closed, ("--close-recognised",))):
        proc = infer("--audio", audio, "--out", out, *flags)
        assert proc.returncode == 0, proc.stderr
        assert ("lip closures enforced at their /p b m/" in proc.stderr) is bool(flags), proc.stderr
    before, after = InferResult.load(plain), InferResult.load(closed)
    assert before.provenance["recognised_closures"] is None

    # the reference: the true transcript, force-aligned; the server never saw it
    phones = align(load_audio(str(audio)), entry.get("align_text") or entry["transcript"])[1]
    close = after.names.index("mouthClose")
    hits = closure_hits(after["weights"][:, close], phones, after.fps)
    assert len(hits) == 5 and all(hits), hits
    info = after.provenance["recognised_closures"]
    assert set(info) == {"closures", "note"} and info["note"] == "" and info["closures"] >= 5
    assert f"recognised words: {info['closures']} lip closures enforced at their /p b m/\n" in proc.stderr

    # the report measures the final motion, on the same recognised words (recognition ran once)
    report = after.lipsync
    assert report["source"] == "recognised" and report["closed"] == report["bilabials"] == info["closures"]
    check_against_weights(report, after)
    # only frames near a recognised bilabial changed (a closure ramps over at most 0.08 s beyond it)
    moved = np.flatnonzero(np.abs(after["weights"] - before["weights"]).max(axis=1) > 1e-6) / after.fps
    near = [(e["start"] - 0.16, e["end"] + 0.16) for e in report["entries"]]
    assert moved.size and all(any(a <= t <= b for a, b in near) for t in moved), moved


def test_a_transcript_that_fits_the_audio_makes_the_closures_instead(tmp_path):
    out = tmp_path / "take.npz"
    proc = infer("--audio", SAMPLE, "--out", out, "--text", SAMPLE_TEXT, "--close-recognised")
    assert proc.returncode == 0, proc.stderr
    result = InferResult.load(out)
    assert result.provenance["recognised_closures"] is None
    assert result.provenance["transcript"]["closures"] == 8 and result.lipsync["source"] == "transcript"


def test_a_vertex_model_keeps_its_motion_and_says_why(tmp_path):
    from server.pipeline import CONTROLS_ONLY
    from tests.bundles import make_tiny_bundle

    bundle = make_tiny_bundle(tmp_path / "tiny")
    out = tmp_path / "vertex.npz"
    proc = infer("--bundle", bundle, "--audio", SAMPLE, "--out", out, "--close-recognised")
    assert proc.returncode == 0, proc.stderr
    result = InferResult.load(out)
    info = result.provenance["recognised_closures"]
    assert info == {"closures": 0, "note": CONTROLS_ONLY}
    assert result.lipsync["source"] == "recognised" and result.lipsync["measured"] is False


def test_a_transcript_that_does_not_fit_falls_back_to_the_recognised_closures(tmp_path):
    audio = SPEECH / clip()["file"]
    out = tmp_path / "take.npz"
    proc = infer("--audio", audio, "--out", out, "--close-recognised",
                 "--text", "The weather in the north will stay cold and grey all week.")
    assert proc.returncode == 0, proc.stderr
    result = InferResult.load(out)
    assert result.provenance["transcript"]["notice"]  # the fallback, said in one line
    assert result.provenance["recognised_closures"]["closures"] >= 5
    assert result.lipsync["source"] == "recognised" and result.lipsync["closed"] == result.lipsync["bilabials"]
