"""Datasets in the official layouts (restricted templates unpickler, check-dataset, synthetic make-dataset)
and the face metrics (LVE, MVE, FDD) on examples small enough to compute by hand."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training.datasets import biwi, vocaset
from training.datasets.check import check_dataset
from training.datasets.layout import parse_name
from training.datasets.registry import detect_layout
from training.datasets.templates import load_templates, save_templates
from training.eval.face_metrics import (
    MetricAccumulator,
    Regions,
    face_metrics,
    read_region_file,
    read_regions,
)
from wav2sem_contract.errors import Wav2SemError

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str, module: str = "server") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


# ------------------------------------------------------------------------------------- templates.pkl
class _RunsCode:
    """Unpickling this calls os.system: what a hostile templates.pkl would do."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_templates_round_trip_every_protocol(tmp_path):
    data = {"A": np.random.default_rng(0).random((5, 3)), "B": np.arange(12, dtype=np.float32)}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        (tmp_path / "t.pkl").write_bytes(pickle.dumps(data, protocol=protocol))
        loaded = load_templates(tmp_path / "t.pkl")
        assert set(loaded) == {"A", "B"}
        np.testing.assert_array_equal(loaded["A"], data["A"])
        assert loaded["B"].shape == (4, 3)  # flattened (3V,) templates come back as (V, 3)
    save_templates(tmp_path / "s.pkl", {"A": data["A"]})
    np.testing.assert_array_equal(load_templates(tmp_path / "s.pkl")["A"], data["A"])
    # a Python 2 file's str keys, read as bytes, are names too
    (tmp_path / "p2.pkl").write_bytes(pickle.dumps({b"F1": data["A"]}, protocol=2))
    assert list(load_templates(tmp_path / "p2.pkl")) == ["F1"]


def test_templates_written_by_python2(tmp_path):
    # VOCASET's templates.pkl comes from Python 2: protocol-0 text, str (not bytes) holding the raw
    # array data, which only loads with encoding latin1. Written here opcode by opcode as Python 2 does.
    a = np.arange(6, dtype="<f8").reshape(2, 3) / 7
    raw = "".join(f"\\x{b:02x}" for b in a.tobytes())
    text = ("(dp0\nS'FaceTalk_A_TA'\np1\ncnumpy.core.multiarray\n_reconstruct\np2\n(cnumpy\nndarray\np3\n(I0\n"
            "tp4\nS'b'\np5\ntp6\nRp7\n(I1\n(I2\nI3\ntp8\ncnumpy\ndtype\np9\n(S'f8'\np10\nI0\nI1\ntp11\nRp12\n"
            f"(I3\nS'<'\np13\nNNNI-1\nI-1\nI0\ntp14\nbI00\nS'{raw}'\np15\ntp16\nbs.")
    (tmp_path / "templates.pkl").write_bytes(text.encode("ascii"))
    np.testing.assert_array_equal(load_templates(tmp_path / "templates.pkl")["FaceTalk_A_TA"], a)


@pytest.mark.parametrize("where", ["top", "inside"])
def test_templates_refuse_code_and_nothing_runs(tmp_path, where):
    marker = tmp_path / "ran"
    evil = _RunsCode(f"touch {marker}")
    obj = evil if where == "top" else {"A": np.zeros((2, 3)), "B": evil}
    (tmp_path / "templates.pkl").write_bytes(pickle.dumps(obj))
    with pytest.raises(Wav2SemError) as err:
        load_templates(tmp_path / "templates.pkl")
    assert err.value.code == "templates_unsafe"
    assert "system" in err.value.message and "not loaded" in err.value.message
    assert not marker.exists()
    # the same pickle through plain pickle.load would have run it: the test's bait is real
    pickle.loads((tmp_path / "templates.pkl").read_bytes())
    assert marker.exists()


