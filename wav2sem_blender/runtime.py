"""Session state: the add-on's preferences (or defaults when run as a plain package) and the
one warm server client shared by every run in this Blender session."""

from __future__ import annotations

import atexit
import os
import sys
import tempfile
from pathlib import Path

import bpy

from .client import ROOT, Client

# The enabled module: the extension package when installed, this package when imported directly.
ADDON_ID = __package__.rpartition(".")[0] or __package__

_client: Client | None = None


def preferences():
    addon = bpy.context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None else None


def private_env_dir() -> Path:
    """Where Set Up creates the server's own Python environment."""
    prefs = preferences()
    if prefs is not None and prefs.cache_dir:
        return Path(bpy.path.abspath(prefs.cache_dir)) / "server-env"
    try:
        return Path(bpy.utils.extension_path_user(ADDON_ID, path="server-env", create=False))
    except ValueError:  # not installed as an extension (tests, scripts)
        return Path(tempfile.gettempdir()) / "wav2sem-server-env"


def env_python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def server_python() -> str:
    """The interpreter that runs the server, first found of: ``WAV2SEM_SERVER_PYTHON`` (batch
    scripts' ``--server-python``), the preference, the private environment Set Up made, this
    Python (right for the ``bpy`` module in a venv with torch; Blender's own Python has no
    torch, and the server then says so and points to Set Up)."""
    if os.environ.get("WAV2SEM_SERVER_PYTHON"):
        return os.environ["WAV2SEM_SERVER_PYTHON"]
    prefs = preferences()
    if prefs is not None and prefs.python:
        return bpy.path.abspath(prefs.python)
    env = env_python(private_env_dir())
    if env.is_file():
        return str(env)
    return sys.executable


def device() -> str:
    prefs = preferences()
    return prefs.device.lower() if prefs is not None else "auto"


def cache_dir() -> Path:
    prefs = preferences()
    if prefs is not None and prefs.cache_dir:
        path = Path(bpy.path.abspath(prefs.cache_dir))
    else:
        try:
            path = Path(bpy.utils.extension_path_user(ADDON_ID, path="cache", create=True))
        except ValueError:
            path = Path(tempfile.gettempdir()) / "wav2sem-cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_bundle() -> str:
    """The embedded default bundle shipped with the add-on (when present)."""
    return str(ROOT / "server" / "default_bundle")  # = server.models.bundle.DEFAULT_BUNDLE (no torch here)


def client() -> Client:
    global _client
    python = server_python()
    if _client is None or _client.python != python:
        if _client is not None:
            _client.close()
        _client = Client(python)
    return _client


def shutdown() -> None:
    global _client
    if _client is not None:
        _client.close()
        _client = None


atexit.register(shutdown)
