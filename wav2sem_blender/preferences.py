"""Add-on preferences: the server's interpreter (with Check and Set Up), device, cache folder."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import bpy
from bpy.props import EnumProperty, FloatProperty, StringProperty

from . import runtime
from .client import ROOT, server_env

CHECK_CODE = (
    "import torch, transformers, soundfile, soxr, safetensors; "
    "print(torch.__version__, transformers.__version__, 'cuda' if torch.cuda.is_available() else 'cpu')"
)


def check_interpreter(python: str, timeout: float = 120.0) -> tuple[bool, str]:
    """(ok, one plain sentence) about whether ``python`` can run the server."""
    if not python or not Path(python).is_file():
        return False, f"'{python}' is not a Python interpreter. Press Set Up, or pick one that has torch."
    try:
        proc = subprocess.run([python, "-c", CHECK_CODE], capture_output=True, text=True, timeout=timeout,
                              env=server_env(), cwd=str(ROOT))
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"'{python}' could not be run ({type(exc).__name__}). Press Set Up, or pick another."
    if proc.returncode:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        missing = next((ln.split("No module named", 1)[1].strip(" '\"") for ln in lines if "No module named" in ln), None)
        if missing:
            return False, f"This Python lacks the package '{missing}'. Press Set Up to make a private environment."
        return False, f"This Python cannot run the server: {lines[-1] if lines else 'no output'}"
    torch_v, tf_v, device = proc.stdout.split()
    return True, f"Ready: torch {torch_v}, transformers {tf_v}, device {device}."


class WAV2SEM_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = runtime.ADDON_ID

    python: StringProperty(
        name="Server Python",
        description="Interpreter with torch and transformers that runs the inference server "
        "(empty: the private environment made by Set Up)",
        subtype="FILE_PATH",
    )
    device: EnumProperty(
        name="Device",
        items=[("AUTO", "Auto", "GPU when there is one"), ("CPU", "CPU", ""), ("CUDA", "CUDA GPU", "")],
        default="AUTO",
    )
    cache_dir: StringProperty(
        name="Cache Folder", description="Results, point caches of unsaved files, the private environment",
        subtype="DIR_PATH",
    )
    check_message: StringProperty()
    setup_progress: FloatProperty(subtype="PERCENTAGE", min=0, max=100)
    setup_message: StringProperty()

    def draw(self, context):
        layout = self.layout
        col = layout.column()
        row = col.row(align=True)
        row.prop(self, "python")
        row.operator("wav2sem.check_python", text="Check")
        if self.check_message:
            col.label(text=self.check_message)
        row = col.row()
        row.operator("wav2sem.setup_server", icon="IMPORT")
        if 0 < self.setup_progress < 100:
            row.progress(factor=self.setup_progress / 100, text=self.setup_message)
        elif self.setup_message:
            col.label(text=self.setup_message)
        col.label(text="Terminal alternative: python server/setup_env.py --target <folder>")
        col.prop(self, "device")
        col.prop(self, "cache_dir")


class WAV2SEM_OT_check_python(bpy.types.Operator):
    """Check that the server's Python has torch, transformers and the audio libraries"""

    bl_idname = "wav2sem.check_python"
    bl_label = "Check Server Python"

    def execute(self, context):
        ok, message = check_interpreter(runtime.server_python())
        prefs = runtime.preferences()
        if prefs is not None:
            prefs.check_message = message
        self.report({"INFO"} if ok else {"ERROR"}, message)
        return {"FINISHED"} if ok else {"CANCELLED"}


class WAV2SEM_OT_setup_server(bpy.types.Operator):
    """Create a private Python environment for the server and install its packages (downloads ~1-3 GB)"""

    bl_idname = "wav2sem.setup_server"
    bl_label = "Set Up Server"

    _proc = None
    _timer = None
    _lines: list[str]

    def execute(self, context):
        if not getattr(bpy.app, "online_access", True):
            self.report({"ERROR"}, "Online access is off in Blender, and Set Up must download packages. "
                        "Allow it in Preferences > System > Network, or run server/setup_env.py in a terminal.")
            return {"CANCELLED"}
        target = runtime.private_env_dir()
        cmd = [sys.executable, *bpy.app.python_args, str(ROOT / "server" / "setup_env.py"), "--target", str(target)]
        self._lines = []
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._drain, daemon=True).start()
        if bpy.app.background:
            self._proc.wait()
            return self._done(context)
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.5, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _drain(self) -> None:
        for line in self._proc.stdout:
            self._lines.append(line.rstrip())

    def modal(self, context, event):
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        prefs = runtime.preferences()
        last = next((ln for ln in reversed(self._lines) if ln.startswith("PROGRESS ")), None)
        if prefs is not None and last:
            _, fraction, message = last.split(" ", 2)
            prefs.setup_progress, prefs.setup_message = 100 * float(fraction), message
        if self._proc.poll() is None:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        return self._done(context)

    def _done(self, context):
        prefs = runtime.preferences()
        python = next((ln[7:] for ln in self._lines if ln.startswith("PYTHON ")), None)
        if self._proc.returncode or python is None:
            error = next((ln for ln in reversed(self._lines) if ln.startswith("error:")), "Set Up failed.")
            if prefs is not None:
                prefs.setup_progress, prefs.setup_message = 0, error
            self.report({"ERROR"}, error)
            return {"CANCELLED"}
        if prefs is not None:
            prefs.python = python
            prefs.setup_progress, prefs.setup_message = 100, f"Installed: {python}"
        self.report({"INFO"}, f"The server environment is ready: {python}")
        return {"FINISHED"}


classes = (WAV2SEM_AP_preferences, WAV2SEM_OT_check_python, WAV2SEM_OT_setup_server)

register, unregister = bpy.utils.register_classes_factory(classes)