def test_templates_refuse_other_globals_and_codecs(tmp_path):
    # builtins.eval, and _codecs.encode with a codec other than latin1
    for payload in (b"cbuiltins\neval\n(V1+1\ntR.", b"c_codecs\nencode\n(Vabc\nVrot13\ntR."):
        (tmp_path / "t.pkl").write_bytes(payload)
        with pytest.raises(Wav2SemError) as err:
            load_templates(tmp_path / "t.pkl")
        assert err.value.code == "templates_unsafe"


@pytest.mark.parametrize("content, code", [
    ([np.zeros((3, 3))], "templates_unsafe"),  # a list, not a dict
    ({"A": "not an array"}, "templates_unsafe"),
    ({"A": np.array([{"x": 1}], dtype=object)}, "templates_unsafe"),
    ({1: np.zeros((3, 3))}, "templates_unsafe"),
    ({"A": np.zeros((4, 2))}, "templates_bad"),
    ({"A": np.full((2, 3), np.nan)}, "templates_bad"),
    ({}, "templates_bad"),
])
def test_templates_refuse_non_template_content(tmp_path, content, code):
    (tmp_path / "t.pkl").write_bytes(pickle.dumps(content))
    with pytest.raises(Wav2SemError) as err:
        load_templates(tmp_path / "t.pkl")
    assert err.value.code == code


def test_templates_truncated_or_missing(tmp_path):
    (tmp_path / "t.pkl").write_bytes(pickle.dumps({"A": np.zeros((3, 3))})[:-10])
    with pytest.raises(Wav2SemError) as err:
        load_templates(tmp_path / "t.pkl")
    assert err.value.code == "templates_bad"
    with pytest.raises(Wav2SemError) as err:
        load_templates(tmp_path / "absent.pkl")
    assert err.value.code == "templates_missing"


# ---------------------------------------------------------------------------------------- layouts
def test_official_layouts():
    assert vocaset.LAYOUT.fps == 30 and vocaset.LAYOUT.stride == 2 and vocaset.LAYOUT.capture_fps == 60
    assert vocaset.LAYOUT.style_order[0] == "FaceTalk_170728_03272_TA" and len(vocaset.LAYOUT.style_order) == 8
    assert vocaset.LAYOUT.splits_of("FaceTalk_170809_00138_TA", 21) == ["test"]
    assert vocaset.LAYOUT.splits_of("FaceTalk_170809_00138_TA", 20) == []  # test subjects use 21-40 only
    assert vocaset.LAYOUT.splits_of("FaceTalk_170728_03272_TA", 5) == ["train"]
    assert biwi.LAYOUT.fps == 25 and biwi.LAYOUT.stride == 1 and biwi.AUDIO_FRAMES_PER_MOTION_FRAME == 2
    assert biwi.LAYOUT.splits_of("F2", 32) == ["train"] and biwi.LAYOUT.splits_of("F2", 38) == ["test_a"]
    assert biwi.LAYOUT.splits_of("M6", 40) == ["test"] and biwi.LAYOUT.splits_of("M6", 1) == []
    assert parse_name("FaceTalk_170728_03272_TA_sentence07") == ("FaceTalk_170728_03272_TA", "sentence07", 7)
    assert parse_name("F2_e33") == ("F2", "e33", 33)
    assert parse_name("nounderscore") is None


# ---------------------------------------------------------------------------------- check-dataset
V_SMALL = 6
TRAIN0, TRAIN1 = vocaset.TRAIN[0], vocaset.TRAIN[1]


def _write_sequence(root: Path, name: str, frames: int, fps: float = 60.0, audio_s: float | None = None,
                    vertices: int = V_SMALL, sr: int = 22000) -> None:
    (root / "wav").mkdir(parents=True, exist_ok=True)
    (root / "vertices_npy").mkdir(parents=True, exist_ok=True)
    seconds = frames / fps if audio_s is None else audio_s
    t = np.arange(int(seconds * sr)) / sr
    sf.write(root / "wav" / f"{name}.wav", 0.3 * np.sin(2 * np.pi * 220 * t), sr, subtype="PCM_16")
    np.save(root / "vertices_npy" / f"{name}.npy", np.zeros((frames, 3 * vertices), np.float32))


