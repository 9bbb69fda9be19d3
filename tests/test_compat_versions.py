"""``wav2sem_blender.compat`` on both ends of the supported range: Blender 4.2 LTS and 5.0.

One script (``SCRIPT`` below) runs in a subprocess twice: with this process's Python (bpy 5.0)
and with a cached venv holding the 4.2 LTS wheel. It writes bulk keyframes through
``fcurves_of`` + ``writers.common.add_fcurve``, reads them back through ``key_fcurves`` and
``active_fcurves``, evaluates them with ``frame_set`` and lists the sequencer strips through
``strips_of``/``all_strips``; both runs must give the expected values and the same JSON apart from
the version fields.

The 4.2 venv is built once (~350 MB download, Python 3.11 only) under
``$XDG_CACHE_HOME/wav2sem/bpy42-venv`` (default ``~/.cache/...``), then reused. Without network
(or Python 3.11) the 4.2 half skips, unless ``WAV2SEM_REQUIRE_SHARED=1`` (CI), where it fails.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
BPY42 = "bpy==4.2.*"

# Keyframes written by the script: frames and the values of shape keys A and B.
FRAMES = [1.0, 11.0, 21.0, 31.0]
VALUES = {"A": [0.0, 1.0, -0.5, 0.25], "B": [0.2, 0.8, 0.8, 0.0]}
PROBE_FRAMES = [1, 4, 6, 11, 16, 23, 31, 40]
STRIP = {"start": 1, "end": 31}  # COLOR strip, end exclusive (Blender's frame_final_end)

SCRIPT = r"""
import json, sys, wave
sys.path.insert(0, sys.argv[1])
import bpy
import numpy as np

import wav2sem_blender  # the whole add-on package must import (and register) on this version
from wav2sem_blender.compat import action_fcurves, active_fcurves, all_strips, fcurves_of, key_fcurves, strips_of
from wav2sem_blender.key_paths import key_name_of
from wav2sem_blender.key_paths import key_path
from wav2sem_blender.writers.common import add_fcurve

spec = json.loads(sys.argv[2])
out = {"version": bpy.app.version_string, "audaspace": bool(bpy.app.build_options.audaspace)}

wav2sem_blender.register()
out["registered"] = hasattr(bpy.types, "WAV2SEM_OT_generate")
wav2sem_blender.unregister()

bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.fps, scene.render.fps_base = 30, 1.0
me = bpy.data.meshes.new("Tri")
me.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
ob = bpy.data.objects.new("Tri", me)
scene.collection.objects.link(ob)
ob.shape_key_add(name="Basis", from_mix=False)
moves = {"A": (0.0, 0.0, 1.0), "B": (0.0, 0.5, 0.0)}  # vertex 0 moves by these at value 1
for name, d in moves.items():
    kb = ob.shape_key_add(name=name, from_mix=False)
    kb.slider_min = -1.0
    kb.data[0].co = d
key = me.shape_keys

# No animation yet: create=False gives None (no animation_data, then animation_data but no action).
out["none_without_animation_data"] = fcurves_of(key, create=False) is None
ob.animation_data_create()
out["none_without_action"] = fcurves_of(ob, create=False) is None
out["object_still_without_action"] = ob.animation_data.action is None

fcurves = fcurves_of(key, action_name="W2S Test Shape Keys")
out["methods"] = {m: callable(getattr(fcurves, m, None)) for m in ("new", "find", "remove")}
frames = np.array(spec["frames"])
add_fcurve(fcurves, key_path("A"), frames, np.zeros(len(frames)))  # replaced just below
for name, values in spec["values"].items():
    add_fcurve(fcurves, key_path(name), frames, np.array(values))
out["action"] = key.animation_data.action.name
again = fcurves_of(key, create=False)
out["fcurves"] = sorted(fc.data_path for fc in again)
out["find"] = again.find(key_path("B")) is not None and again.find("nope") is None
out["action_fcurves"] = sorted(fc.data_path for fc in action_fcurves(key.animation_data.action))
out["keyframes"] = {
    fc.data_path: [[round(c, 6) for c in kp.co] + [kp.interpolation] for kp in fc.keyframe_points] for fc in again
}

