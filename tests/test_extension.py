"""The extension zip builds with Blender's builder, installs through Blender's own extension
machinery into a throw-away user folder, enables, and runs headless from there."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

from tests.bundles import make_tiny_bundle, speech_like

REPO = Path(__file__).resolve().parents[1]


def test_zip_builds_installs_enables_and_runs(tmp_path):
    build = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_extension.py"), "--output-dir", str(tmp_path / "dist")],
        capture_output=True, text=True, cwd=REPO,
    )
    assert build.returncode == 0, build.stderr
    archive = Path(build.stdout.strip().splitlines()[-1])
    names = zipfile.ZipFile(archive).namelist()
    assert {"blender_manifest.toml", "__init__.py", "wav2sem_blender/operators.py", "server/service.py",
            "wav2sem_contract/protocol.py", "wheels/wav2sem_contract-0.1.0-py3-none-any.whl"} <= set(names)
    assert not any(n.startswith(("tests/", ".venv/", ".git")) for n in names)
    # corpus synthesis, training and evaluation are source-checkout tools, never shipped
    assert not any(n.startswith(("training/", "server/data/", "server/train/", "server/eval/")) for n in names)

    bundle = make_tiny_bundle(tmp_path / "bundle")
    audio = speech_like(tmp_path / "a.wav", 1.5)
    script = textwrap.dedent(
        f"""
        import json, sys
        import bpy  # BLENDER_USER_RESOURCES is set: the user's real config is never touched
        import addon_utils
        result = bpy.ops.extensions.package_install_files(
            filepath={str(archive)!r}, repo="user_default", enable_on_install=True)
        name = "bl_ext.user_default.wav2sem"
        enabled = name in {{m.__name__ for m in addon_utils.modules()}} and addon_utils.check(name)[1]
        prefs = bpy.context.preferences.addons[name].preferences
        me = bpy.data.meshes.new("Head")
        me.from_pydata([(i * 1e-3, 0, 0) for i in range(5023)], [], [])
        ob = bpy.data.objects.new("Head", me)
        bpy.context.scene.collection.objects.link(ob)
        bpy.context.scene.render.fps = 30
        run = bpy.ops.wav2sem.generate(audio={str(audio)!r}, object="Head", bundle={str(bundle)!r})
        keys = [kb.name for kb in me.shape_keys.key_blocks]
        module = sys.modules[name + ".wav2sem_blender.client"]
        import glob
        installed = glob.glob({str(tmp_path / "user")!r} + "/**/site-packages/wav2sem_contract/request.py",
                              recursive=True, include_hidden=True)
        print(json.dumps({{"install": sorted(result), "enabled": bool(enabled), "run": sorted(run),
                          "prefs": type(prefs).__name__, "keys": len(keys), "client": module.__file__,
                          "contract": installed}}))
        bpy.ops.preferences.addon_disable(module=name)
        """
    )
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user"), WAV2SEM_SERVER_PYTHON=sys.executable)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["install"] == ["FINISHED"] and report["enabled"] and report["run"] == ["FINISHED"]
    assert report["prefs"] == "WAV2SEM_AP_preferences" and report["keys"] == 2 + 16
    # the add-on ran from the installed copy, not from this checkout
    assert str(tmp_path / "user") in report["client"]
    # Blender installed the shared contract package from the wheel the manifest lists
    assert len(report["contract"]) == 1, report["contract"]

    # the old training command names, run in the installed copy, say where the tools are in one line.
    # The site-packages stay on the path but their .pth files are not run (-S), so an editable install
    # of this checkout cannot supply training/.
    installed = Path(report["client"]).parents[1]
    run_server = (f"import runpy, sys; sys.path += {site.getsitepackages()!r}; sys.argv[0] = 'server'; "
                  "runpy.run_module('server', run_name='__main__', alter_sys=True)")
    proc = subprocess.run([sys.executable, "-S", "-c", run_server, "make-corpus", "--out", str(tmp_path / "corpus")],
                          cwd=installed, capture_output=True, text=True, timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("error: ") and "python -m training make-corpus" in lines[0]
    assert "not part of the add-on" in lines[0] and not (tmp_path / "corpus").exists()