def _small_vocaset(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    save_templates(root / "templates.pkl", {s: np.zeros((V_SMALL, 3)) for s in vocaset.TRAIN + vocaset.TEST})
    for subject in (TRAIN0, TRAIN1):
        for k in (1, 2):
            _write_sequence(root, f"{subject}_sentence{k:02d}", frames=60)
    _write_sequence(root, f"{vocaset.TEST[0]}_sentence21", frames=60)
    return root


def test_check_clean_vocaset_counts_frames_at_30fps(tmp_path):
    report = check_dataset(_small_vocaset(tmp_path), progress=False)
    assert report.layout.name == "vocaset" and not report.problems
    assert [q.frames for q in report.sequences] == [30] * 5  # 60 stored rows read [::2]
    text = "\n".join(report.lines())
    assert "no problems found" in text and "split test: 1 sequences, 30 frames" in text
    assert "22000 Hz" in text


def test_check_finds_planted_mismatches(tmp_path):
    root = _small_vocaset(tmp_path)
    (root / "wav" / f"{TRAIN0}_sentence01.wav").unlink()  # motion without audio
    (root / "vertices_npy" / f"{TRAIN0}_sentence02.npy").unlink()  # audio without motion
    _write_sequence(root, f"{TRAIN1}_sentence03", frames=60, audio_s=1.6)  # 1 s of motion, 1.6 s of audio
    _write_sequence(root, "Somebody_Else_TA_sentence01", frames=60)  # in no split, no template
    _write_sequence(root, f"{TRAIN1}_sentence04", frames=60, vertices=V_SMALL + 1)
    _write_sequence(root, f"{TRAIN1}_take4", frames=60)
    (root / "vertices_npy" / f"{vocaset.TEST[0]}_sentence22.npy").write_bytes(b"not numpy")
    _write_sequence(root, f"{vocaset.TEST[0]}_sentence23", frames=60)
    np.save(root / "vertices_npy" / f"{vocaset.TEST[0]}_sentence23.npy", np.array([{"a": 1}], dtype=object))
    report = check_dataset(root, progress=False)
    found = {(p.kind, p.name) for p in report.problems}
    assert found == {
        ("no_audio", f"{TRAIN0}_sentence01"),
        ("no_motion", f"{TRAIN0}_sentence02"),
        ("length", f"{TRAIN1}_sentence03"),
        ("unknown_subject", "Somebody_Else_TA_sentence01"),
        ("no_template", "Somebody_Else_TA_sentence01"),
        ("bad_motion", f"{TRAIN1}_sentence04"),
        ("bad_name", f"{TRAIN1}_take4"),
        ("no_audio", f"{vocaset.TEST[0]}_sentence22"),
        ("bad_motion", f"{vocaset.TEST[0]}_sentence22"),
        ("bad_motion", f"{vocaset.TEST[0]}_sentence23"),  # a pickled .npy is refused, not loaded
    }
    length = next(p for p in report.problems if p.kind == "length")
    assert "audio 1.60 s but motion 1.00 s" in length.detail
    # within the tolerance it is no problem
    assert not [p for p in check_dataset(root, tolerance_s=0.7, progress=False).problems if p.kind == "length"]


def test_check_biwi_and_refused_templates(tmp_path):
    for name in ("F2_e01", "M6_e37"):
        _write_sequence(tmp_path, name, frames=50, fps=25.0, sr=44100)
    (tmp_path / "templates.pkl").write_bytes(pickle.dumps(_RunsCode(f"touch {tmp_path / 'ran'}")))
    report = check_dataset(tmp_path, progress=False)
    assert report.layout.name == "biwi" and detect_layout(tmp_path).fps == 25
    assert [q.frames for q in report.sequences] == [50, 50]  # BIWI is used as stored
    # without templates the motion is held to BIWI's own 23370 vertices
    assert [p.kind for p in report.problems] == ["templates", "bad_motion", "bad_motion"]
    assert "refused" in report.problems[0].detail or "not loaded" in report.problems[0].detail
    assert not (tmp_path / "ran").exists()


def test_check_dataset_cli(tmp_path):
    root = _small_vocaset(tmp_path / "ds")
    clean = _cli("check-dataset", str(root), "--list", module="training")
    assert clean.returncode == 0, clean.stderr
    assert "no problems found" in clean.stdout and TRAIN0 in clean.stdout
    assert f"  {TRAIN0}_sentence02: train; 30 frames (1.00 s), audio 1.00 s at 22000 Hz" in clean.stdout
    (root / "wav" / f"{TRAIN0}_sentence01.wav").unlink()
    bad = _cli("check-dataset", str(root))  # forwarded by python -m server
    assert bad.returncode == 2
    assert f"no_audio: {TRAIN0}_sentence01" in bad.stdout
    assert bad.stderr.strip().splitlines() == [f"error: 1 problems in {root} (listed above). Fix or remove the "
                                               "files named there; the official loaders skip or crash on them."]


# ------------------------------------------------------------------------------------------ metrics
def _two_frames() -> tuple[np.ndarray, np.ndarray, Regions]:
    """4 vertices, lips = {0, 1}, upper face = {2, 3}; errors chosen to be computed by hand."""
    gt = np.zeros((2, 4, 3))
    pred = gt.copy()
    pred[0, 0] = (3, 4, 0)  # |e| = 5, |e|^2 = 25
    pred[0, 1] = (1, 0, 0)  # 1
    pred[1, 1] = (0, 0, 2)  # |e| = 2, |e|^2 = 4
    return pred, gt, Regions(np.array([0, 1]), np.array([2, 3]))


def test_lve_mve_by_hand():
    pred, gt, regions = _two_frames()
    m = face_metrics([(pred, gt, None)], regions)
    assert m.lve == pytest.approx((25 + 4) / 2)  # per frame the max squared lip error, then the mean
    assert m.lve_l2 == pytest.approx((5 + 2) / 2)
    assert m.mve == pytest.approx((5 + 1 + 2) / 8)  # mean length over 2 frames x 4 vertices
    assert m.fdd is None and m.frames == 2
    # flattened (T, 3V) rows are the same sequences
    assert face_metrics([(pred.reshape(2, -1), gt.reshape(2, -1), None)], regions).lve == m.lve


def test_lve_pools_frames_and_truncates():
    regions = Regions(np.array([0]), np.array([1]))
    one = np.zeros((1, 2, 3))
    one_pred = one.copy()
    one_pred[0, 0, 0] = np.sqrt(10)  # a 1-frame sequence with squared error 10
    three = np.zeros((3, 2, 3))
    three_pred = np.zeros((5, 2, 3))  # 2 frames longer than its ground truth: cut
    three_pred[:, 0, 0] = np.sqrt(2)
    three_pred[3:, 0, 0] = 100.0
    m = face_metrics([(one_pred, one, None), (three_pred, three, None)], regions)
    assert m.frames == 4
    assert m.lve == pytest.approx((10 + 3 * 2) / 4)  # frame-weighted, not (10 + 2) / 2


def test_fdd_by_hand_signed_and_zero():
    template = np.zeros((4, 3))
    gt = np.zeros((2, 4, 3))
    gt[1, 2] = (0, 2, 0)  # upper vertex 2: squared displacement 0 then 4, population std 2; vertex 3 still
    still = np.zeros((2, 4, 3))
    regions = Regions(np.array([0]), np.array([2, 3]))
    assert face_metrics([(gt, gt, template)], regions).fdd == 0.0
    m = face_metrics([(still, gt, template)], regions)
    assert m.fdd == pytest.approx(1.0)  # GT dynamics mean(2, 0) = 1 minus the prediction's 0
    assert face_metrics([(gt, still, template)], regions).fdd == pytest.approx(-1.0)  # signed
    both = face_metrics([(still, gt, template), (gt, still, template)], regions)
    assert both.fdd == pytest.approx(0.0) and both.fdd_abs == pytest.approx(1.0)
    # a template shift changes displacements, hence the dynamics: FDD is relative to the subject's template
    shifted = face_metrics([(still, gt, template + np.array([0, 1.0, 0]))], regions)
    assert shifted.fdd != pytest.approx(1.0)


def test_regions_files_and_range(tmp_path):
    (tmp_path / "lve.txt").write_text("3, 1, 2", encoding="utf-8")  # BIWI's format
    (tmp_path / "fdd.txt").write_text("7\n8\n", encoding="utf-8")
    regions = read_regions(tmp_path)
    assert regions.lips.tolist() == [1, 2, 3] and regions.upper.tolist() == [7, 8]
    (tmp_path / "bad.txt").write_text("1, x", encoding="utf-8")
    with pytest.raises(Wav2SemError, match="found 'x'"):
        read_region_file(tmp_path / "bad.txt")
    with pytest.raises(Wav2SemError) as err:
        MetricAccumulator(regions).add(np.zeros((2, 5, 3)), np.zeros((2, 5, 3)))
    assert err.value.code == "regions_bad"
    with pytest.raises(Wav2SemError) as err:
        read_regions(tmp_path / "absent")
    assert err.value.code == "regions_missing"


def test_metrics_cli(tmp_path):
    pred, gt, _ = _two_frames()
    (tmp_path / "regions").mkdir()
    (tmp_path / "regions" / "lve.txt").write_text("0, 1", encoding="utf-8")
    (tmp_path / "regions" / "fdd.txt").write_text("2, 3", encoding="utf-8")
    (tmp_path / "ds" / "vertices_npy").mkdir(parents=True)
    (tmp_path / "pred").mkdir()
    np.save(tmp_path / "ds" / "vertices_npy" / "F2_e37.npy", gt.reshape(2, -1))
    np.save(tmp_path / "pred" / "F2_e37_condition_F2.npy", pred.reshape(2, -1))
    save_templates(tmp_path / "ds" / "templates.pkl", {"F2": np.zeros((4, 3))})
    out = _cli("metrics", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "ds" / "vertices_npy"),
               "--regions", str(tmp_path / "regions"), "--json", str(tmp_path / "m.json"))
    assert out.returncode == 0, out.stderr
    assert "LVE     1.4500e+01" in out.stdout and "MVE     1.0000e+00" in out.stdout
    assert "FDD     0.0000e+00" in out.stdout  # nothing moves on the upper face in either
    assert "1 sequences, 2 frames (every GT frame)" in out.stdout
    # what `infer` writes for a vertex bundle: offsets from the subject's template, (T, V, 3)
    template = np.full((4, 3), 0.5)
    save_templates(tmp_path / "ds" / "templates.pkl", {"F2": template})
    np.save(tmp_path / "ds" / "vertices_npy" / "F2_e37.npy", (gt + template).reshape(2, -1))
    np.savez(tmp_path / "offsets.npz", offsets=pred.astype(np.float32), fps=np.float32(25))
    npz = _cli("metrics", "--pred", str(tmp_path / "offsets.npz"), "--gt", str(tmp_path / "ds" / "vertices_npy" /
               "F2_e37.npy"), "--regions", str(tmp_path / "regions"))
    assert npz.returncode == 0, npz.stderr
    assert "LVE     1.4500e+01" in npz.stdout and "FDD     0.0000e+00" in npz.stdout
    missing = _cli("metrics", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path), "--regions",
                   str(tmp_path / "regions"), module="training")
    assert missing.returncode == 2 and missing.stderr.startswith("error: 1 predictions have no ground truth")