# The read-only readers: key name -> curve (muted curves play no part), and nothing created on the way.
out["key_fcurves"] = {name: fc.data_path for name, fc in key_fcurves(key).items()}
again.find(key_path("B")).mute = True
out["key_fcurves_muted_b"] = sorted(key_fcurves(key))
again.find(key_path("B")).mute = False
out["active_fcurves"] = sorted(fc.data_path for fc in active_fcurves(key))
out["active_fcurves_none"] = active_fcurves(None) == [] and active_fcurves(ob) == [] and key_fcurves(None) == {}
probe = bpy.data.objects.new("Probe", None)
probe.animation_data_create().action = bpy.data.actions.new("Unslotted")
out["active_fcurves_unslotted"] = active_fcurves(probe) == []
out["active_fcurves_read_only"] = (
    getattr(probe.animation_data, "action_slot", None) is None and len(getattr(probe.animation_data.action, "slots", ())) == 0
)
odd = 'Q"uo\\te\tx'  # a quote, a backslash and a tab: escaped in the path, all restored
out["key_name_of"] = [key_name_of(key_path(odd)) == odd, key_name_of(key_path("A")), key_name_of("eval_time")]

values, vertex0 = {}, {}
for f in spec["probe"]:
    scene.frame_set(f)
    values[str(f)] = {name: key.key_blocks[name].value for name in moves}
    ev = ob.evaluated_get(bpy.context.evaluated_depsgraph_get()).data
    co = np.empty(len(ev.vertices) * 3, dtype=np.float32)
    ev.vertices.foreach_get("co", co)
    vertex0[str(f)] = co[:3].tolist()
out["values"], out["vertex0"] = values, vertex0

# Sequencer: a new scene has no editor -> create=False gives None and no strips. (The factory
# scene has an empty one in 5.0.)
empty = bpy.data.scenes.new("No Sequencer")
out["strips_none"] = strips_of(empty, create=False) is None and all_strips(empty) == []
out["strips_before"] = [s.name for s in all_strips(scene)]
strips = strips_of(scene)
params = {p.identifier for p in strips.bl_rna.functions["new_effect"].parameters}
span = spec["strip"]
if "length" in params:  # 5.0: new_effect(name, type, channel, frame_start, length=...)
    color = strips.new_effect("W2S Color", "COLOR", 2, frame_start=span["start"], length=span["end"] - span["start"])
else:  # 4.2: new_effect(name, type, channel, frame_start, frame_end=...)
    color = strips.new_effect("W2S Color", "COLOR", 2, frame_start=span["start"], frame_end=span["end"])
