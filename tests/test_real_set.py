"""The real-speech development set (assets/real_speech) and the metrics its evaluation reports."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import soundfile as sf

from training.eval import real_set
from wav2sem_contract.controls import CONTROLS

from .helpers import REPO

CLIPS = real_set.load_manifest()


def test_manifest_is_complete():
    assert len(CLIPS) >= 16
    assert len({c["id"] for c in CLIPS}) == len(CLIPS)
    for clip in CLIPS:
        source = clip["source"]
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", source["repo"]), clip["id"]
        assert re.fullmatch(r"[0-9a-f]{40}", source["commit"]), clip["id"]
        assert source["path"] and source["transcript_from"], clip["id"]
        assert clip["licence"].strip() and clip["corpus"].strip() and clip["speaker"].strip(), clip["id"]
        assert re.search(r"[A-Za-z]{2}", clip["transcript"]), clip["id"]
        assert clip["sex"] in ("F", "M", "unknown"), clip["id"]
        assert clip["sex_source"].strip(), clip["id"]
    sexes = {c["sex"] for c in CLIPS}
    assert {"F", "M"} <= sexes
    sources = (real_set.FOLDER / "SOURCES.md").read_text(encoding="utf-8")
    for repo in {c["source"]["repo"] for c in CLIPS}:
        assert repo in sources, f"SOURCES.md does not cite {repo}"


@pytest.mark.parametrize("clip", CLIPS, ids=[c["id"] for c in CLIPS])
def test_clip_is_16k_mono_of_its_stated_length(clip):
    info = sf.info(clip["path"])
    assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")
    assert info.duration == pytest.approx(clip["duration_s"], abs=2e-3)
    audio, _ = sf.read(clip["path"], dtype="float32")
    assert np.abs(audio).max() > 0.05  # speech, not silence


def test_training_corpus_code_never_reads_the_set():
    """The training corpus is synthesised speech: no training-data code may name this folder."""
    pattern = re.compile(r"real_speech|assets")
    sources = [*(REPO / "training").glob("*.py"), *(REPO / "training" / "data").glob("*.py")]
    assert len(sources) > 5
    for path in sources:
        assert not pattern.search(path.read_text(encoding="utf-8")), path


def _curves(jaw: list[float], close: list[float]) -> np.ndarray:
    w = np.zeros((len(jaw), len(CONTROLS)), dtype=np.float32)
    w[:, CONTROLS.index("jawOpen")] = jaw
    w[:, CONTROLS.index("mouthClose")] = close
    return w


def test_metrics_on_a_hand_made_clip():
    # 10 fps: AA holds frames 0-1, IY frame 2, P frame 3, EH frame 4, UW no frame (5.2-5.8), M frame 6
    phones = [("AA", 0.0, 0.2), ("IY", 0.2, 0.3), ("P", 0.3, 0.4), ("EH", 0.4, 0.5), ("UW", 0.52, 0.58),
              ("M", 0.6, 0.7)]
    weights = _curves(jaw=[0.5, 0.7, 0.3, 0.0, 0.3, 0.9, 0.9], close=[0, 0, 0.9, 0.8, 0, 0, 0.2])
    got = real_set.score(weights, phones, fps=10)
    # the P is closed (0.8), the M is not (0.2)
    assert got["hits"] == [True, False]
    # vowels of 60 ms or more: AA open, IY shut throughout (0.9), EH open
    assert got["false"] == [False, True, False]
    # (openness, mean jaw): AA (1, 0.6), IY (0, 0.3), EH (0.5, 0.3); UW samples no frame
    assert np.asarray(got["jaw"]) == pytest.approx(np.array([(1.0, 0.6), (0.0, 0.3), (0.5, 0.3)]))
    # deviations (0.5, -0.5, 0) and (0.2, -0.1, -0.1): r = 0.15 / sqrt(0.5 * 0.06) = sqrt(3) / 2
    assert real_set.pearson(got["jaw"]) == pytest.approx(math.sqrt(3) / 2)


def test_pearson_is_undefined_without_spread():
    assert math.isnan(real_set.pearson([(1.0, 0.5), (0.0, 0.5), (0.5, 0.5)]))
    assert math.isnan(real_set.pearson([(1.0, 0.5), (0.0, 0.2)]))
    assert real_set.pearson([(0.0, 0.1), (0.5, 0.2), (1.0, 0.3)]) == pytest.approx(1.0)


def test_groups_by_sex_leave_unknown_out_but_pool_it():
    clips = [{"sex": "F", "speaker": "a"}, {"sex": "M", "speaker": "b"}, {"sex": "unknown", "speaker": "c"}]
    one = {"hits": [True], "false": [False], "jaw": [(0.0, 0.1), (1.0, 0.5), (0.5, 0.2)]}
    miss = {"hits": [False, False], "false": [True], "jaw": []}
    per_clip = [dict.fromkeys(real_set.ALL_VARIANTS, one), dict.fromkeys(real_set.ALL_VARIANTS, miss),
                dict.fromkeys(real_set.ALL_VARIANTS, miss)]
    table = real_set.summarise(per_clip, clips)
    assert table["F"]["audio only"]["closure"] == 1.0 and table["M"]["audio only"]["closure"] == 0.0
    assert table["all"]["audio only"]["closure"] == pytest.approx(1 / 5)
    assert table["all"]["audio only"]["false"] == pytest.approx(2 / 3)
    assert math.isnan(table["M"]["audio only"]["jaw_r"])
    assert table["all"]["audio only"]["clips"] == 3


def test_the_seeds_table_is_mean_and_sd_over_the_bundles():
    def summary(closure: float, jaw: float) -> dict:
        row = {"closure": closure, "false": 0.01, "jaw_r": jaw}
        return {"all": dict.fromkeys(real_set.ALL_VARIANTS, row)}

    text = real_set.seeds_table([summary(0.9, 0.6), summary(1.0, 0.8)])
    lines = text.splitlines()
    assert "2 seeds, mean ± sd" in lines[0] and len(lines) == 2 + 5
    assert lines[3] == "| audio-predicted vector | 0.950 ± 0.071 | 0.010 ± 0.000 | 0.70 ± 0.14 |"
