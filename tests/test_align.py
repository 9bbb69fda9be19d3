"""PocketSphinx alignment: against flite's own phone timings, and on real human speech."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from server.audio import load_audio
from tests.helpers import shared_fixture
from training.data.align import align
from training.data.voices import flite_synth

pytest.importorskip("pocketsphinx", reason="the train extra (pocketsphinx) is not installed")


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed (scripts/system-packages.sh)")
def test_forced_alignment_agrees_with_flites_own_timings():
    text = "The sheep on the ship could not sleep, so Pam made a map."
    audio, sr, truth = flite_synth(text, "slt")
    words, phones = align(audio, text)
    assert words[:3] == ["the", "sheep", "on"]
    spoken = [p for p in phones if p[0] != "SIL"]
    expected = [p for p in truth if p[0] != "SIL"]
    assert [p[0] for p in spoken] == [p[0] for p in expected] or len(spoken) == len(expected)
    starts = np.array([p[1] for p in spoken]) - np.array([p[1] for p in expected])
    assert np.median(np.abs(starts)) < 0.03, starts  # measured: ~8 ms median over many sentences


def test_recognises_and_aligns_real_speech():
    audio = load_audio(str(shared_fixture("speech", "voca_test_sentence.wav")))
    words, phones = align(audio)  # no transcript: recognised first
    assert {"myopia", "complex"} <= set(words)
    bilabials = [p for p in phones if p[0] in ("P", "B", "M")]
    assert len(bilabials) >= 4
    assert all(0 <= s < e <= len(audio) / 16000 + 0.05 for _, s, e in phones)
    assert all(a[2] <= b[1] + 1e-6 for a, b in zip(phones[:-1], phones[1:], strict=True))  # in order, no overlap