out["new_effect_length_param"] = "length" in params
sound = None
if out["audaspace"]:  # the 4.2 wheel has no audio: new_sound is not tried there
    with wave.open(spec["wav"], "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(np.zeros(16000, np.int16).tobytes())
    sound = strips.new_sound("W2S Sound", spec["wav"], 3, 1)
out["sound_strip"] = None if sound is None else [sound.name, sound.type, sound.channel, sound.frame_final_start]
out["strips"] = sorted(
    [s.name, s.type, s.channel, s.frame_final_start, s.frame_final_end] for s in all_strips(scene) if s != sound
)
strips.remove(color)
out["strips_after_remove"] = sorted(s.name for s in all_strips(scene) if s != sound)
print("W2S-JSON " + json.dumps(out, sort_keys=True))
"""

# Differ by design between the versions; everything else must be identical.
VERSION_FIELDS = ("version", "audaspace", "new_effect_length_param", "sound_strip")


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wav2sem"


_FAILED: list[str] = []  # why the 4.2 venv could not be built: tried once per session


def _unavailable(reason: str):
    _FAILED.append(reason)
    if os.environ.get("WAV2SEM_REQUIRE_SHARED") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def _bpy_version(python: Path) -> str | None:
    """bpy's version in that interpreter, or None when it does not import."""
    if not python.exists():
        return None
    proc = subprocess.run(
        [str(python), "-c", "import bpy; print(bpy.app.version_string)"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 and proc.stdout.strip() else None


def _python311() -> str | None:
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    return shutil.which("python3.11")


def ensure_bpy42_venv() -> Path:
    """Python of the cached bpy 4.2 venv, built on first use (locked, atomically renamed)."""
    if _FAILED:
        _unavailable(_FAILED[0])
    root = cache_root()
    venv = root / "bpy42-venv"
    python = venv / "bin" / "python"
    if (_bpy_version(python) or "").startswith("4.2"):
        return python
    base = _python311()
    if base is None:
        _unavailable("the bpy 4.2 wheel needs Python 3.11, and no python3.11 was found")
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "bpy42-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be building it: wait, then re-check
        if (_bpy_version(python) or "").startswith("4.2"):
            return python
        tmp = root / f"bpy42-venv.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            subprocess.run([base, "-m", "venv", str(tmp)], check=True, capture_output=True, timeout=300)
            pip = subprocess.run(
                [str(tmp / "bin" / "python"), "-m", "pip", "install", "--no-input", BPY42],
                capture_output=True,
                text=True,
                timeout=1800,
            )
            if pip.returncode != 0:
                tail = (pip.stdout + pip.stderr).strip().splitlines()[-3:]
                _unavailable(f"could not install {BPY42} (no network?): {' | '.join(tail)}")
            if not (_bpy_version(tmp / "bin" / "python") or "").startswith("4.2"):
                _unavailable(f"{BPY42} installed but 'import bpy' fails in {tmp}")
            shutil.rmtree(venv, ignore_errors=True)  # a broken earlier one
            os.rename(tmp, venv)  # the venv only ever appears complete
        except subprocess.SubprocessError as e:
            _unavailable(f"could not build the bpy 4.2 venv: {e}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return python


def run_script(python: str | Path, tmp: Path) -> dict:
    spec = {
        "frames": FRAMES,
        "values": VALUES,
        "probe": PROBE_FRAMES,
        "strip": STRIP,
        "wav": str(tmp / "silence.wav"),
    }
    script = tmp / "compat_probe.py"
    script.write_text(SCRIPT)
    proc = subprocess.run(
        [str(python), str(script), str(REPO), json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("W2S-JSON ")]
    assert proc.returncode == 0 and lines, f"{python} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1][len("W2S-JSON ") :])


def expected_value(name: str, frame: float) -> float:
    """Linear interpolation of the keyframes, held constant outside them."""
    return float(np.interp(frame, FRAMES, VALUES[name]))


def check(out: dict) -> None:
    assert out["registered"]
    assert (
        out["none_without_animation_data"]
        and out["none_without_action"]
        and out["object_still_without_action"]
    )
    assert out["methods"] == {"new": True, "find": True, "remove": True}
    assert out["action"] == "W2S Test Shape Keys"
    paths = sorted(f'key_blocks["{n}"].value' for n in VALUES)
    assert out["fcurves"] == paths and out["action_fcurves"] == paths and out["find"]
    assert out["key_fcurves"] == {n: f'key_blocks["{n}"].value' for n in VALUES}
    assert out["key_fcurves_muted_b"] == ["A"] and out["active_fcurves"] == paths
    assert out["active_fcurves_none"] and out["active_fcurves_unslotted"] and out["active_fcurves_read_only"]
    assert out["key_name_of"] == [True, "A", None]
    for name in VALUES:  # the first A curve was replaced, not added to
        assert out["keyframes"][f'key_blocks["{name}"].value'] == [
            [f, v, "LINEAR"] for f, v in zip(FRAMES, VALUES[name], strict=True)
        ]
    for f in PROBE_FRAMES:
        a, b = expected_value("A", f), expected_value("B", f)
        got = out["values"][str(f)]
        assert got["A"] == pytest.approx(a, abs=1e-6) and got["B"] == pytest.approx(b, abs=1e-6), f
        np.testing.assert_allclose(out["vertex0"][str(f)], [0.0, 0.5 * b, a], atol=1e-6, err_msg=f"frame {f}")
    assert out["strips_none"] and out["strips_before"] == []
    assert out["strips"] == [["W2S Color", "COLOR", 2, STRIP["start"], STRIP["end"]]]
    assert out["strips_after_remove"] == []
    if out["audaspace"]:
        assert out["sound_strip"] == ["W2S Sound", "SOUND", 3, 1]


@pytest.fixture(scope="module")
def current(tmp_path_factory) -> dict:
    if importlib.util.find_spec("bpy") is None:
        pytest.skip("this Python has no bpy module (the 5.0 wheel needs Python 3.11)")
    return run_script(sys.executable, tmp_path_factory.mktemp("bpy_current"))


@pytest.fixture(scope="module")
def lts(tmp_path_factory) -> dict:
    return run_script(ensure_bpy42_venv(), tmp_path_factory.mktemp("bpy42"))


def test_current_bpy(current):
    assert current["version"].startswith("5.")
    check(current)


def test_bpy_42_lts(lts):
    assert lts["version"].startswith("4.2.")
    assert not lts["audaspace"] and lts["sound_strip"] is None  # the 4.2 wheel has no audio
    check(lts)


def test_same_results_on_both_versions(current, lts):
    a, b = ({k: v for k, v in r.items() if k not in VERSION_FIELDS} for r in (current, lts))
    assert a == b
