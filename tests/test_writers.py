"""The output modes through their registry (real bpy): every mode takes every result kind it
can honestly write, and refuses the rest with a sentence.

A controls result (the embedded default) in a vertex mode is evaluated into vertex motion; the
reference is Blender's own evaluation of the articulation rig's shape keys set to the same
weights on a separate copy of the head.
"""

from __future__ import annotations

import time

import bpy  # noqa: I001 - must come before the add-on
import numpy as np
import pytest

from tests import blender_env as be
from tests.helpers import read_ply, shared_fixture
from wav2sem_blender.rig import add_articulation_rig
from wav2sem_blender.writers import compact, controls, registry
from wav2sem_blender.writers.base import Timing
from wav2sem_contract.errors import Wav2SemError
from wav2sem_contract.result import InferResult

NAMES = ["jawOpen", "mouthFunnel", "mouthSmile_L", "mouthClose"]
FPS = 30.0


@pytest.fixture(scope="module")
def flame():
    return read_ply(shared_fixture("flame", "FLAME_sample.ply"))


@pytest.fixture(autouse=True)
def clean_scene():
    be.reset()


def make_flame(name: str, flame) -> bpy.types.Object:
    verts, tris = flame
    me = bpy.data.meshes.new(name)
    me.from_pydata(verts.tolist(), [], tris.tolist())
    ob = bpy.data.objects.new(name, me)
    bpy.context.scene.collection.objects.link(ob)
    return ob


def controls_result(frames: int = 12) -> InferResult:
    t = np.linspace(0, 1, frames)[:, None]
    weights = (0.5 + 0.5 * np.sin(2 * np.pi * (t + np.arange(len(NAMES)) / len(NAMES)))).astype(np.float32)
    return InferResult("controls", FPS, {"weights": weights, "names": np.array(NAMES)})


def rig_reference(flame, weights: np.ndarray, frame: int) -> np.ndarray:
    """Blender's evaluation of the rig's keys at ``weights[frame]`` on a fresh copy."""
    ob = make_flame("Reference", flame)
    add_articulation_rig(ob)
    for name, w in zip(NAMES, weights[frame], strict=True):
        ob.data.shape_keys.key_blocks[name].value = float(w)
    dg = bpy.context.evaluated_depsgraph_get()
    me = ob.evaluated_get(dg).data
    co = np.empty(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", co)
    bpy.data.objects.remove(ob)
    return co.reshape(-1, 3)


@pytest.mark.parametrize("mode", ["COMPACT", "PER_FRAME", "POINT_CACHE"])
def test_a_controls_result_becomes_vertex_motion_in_every_vertex_mode(flame, mode):
    result = controls_result()
    ob = make_flame("Head", flame)
    writer = registry.resolve(mode, result.kind)
    summary = writer.write(ob, result, Timing(FPS, 1, FPS))
    assert summary.frames == 12 and summary.last_frame == 12.0
    assert not any(n in (ob.data.shape_keys.key_blocks if ob.data.shape_keys else {}) for n in NAMES)  # no rig added
    for frame in (1, 5, 9):
        expected = rig_reference(flame, result["weights"], frame - 1)
        got = be.evaluated(ob, frame)
        moving = np.abs(expected - np.asarray(flame[0], np.float32)).max()
        assert moving > 1e-4  # the reference really moves
        np.testing.assert_allclose(got, expected, atol=2e-6 + 1e-4 * moving)


def test_automatic_mode_keys_controls_and_compacts_vertex_results(flame):
    assert registry.resolve(registry.AUTO, "controls") is controls
    assert registry.resolve(registry.AUTO, "offsets") is compact
    assert registry.resolve(registry.AUTO, "compact") is compact
    ob = make_flame("Head", flame)
    summary = registry.resolve(registry.AUTO, "controls").write(ob, controls_result(), Timing(FPS, 1, FPS))
    assert "articulation rig added" in summary.notes
    assert set(NAMES) <= set(ob.data.shape_keys.key_blocks.keys())


def test_control_curves_refuse_vertex_offsets_with_a_sentence(flame):
    ob = make_flame("Head", flame)
    offsets = InferResult("offsets", FPS, {"offsets": np.zeros((3, len(ob.data.vertices), 3), np.float32)})
    with pytest.raises(Wav2SemError) as err:
        registry.resolve("CONTROLS", "offsets").write(ob, offsets, Timing(FPS, 1, FPS))
    assert err.value.code == "wrong_result" and "named controls" in err.value.message
    assert ob.data.shape_keys is None  # nothing written


def test_the_registry_is_the_one_list_of_modes():
    ids = [item[0] for item in registry.OUTPUT_MODES]
    assert ids == [registry.AUTO, *registry.WRITERS]
    numbers = {item[0]: item[4] for item in registry.OUTPUT_MODES}
    # numbers are what a .blend stores: the four original modes keep theirs
    assert [numbers[m] for m in ("COMPACT", "PER_FRAME", "POINT_CACHE", "CONTROLS")] == [0, 1, 2, 3]
    assert set(registry.CLI_MODES.values()) == set(ids)
    scene_enum = bpy.types.Scene.bl_rna.properties  # registered from the same table
    settings = bpy.context.scene.wav2sem.bl_rna.properties["output_mode"]
    assert [i.identifier for i in settings.enum_items] == ids and settings.default == registry.DEFAULT_MODE
    assert scene_enum is not None
    op = bpy.ops.wav2sem.generate.get_rna_type().properties["mode"]
    assert [i.identifier for i in op.enum_items] == ids


def test_clear_all_removes_every_mode_and_nothing_of_the_users(flame):
    ob = make_flame("Head", flame)
    ob.shape_key_add(name="Basis")
    ob.shape_key_add(name="Blink")
    result = controls_result()
    for mode in ("COMPACT", "POINT_CACHE", "CONTROLS"):
        registry.resolve(mode, "controls").write(ob, result, Timing(FPS, 1, FPS))
    registry.clear_all(ob)
    keys = ob.data.shape_keys
    assert not any(kb.name.startswith("W2S ") for kb in keys.key_blocks)
    assert "Blink" in keys.key_blocks and not ob.modifiers
    action = keys.animation_data.action if keys.animation_data else None
    from wav2sem_blender.compat import action_fcurves

    assert not (action and action_fcurves(action))  # our control curves went with the rest


class _Finished:
    """A Generation that is done at once with a given result (no server): the operator's write path alone."""

    result: InferResult

    def __init__(self, client, plan) -> None:
        self.plan, self.error, self.state, self.cancel_requested = plan, None, "done", False
        self.stage, self.fraction, self.started = "write", 1.0, time.monotonic()

    def step(self) -> bool:
        return True

    def load_result(self) -> InferResult:
        return self.result


def test_a_writer_refusing_the_result_leaves_the_earlier_run_in_place(tmp_path, monkeypatch):
    """The operator removes an earlier run's output only once the new result is known to fit: a
    controls result on a head without mouth landmarks is refused and the old keys keep playing."""
    from wav2sem_blender import operators, runtime

    ob = be.make_head(n=5000)  # no W2S landmark groups, and not FLAME's 5023 vertices
    n = len(ob.data.vertices)
    earlier = {"weights": np.ones((4, 1), np.float32), "basis": np.full((1, n, 3), 0.01, np.float32),
               "bias": np.zeros((n, 3), np.float32), "max_error": np.float32(0), "exact": np.bool_(True)}
    compact.write(ob, InferResult("compact", FPS, earlier), Timing(FPS, 1, FPS))
    before = [kb.name for kb in ob.data.shape_keys.key_blocks]
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"RIFF")
    monkeypatch.setattr(_Finished, "result", controls_result(), raising=False)
    monkeypatch.setattr(operators, "Generation", _Finished)
    monkeypatch.setattr(runtime, "client", lambda: None)
    for mode in ("COMPACT", "PER_FRAME", "POINT_CACHE", "CONTROLS", "AUTO"):
        try:
            ret = bpy.ops.wav2sem.generate(audio=str(audio), object=ob.name, bundle=str(tmp_path), mode=mode,
                                           add_sound=False)
        except RuntimeError:  # bpy.ops raises on an ERROR report; the message is in the status
            ret = {"CANCELLED"}
        message = bpy.context.window_manager.wav2sem_status.message
        assert ret == {"CANCELLED"} and "mouth landmarks" in message and "W2S" in message, (mode, message)
        assert [kb.name for kb in ob.data.shape_keys.key_blocks] == before, mode
        assert not ob.modifiers


