"""The lip-sync report as ``python -m server infer`` writes it: real subprocesses, the embedded default,
PocketSphinx, the sample sentence ("The sheep on the ship could not sleep, so Pam made a map.": eight
/p b m/) and the VOCA recording. Each closed flag is checked against mouthClose recomputed here from
the result's own weights."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import REPO, shared_fixture
from wav2sem_contract.lipsync import REPORT_MARK, report_path, save_beside, summary_line, write_report
from wav2sem_contract.result import InferResult

pytest.importorskip("pocketsphinx", reason="the report needs pocketsphinx (a base dependency)")

SAMPLE = REPO / "assets" / "sample_sentence.wav"
SAMPLE_TEXT = "The sheep on the ship could not sleep, so Pam made a map."


def infer(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "server", "infer", "--quiet", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


def recomputed(weights: np.ndarray, names: list[str], entry: dict, fps: float) -> tuple[bool, float]:
    """(closed, peak) from the weights: mouthClose above 0.5 at a frame k with start <= k / fps < end
    (for a bilabial no frame samples, at the frame nearest its middle)."""
    close = weights[:, names.index("mouthClose")]
    frames = [k for k in range(len(close)) if entry["start"] <= k / fps < entry["end"]]
    if not frames:
        frames = [min(len(close) - 1, round(0.5 * (entry["start"] + entry["end"]) * fps))]
    return bool((close[frames] > 0.5).any()), float(close[frames].max())


def check_against_weights(report: dict, result: InferResult) -> None:
    assert report["fps"] == pytest.approx(result.fps) and report["frames"] == result.frames
    assert report["measured"] is True and report["bilabials"] == len(report["entries"])
    assert report["closed"] == sum(e["closed"] for e in report["entries"])
    for entry in report["entries"]:
        assert entry["phone"] in ("P", "B", "M") and entry["start"] < entry["end"]
        closed, peak = recomputed(result["weights"], result.names, entry, result.fps)
        assert entry["closed"] is closed and entry["peak_close"] == pytest.approx(peak, abs=1e-3), entry
        middle = 0.5 * (entry["start"] + entry["end"]) * result.fps
        assert abs(entry["frame"] - middle) <= 0.5 + 1e-6, entry  # the frame to jump to: the bilabial's middle


def summary_of(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("lip sync: ")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_infer_with_the_transcript_reports_every_bilabial_with_its_word(tmp_path):
    out = tmp_path / "take.npz"
    proc = infer("--audio", SAMPLE, "--out", out, "--text", SAMPLE_TEXT)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(report_path(out).read_text(encoding="utf-8"))
    assert report_path(out).name == "take.lipsync.json"
    result = InferResult.load(out)
    assert result.lipsync == report  # the same report inside the result
    assert report["source"] == "transcript" and all(e["source"] == "transcript" for e in report["entries"])
    words = [(e["phone"], e["word"]) for e in report["entries"]]
    # "Pam made a map": its five bilabials, in order, each with its word; the three /p/ before them too
    assert words == [("P", "sheep"), ("P", "ship"), ("P", "sleep"),
                     ("P", "pam"), ("M", "pam"), ("M", "made"), ("M", "map"), ("P", "map")]
    starts = [e["start"] for e in report["entries"]]
    assert starts == sorted(starts) and 2.0 < starts[3] < starts[-1] < 4.07
    check_against_weights(report, result)
    line = summary_of(proc)
    assert line.startswith(f"lip sync: {report['closed']} of 8 bilabials closed"), line
    missed = [e for e in report["entries"] if not e["closed"]]
    assert ("; open: " in line) == bool(missed)


def test_infer_without_text_reports_the_recognised_bilabials(tmp_path):
    out = tmp_path / "plain.npz"
    proc = infer("--audio", SAMPLE, "--out", out)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(report_path(out).read_text(encoding="utf-8"))
    assert report["source"] == "recognised"
    result = InferResult.load(out)
    check_against_weights(report, result)
    # PocketSphinx does not make out this synthetic voice's words: then the report says so, not "all closed"
    if not report["entries"]:
        assert "give the transcript" in report["note"] and "no bilabials to check" in summary_of(proc)
    else:
        assert summary_of(proc).startswith(f"lip sync: {report['closed']} of {report['bilabials']} bilabials")


def test_infer_without_text_on_real_speech_finds_the_words(tmp_path):
    speech = shared_fixture("speech", "voca_test_sentence.wav")
    out = tmp_path / "voca.npz"
    proc = infer("--audio", speech, "--out", out)
    assert proc.returncode == 0, proc.stderr
    report = InferResult.load(out).lipsync
    assert report["source"] == "recognised"
    found = {e["word"] for e in report["entries"]}
    assert {"myopia", "complex"} <= found, report["entries"]  # "Severe myopia contributed to ... complex."
    check_against_weights(report, InferResult.load(out))


def test_no_report_writes_none_and_removes_an_older_one(tmp_path):
    out = tmp_path / "take.npz"
    earlier = {"report": REPORT_MARK, "version": 1, "source": "none", "entries": [], "bilabials": 0}
    report_path(out).write_text(json.dumps(earlier), encoding="utf-8")  # an earlier run's
    proc = infer("--audio", SAMPLE, "--out", out, "--no-report")
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and not report_path(out).exists()
    assert InferResult.load(out).lipsync is None
    assert "lip sync" not in proc.stderr


def test_no_report_leaves_a_file_of_that_name_that_is_not_ours(tmp_path):
    out = tmp_path / "take.npz"
    for text in ('{"my": "notes"}', "not json at all", '{"version": 1}'):
        report_path(out).write_text(text, encoding="utf-8")
        save_beside(out, None)
        assert report_path(out).read_text(encoding="utf-8") == text
    write_report(out, {"report": REPORT_MARK, "version": 1, "entries": []})
    save_beside(out, None)
    assert not report_path(out).exists()


def test_a_vertex_model_lists_the_bilabials_without_measuring_them(tmp_path):
    from tests.bundles import make_tiny_bundle

    bundle = make_tiny_bundle(tmp_path / "tiny")
    out = tmp_path / "vertex.npz"
    proc = infer("--bundle", bundle, "--audio", SAMPLE, "--out", out, "--text", SAMPLE_TEXT)
    assert proc.returncode == 0, proc.stderr
    report = InferResult.load(out).lipsync
    assert report["measured"] is False and report["closed"] is None
    assert "closure is measured on control results only" in report["note"]
    assert len(report["entries"]) == 8 and all(e["closed"] is None and e["peak_close"] is None
                                               for e in report["entries"])
    assert "closure not measured" in summary_of(proc)


def test_older_results_load_without_a_report(tmp_path):
    path = tmp_path / "old.npz"
    np.savez(path, weights=np.zeros((3, 1), np.float32), names=np.array(["jawOpen"]), kind=np.array("controls"),
             fps=np.float32(30), provenance=np.array("{}"))
    result = InferResult.load(path)
    assert result.lipsync is None and result.frames == 3
    report = {"entries": [], "note": "x", "frames": 3}
    result.lipsync = report
    result.save(path)
    assert InferResult.load(path).lipsync == report


def test_the_summary_line_names_the_open_ones_in_scene_frames():
    entries = [{"phone": "P", "word": "pam", "start": 2.5, "end": 2.6, "frame": 77, "closed": True},
               {"phone": "M", "word": "map", "start": 3.41, "end": 3.5, "frame": 104, "closed": False},
               {"phone": "B", "word": "", "start": 4.0, "end": 4.1, "frame": 121, "closed": False}]
    report = {"source": "transcript", "measured": True, "entries": entries}
    assert summary_line(report) == 'lip sync: 1 of 3 bilabials closed; open: "map" 3.41 s (frame 104), "?" 4.00 s (frame 121)'
    # a scene starting at frame 1 at 24 fps for a 30 fps result
    assert '"map" 3.41 s (frame 84)' in summary_line(report, first_frame=1, frame_scale=24 / 30)
    assert summary_line(report, most=1).endswith("(frame 104) and 1 more")
    unmeasured = {"source": "recognised", "measured": False, "note": "closure is measured on control results only",
                  "entries": [{**e, "closed": None} for e in entries]}
    assert summary_line(unmeasured) == ("lip sync: 3 bilabials recognised in the audio, closure not measured "
                                        "(closure is measured on control results only)")
    assert summary_line({**unmeasured, "entries": [], "note": "no words were recognised in the audio"}) == (
        "lip sync: no bilabials to check (no words were recognised in the audio)")


def test_infer_many_writes_a_report_beside_each_result_and_says_it_on_the_files_line(tmp_path):
    folder = tmp_path / "voice"
    folder.mkdir()
    (folder / "line.wav").write_bytes(SAMPLE.read_bytes())
    (folder / "line.txt").write_text(SAMPLE_TEXT, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "server", "infer-many", "--audio-dir", folder, "--out-dir",
                           tmp_path / "out", "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = InferResult.load(tmp_path / "out" / "line.npz")
    report = json.loads(report_path(tmp_path / "out" / "line.npz").read_text(encoding="utf-8"))
    assert report == result.lipsync and report["source"] == "transcript" and report["bilabials"] == 8
    check_against_weights(report, result)
    done = next(ln for ln in proc.stdout.splitlines() if " done line.wav" in ln)
    assert done.endswith(f"; lip sync: {report['closed']} of 8 bilabials closed") or "; open: " in done, done


def test_long_clips_are_recognised_in_pieces_cut_in_pauses():
    from server.audio import load_audio
    from server.lipsync_report import PIECE_S, pieces, recognised_phones

    one = load_audio(str(shared_fixture("speech", "voca_test_sentence.wav")))
    audio = np.concatenate([one] * 3)  # 15.3 s: more than one piece
    assert pieces(one) == [(0, len(one))]
    cuts = pieces(audio)
    assert len(cuts) == 2 and cuts[0][0] == 0 and cuts[0][1] == cuts[1][0] and cuts[-1][1] == len(audio)
    assert all(b - a <= PIECE_S * 16000 for a, b in cuts)
    cut = cuts[0][1]
    around = np.mean(np.square(audio[cut - 2000:cut + 2000]))
    assert around < 0.01 * np.mean(np.square(audio)), "the cut is not in a pause"
    seen = []

    def progress(stage, fraction):
        seen.append((stage, fraction))

    phones, note = recognised_phones(audio, progress)
    assert seen == [("report", 0.0), ("report", 0.5)] and note == ""
    myopia = [s for p, w, s, e in phones if p == "M" and w == "myopia"]
    assert len(myopia) == 3, phones  # one in each copy, the third after the cut, at its own time
    assert np.allclose(np.diff(myopia), len(one) / 16000, atol=0.05)


def test_a_cancel_during_recognition_is_not_taken_for_a_missing_recogniser():
    from server.lipsync_report import lipsync_report
    from wav2sem_contract.errors import Cancelled

    def cancelled(stage, fraction):
        raise Cancelled()

    arrays = {"weights": np.zeros((30, 1), np.float32), "names": np.array(["mouthClose"])}
    with pytest.raises(Cancelled):
        lipsync_report("controls", arrays, 30.0, np.zeros(16000, np.float32), None, cancelled)
