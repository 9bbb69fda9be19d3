"""The performance layer beyond the mouth: made by the server from real speech, written by the add-on.

Real audio (the sample sentence, joined with silences to make pauses), the real pipeline with the
embedded default model, real Blender (the bpy module) and, for the operator, the real server.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import bpy  # noqa: I001
import numpy as np
import pytest
import soundfile as sf

from server.models.bundle import default_bundle, load_bundle
from server.performance import PAUSE_BOOST, analyse, performance_layer
from server.pipeline import run
from tests import blender_env as be
from tests.helpers import shared_fixture
from wav2sem_blender import batch, operators
from wav2sem_blender import performance as writer
from wav2sem_blender.compat import fcurves_of
from wav2sem_blender.writers.base import Timing
from wav2sem_contract import performance as names
from wav2sem_contract.controls import CONTROLS
from wav2sem_contract.errors import Wav2SemError
from wav2sem_contract.request import InferRequest

ROOT = Path(__file__).resolve().parents[1]
SR = 16000
BLINK = [names.PERFORMANCE_CONTROLS.index(n) for n in ("eyeBlink_L", "eyeBlink_R")]
OTHERS = [i for i, n in enumerate(names.PERFORMANCE_CONTROLS) if not n.startswith("eyeBlink")]


def sentence() -> np.ndarray:
    audio, sr = sf.read(ROOT / "assets" / "sample_sentence.wav", dtype="float32")
    assert sr == SR and audio.ndim == 1
    return audio


def with_pauses(repeats: int, pause: float = 0.9) -> np.ndarray:
    """The sentence ``repeats`` times, each followed by ``pause`` seconds of silence (plus its own tail)."""
    a = sentence()
    return np.concatenate([np.concatenate([a, np.zeros(int(pause * SR), np.float32)]) for _ in range(repeats)])


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("performance") / "two_phrases.wav"
    sf.write(path, with_pauses(2), SR)
    return path


@pytest.fixture(scope="module")
def results(clip):
    """The default model on the clip: no layer, the layer at 1 and 0.5 with seed 3, seed 3 again, seed 4."""
    bundle = load_bundle(default_bundle())
    runs = {"none": {}, "full": {"performance": 1.0, "seed": 3}, "again": {"performance": 1.0, "seed": 3},
            "half": {"performance": 0.5, "seed": 3}, "other": {"performance": 1.0, "seed": 4}}
    return {k: run(bundle, InferRequest(str(clip), bundle=str(default_bundle()), **v)) for k, v in runs.items()}


# -- the server side -------------------------------------------------------------------------------

def test_the_layer_never_names_a_mouth_control():
    assert not set(names.PERFORMANCE_CONTROLS) & set(CONTROLS)


def test_pipeline_layer_is_deterministic_for_a_seed_and_differs_for_another(results):
    full, again, other = results["full"], results["again"], results["other"]
    for array in (names.WEIGHTS, names.HEAD):
        np.testing.assert_array_equal(full[array], again[array])
        assert not np.array_equal(full[array], other[array])
    assert full[names.WEIGHTS].shape == (full.frames, len(names.PERFORMANCE_CONTROLS))
    assert full[names.HEAD].shape == (full.frames, 3)
    assert [str(n) for n in full[names.NAMES]] == names.PERFORMANCE_CONTROLS
    assert full.provenance["performance"]["seed"] == 3 and full.provenance["performance"]["blinks"] >= 1
    assert full[names.WEIGHTS][:, BLINK].max() > 0.99  # a blink closes the lid on a frame


def test_pipeline_layer_leaves_the_mouth_alone_and_is_scaled_by_its_intensity(results):
    none, full, half = results["none"], results["full"], results["half"]
    assert names.WEIGHTS not in none and names.HEAD not in none and none.provenance["performance"] is None
    for r in (full, half):
        np.testing.assert_array_equal(r["weights"], none["weights"])  # the mouth: bit for bit
        assert r.names == none.names == CONTROLS
    w_full, w_half = full[names.WEIGHTS], half[names.WEIGHTS]
    np.testing.assert_array_equal(w_half[:, BLINK], w_full[:, BLINK])  # same blinks, always full closures
    np.testing.assert_allclose(w_half[:, OTHERS], 0.5 * w_full[:, OTHERS], atol=1e-6)
    np.testing.assert_allclose(half[names.HEAD], 0.5 * full[names.HEAD], atol=1e-7)
    assert w_full[:, OTHERS].max() > 0.1 and np.abs(full[names.HEAD]).max() > 0.005


def test_blinks_follow_the_published_rate_and_cluster_at_pauses():
    audio = with_pauses(8)  # ~40 s: 8 phrases, each ending in a 1.3 s pause
    prosody = analyse(audio, SR)
    assert len(prosody.pauses) == 8 and len(prosody.phrase_ends) == 8
    seconds = len(audio) / SR
    paused = sum(b - a for a, b in prosody.pauses)
    inside = outside = 0
    rates = []
    for seed in range(8):
        layer = performance_layer(audio, SR, int(seconds * 30), 30.0, 1.0, seed)
        starts = np.array([s for s, _ in layer.blinks])
        pause = prosody.in_pause(starts)
        inside, outside = inside + pause.sum(), outside + (~pause).sum()
        rates.append(len(starts) / seconds * 60)
        durations = np.array([d for _, d in layer.blinks])
        assert ((durations >= 0.15) & (durations <= 0.4)).all()
        assert np.diff(starts).min() >= 0.5 - 1e-9
    assert 19 <= np.mean(rates) <= 27  # conversation: 20-26 blinks/min (Bentivoglio 1997, Doughty 2001)
    density_in, density_out = inside / (8 * paused), outside / (8 * (seconds - paused))
    assert density_in > PAUSE_BOOST / 2 * density_out  # blink starts per second: pauses well above speech


def test_intensity_zero_is_nothing_and_blinks_close_faster_than_they_open():
    audio = with_pauses(2)
    layer = performance_layer(audio, SR, 300, 30.0, 0.0, 1)
    assert not layer.weights.any() and not layer.head.any()
    layer = performance_layer(audio, SR, 300, 30.0, 1.0, 1)
    curve = layer.weights[:, BLINK[0]].astype(float)
    for start, duration in layer.blinks:
        frames = np.arange(300) / 30.0
        span = (frames >= start - 0.05) & (frames <= start + duration + 0.05)
        rising = np.sum(span & (np.gradient(curve) > 1e-3))
        falling = np.sum(span & (np.gradient(curve) < -1e-3))
        if start + duration < 300 / 30.0:
            assert rising < falling


# -- arguments -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [("performance", 1.5), ("performance", -0.1), ("performance", float("nan")),
                                          ("seed", -1), ("seed", True), ("seed", 2**31)])
def test_request_refuses_out_of_range_values_in_one_sentence(field, value):
    with pytest.raises(Wav2SemError) as err:
        InferRequest("a.wav", **{field: value}).validate()
    assert err.value.code == "bad_request" and field.replace("performance", "performance intensity") in err.value.message
    with pytest.raises(Wav2SemError):
        InferRequest.from_message({"audio": "a.wav", field: "high"})


def test_infer_cli_refuses_a_performance_outside_0_to_1(tmp_path, clip):
    done = subprocess.run([sys.executable, "-m", "server", "infer", "--audio", str(clip), "--out",
                           str(tmp_path / "r.npz"), "--performance", "1.5"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and not (tmp_path / "r.npz").exists()
    assert done.stderr.strip().splitlines() == [
        "error: The performance intensity must be between 0 and 1, not 1.5. Pass --performance in 0..1 (0: mouth only)."]


@pytest.mark.parametrize("flag, value", [("--performance", "2"), ("--performance", "lots"), ("--seed", "-3"),
                                         ("--seed", "1.5")])
def test_batch_refuses_bad_performance_flags_in_one_line(tmp_path, capsys, flag, value):
    code = batch.main(["--blend", str(tmp_path / "missing.blend"), "--object", "Head", "--audio", "a.wav",
                       flag, value])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"error: {flag} must be")


# -- Blender ----------------------------------------------------------------------------------------------

def arkit_head(split_brow: bool = True) -> bpy.types.Object:
    """A head with the mouth controls and the layer's shape keys (``browInnerUp`` split in two, as ICT's)."""
    ob = be.make_head()
    ob.shape_key_add(name="Basis")
    wanted = [n for n in names.PERFORMANCE_CONTROLS if not (split_brow and n == "browInnerUp")]
    for name in CONTROLS + wanted + (["browInnerUp_L", "browInnerUp_R"] if split_brow else []):
        ob.shape_key_add(name=name, from_mix=False).value = 0.0
    return ob


def key_values(ob, frame: int, keys: list[str]) -> np.ndarray:
    bpy.context.scene.frame_set(frame)
    return np.array([ob.data.shape_keys.key_blocks[k].value for k in keys])


def test_layer_goes_on_its_own_tracks_and_mutes_and_scales_there(results):
    be.reset(30)
    ob = arkit_head()
    full = results["full"]
    notes = writer.write(ob, full, Timing(full.fps, 1, 30.0))
    assert notes == ["performance layer: 15 face controls + head motion"]
    key = ob.data.shape_keys
    assert [t.name for t in key.animation_data.nla_tracks] == ["W2S Performance Rest", "W2S Performance"]
    assert [t.name for t in ob.animation_data.nla_tracks] == ["W2S Head Motion Rest", "W2S Head Motion"]
    assert key.animation_data.action is None and ob.animation_data.action is None  # no one's action is touched
    w, head = full[names.WEIGHTS], full[names.HEAD]
    cols = [names.PERFORMANCE_CONTROLS.index(n) for n in ("eyeBlink_L", "browInnerUp", "browInnerUp", "cheekSquint_R")]
    keys = ["eyeBlink_L", "browInnerUp_L", "browInnerUp_R", "cheekSquint_R"]
    frames = [1 + i for i in (int(np.argmax(w[:, BLINK[0]])), int(np.argmax(w[:, cols[1]])), 20)]
    for f in frames:
        np.testing.assert_allclose(key_values(ob, f, keys), w[f - 1, cols], atol=1e-5)
        np.testing.assert_allclose(np.array(ob.delta_rotation_euler), head[f - 1], atol=1e-6)
    np.testing.assert_allclose(key_values(ob, full.frames + 30, keys), 0.0)  # after the clip: at rest
    # the animator's knobs: the strip's influence scales, the track's mute turns it off (never closes the eyes)
    strip = key.animation_data.nla_tracks["W2S Performance"].strips[0]
    strip.use_animated_influence = True
    strip.fcurves.find("influence").keyframe_points[0].co.y = 0.5
    for f in frames:
        np.testing.assert_allclose(key_values(ob, f, keys), 0.5 * w[f - 1, cols], atol=1e-5)
    key.animation_data.nla_tracks["W2S Performance"].mute = True
    ob.animation_data.nla_tracks["W2S Head Motion"].mute = True
    for f in frames:
        np.testing.assert_allclose(key_values(ob, f, keys), 0.0)
        np.testing.assert_allclose(np.array(ob.delta_rotation_euler), 0.0)
    # a result without the layer removes it, actions included
    writer.write(ob, results["none"], Timing(full.fps, 1, 30.0))
    assert not key.animation_data.nla_tracks and not ob.animation_data.nla_tracks
    assert not [a for a in bpy.data.actions if a.get(writer.OWN)]


def test_a_head_without_those_shape_keys_gets_the_head_motion_and_says_what_was_skipped(results):
    be.reset(30)
    ob = be.make_head()
    ob.shape_key_add(name="Basis")
    ob.shape_key_add(name="eyeBlink_L", from_mix=False)  # one of fifteen
    notes = writer.write(ob, results["full"], Timing(30.0, 1, 24.0))
    assert notes[0].startswith("performance layer: 1 face controls + head motion (no shape keys for eyeBlink_R, ")
    be.reset(30)
    ob = be.make_head(n=5000)  # not FLAME's 5023 vertices: no mouth landmarks to place face keys with
    notes = writer.write(ob, results["full"], Timing(30.0, 1, 24.0))
    assert notes[0] == "performance layer: head motion (the head has no eye, brow, cheek or nose shape keys)"
    assert notes[1] == f"no face keys added (no mouth landmarks found on '{ob.name}')" and len(notes) == 2
    assert [t.name for t in ob.animation_data.nla_tracks] == ["W2S Head Motion Rest", "W2S Head Motion"]


def mouth_curves(ob) -> dict[str, np.ndarray]:
    out = {}
    for fc in fcurves_of(ob.data.shape_keys, create=False):
        co = np.empty(2 * len(fc.keyframe_points), np.float32)
        fc.keyframe_points.foreach_get("co", co)
        out[fc.data_path] = co
    return out


def test_generate_writes_the_layer_without_changing_the_mouth_curves(clip):
    be.reset(30)
    arkit_head(split_brow=False)
    try:
        bpy.ops.wav2sem.generate(audio=str(clip), object="Head", performance=0.0)
        ob = bpy.data.objects["Head"]
        mouth_alone = mouth_curves(ob)
        assert set(mouth_alone) == {f'key_blocks["{n}"].value' for n in CONTROLS}
        assert not ob.data.shape_keys.animation_data.nla_tracks
        bpy.ops.wav2sem.generate(audio=str(clip), object="Head", performance=1.0, seed=5)
    finally:
        operators.CANCEL.clear()
    with_layer = mouth_curves(ob)
    assert with_layer.keys() == mouth_alone.keys()
    for path, co in mouth_alone.items():
        np.testing.assert_array_equal(with_layer[path], co)
    assert [t.name for t in ob.data.shape_keys.animation_data.nla_tracks] == ["W2S Performance Rest", "W2S Performance"]
    assert "performance layer: 15 face controls + head motion" in bpy.context.window_manager.wav2sem_status.message
    assert [t.name for t in ob.animation_data.nla_tracks] == ["W2S Head Motion Rest", "W2S Head Motion"]
    try:  # Head Motion off: the face layer alone, the earlier head tracks gone
        bpy.ops.wav2sem.generate(audio=str(clip), object="Head", performance=1.0, seed=5, head_motion=False)
    finally:
        operators.CANCEL.clear()
    assert not ob.animation_data.nla_tracks and len(ob.data.shape_keys.animation_data.nla_tracks) == 2
    text = bpy.context.window_manager.wav2sem_status.message
    assert "performance layer: 15 face controls" in text and "head motion" not in text


def test_the_ict_rig_plays_the_layer_on_its_own_keys(results):
    path = shared_fixture("arkit_rig", "ict_facekit_arkit.npz")
    data = np.load(path)
    be.reset(30)
    me = bpy.data.meshes.new("ICT")
    me.from_pydata(data["neutral"].astype(float).tolist(), [], [])
    ob = bpy.data.objects.new("ICT", me)
    bpy.context.scene.collection.objects.link(ob)
    ob.shape_key_add(name="Basis")
    for name in [str(n) for n in data["names"]]:
        ob.shape_key_add(name=name, from_mix=False)
    notes = writer.write(ob, results["full"], Timing(30.0, 1, 30.0))
    assert notes == ["performance layer: 15 face controls + head motion"]


def test_batch_passes_performance_and_seed_through(tmp_path, clip):
    from tests.bundles import make_tiny_bundle
    from tests.helpers import write_head_blend

    blend, out = write_head_blend(tmp_path / "in.blend"), tmp_path / "out.blend"
    done = subprocess.run([sys.executable, str(ROOT / "wav2sem_blender" / "batch.py"), "--blend", str(blend),
                           "--object", "Head", "--audio", str(clip), "--bundle", str(make_tiny_bundle(tmp_path / "ff")),
                           "--mode", "compact", "--performance", "1", "--seed", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "performance layer: head motion (the head has no eye, brow, cheek or nose shape keys)" in done.stdout
    bpy.ops.wm.open_mainfile(filepath=str(out))
    tracks = bpy.data.objects["Head"].animation_data.nla_tracks
    assert [t.name for t in tracks] == ["W2S Head Motion Rest", "W2S Head Motion"]
    be.reset()