def test_a_point_cache_that_cannot_be_written_is_a_sentence_not_a_traceback(tmp_path, monkeypatch):
    from wav2sem_blender import operators, runtime
    from wav2sem_blender.writers.point_cache import cache_path

    ob = be.make_head(n=5000)
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"RIFF")
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "scene.blend"))
    cache_path(ob, tmp_path)[0].mkdir()  # a folder where the cache file must go: the rename onto it fails
    n = len(ob.data.vertices)
    monkeypatch.setattr(_Finished, "result", InferResult("offsets", FPS, {"offsets": np.zeros((3, n, 3), np.float32)}),
                        raising=False)
    monkeypatch.setattr(operators, "Generation", _Finished)
    monkeypatch.setattr(runtime, "client", lambda: None)
    try:
        ret = bpy.ops.wav2sem.generate(audio=str(audio), object=ob.name, bundle=str(tmp_path), mode="POINT_CACHE",
                                       add_sound=False)
    except RuntimeError:
        ret = {"CANCELLED"}
    message = bpy.context.window_manager.wav2sem_status.message
    assert ret == {"CANCELLED"} and "could not be written" in message and "folder you can write to" in message
    assert not ob.modifiers and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_point_cache_streams_the_motion_into_the_file(tmp_path):
    """The .pc2 holds rest + bias + weights @ basis at every frame (numpy's own einsum as the reference),
    written a few frames at a time: a 3000-frame clip (181 MB of positions) never holds them all at once."""
    import tracemalloc

    from wav2sem_blender.writers import point_cache
    from wav2sem_blender.writers.common import sidecars_for

    ob = be.make_head()
    rest = be.positions(ob).copy()
    n, frames = len(rest), 3000
    rng = np.random.default_rng(0)
    arrays = {"weights": rng.uniform(-1, 1, (frames, 3)).astype(np.float32),
              "basis": rng.normal(0, 1e-3, (3, n, 3)).astype(np.float32),
              "bias": rng.normal(0, 1e-4, (n, 3)).astype(np.float32), "max_error": np.float32(0), "exact": np.bool_(True)}
    with sidecars_for(tmp_path / "scene.blend"):
        tracemalloc.start()
        summary = point_cache.write(ob, InferResult("compact", FPS, arrays), Timing(FPS, 1, FPS))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 60e6, peak  # the whole motion would be 181 MB
    data = np.fromfile(summary.files[0], dtype="<f4", offset=32).reshape(frames, n, 3)
    expected = rest + arrays["bias"] + np.einsum("tk,kvc->tvc", arrays["weights"], arrays["basis"])
    np.testing.assert_allclose(data, expected, rtol=0, atol=1e-6)