# ------------------------------------------------------------------------------------ make-dataset
HAVE_FLITE = bool(shutil.which("flite"))


@pytest.mark.skipif(not HAVE_FLITE, reason="flite is not installed (apt-get install flite)")
def test_make_dataset_known_answer(tmp_path):
    import json

    from training.datasets.synthetic import face, rig_basis
    from training.eval.face_metrics import evaluate_files

    root = tmp_path / "synth"
    made = _cli("make-dataset", "--out", str(root), "--subjects", "2", "--sentences", "2", "--grid", "12",
                "--voices", "flite:slt,flite:rms")
    assert made.returncode == 0, made.stderr
    check = _cli("check-dataset", str(root))
    assert check.returncode == 0 and "no problems found" in check.stdout, check.stdout
    assert "Synth_02_TA: 2 sentences (1-2)" in check.stdout and "splits: test" in check.stdout

    meta = json.loads((root / "dataset.json").read_text())
    name = "Synth_01_TA"
    style = meta["synthetic"]["styles"][name]
    template = load_templates(root / "templates.pkl")[name]
    rows = np.load(root / "vertices_npy" / f"{name}_sentence01.npy")  # 60 fps, as VOCASET stores it
    controls = np.load(root / "controls" / f"{name}_sentence01.npy")
    assert len(rows) == len(controls)
    audio, sr = sf.read(root / "wav" / f"{name}_sentence01.wav")
    assert sr == 22000 and abs(len(audio) / sr - len(rows) / 60) < 1 / 60
    # the known answer: on the lips (no brow there) the motion is the rig driven by the stored controls
    vertices, landmarks, _ = face(12, np.array(style["size"]))
    np.testing.assert_allclose(template, vertices)
    lips = read_regions(root / "regions").lips
    expected = (style["gain"] * controls) @ rig_basis(vertices, landmarks).reshape(len(controls[0]), -1)
    got = rows.reshape(len(rows), -1, 3) - template[None]
    np.testing.assert_allclose(got[:, lips], expected.reshape(len(rows), -1, 3)[:, lips], atol=1e-6)
    assert np.abs(got[:, lips]).max() > 1e-3  # and the lips do move (millimetres)

    # predictions run at 30 fps: the GT scored against its own [::2] rows is perfect; a still face is not,
    # and under-moves the brows (positive FDD)
    regions = read_regions(root / "regions")
    perfect, still = tmp_path / "perfect", tmp_path / "still"
    perfect.mkdir()
    still.mkdir()
    templates = load_templates(root / "templates.pkl")
    for f in (root / "vertices_npy").iterdir():
        rows = np.load(f)[::2]
        np.save(perfect / f.name, rows)
        np.save(still / f.name, np.repeat(templates[parse_name(f.stem)[0]].reshape(1, -1), len(rows), 0))
    metrics, stride = evaluate_files(perfect, root / "vertices_npy", regions, progress=False)
    assert stride == 2 and metrics.lve == 0 and metrics.fdd == 0 and metrics.sequences == 4
    worse, _ = evaluate_files(still, root / "vertices_npy", regions, progress=False)
    assert worse.lve > 1e-6 and worse.fdd > 0 and worse.frames == metrics.frames


@pytest.mark.parametrize("command, options", [
    ("make-dataset", ["--out", "--layout", "--subjects", "--sentences", "--voices", "--grid", "--seed"]),
    ("check-dataset", ["dataset", "--layout", "--tolerance", "--list"]),
    ("metrics", ["--pred", "--gt", "--regions", "--templates", "--gt-stride", "--json"]),
])
def test_help_through_both_entry_points(command, options):
    for module in ("server", "training"):
        proc = _cli(command, "--help", module=module)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"usage: python -m {module} {command}")
        assert all(option in proc.stdout for option in options)
    assert command in _cli("--help").stdout
