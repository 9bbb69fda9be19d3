"""eSpeak NG through its C library (``libespeak-ng.so.1``, ctypes) with phoneme events, made deterministic.

The library keeps state between utterances in C statics (pitch-flutter index, wave phase, gain
control, the echo buffer, clause bookkeeping), so the same request gives slightly different
samples and timings depending on what was spoken before. To make every clip depend only on its own
request, synthesis runs in a small helper process that initialises the library once and never speaks
itself: for each request it forks, the child speaks from that pristine state and sends the result back.

Stdlib only, so the helper process starts quickly.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import functools
import os
import pickle
import struct
import subprocess
import sys
import threading
from pathlib import Path

AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_PHONEME_EVENTS = 0x0001
EVENT_LIST_TERMINATED = 0
EVENT_PHONEME = 7
CHARS_UTF8 = 1
POS_CHARACTER = 1
PARAM_RATE, PARAM_PITCH = 1, 3
DEFAULT_RATE = 175  # words per minute
DEFAULT_PITCH = 50  # 0..100

Events = list[tuple[int, str]]  # (start in ms, phoneme mnemonic)


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


def _library_name() -> str:
    return ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"


@functools.cache
def library_available() -> bool:
    """Whether libespeak-ng can be loaded (nothing is initialised here)."""
    try:
        ctypes.CDLL(_library_name())
    except OSError:
        return False
    return True


class _Library:
    """The initialised library in this process: only ever used by the helper's forked children."""

    def __init__(self) -> None:
        lib = ctypes.CDLL(_library_name())
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        self.lib = lib
        self.sample_rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, None, INITIALIZE_PHONEME_EVENTS)
        if self.sample_rate <= 0:
            raise RuntimeError("espeak_Initialize failed")
        self._chunks: list[bytes] = []
        self._events: Events = []
        self._callback = _SynthCallback(self._collect)  # keep a reference: ctypes does not
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, n, events) -> int:
        if wav and n > 0:
            self._chunks.append(ctypes.string_at(wav, n * 2))
        i = 0
        while events[i].type != EVENT_LIST_TERMINATED:
            e = events[i]
            if e.type == EVENT_PHONEME:
                name = bytes(e.id.string).split(b"\0", 1)[0].decode("ascii", "replace")
                self._events.append((e.audio_position, name))
            i += 1
        return 0

    def set_voice(self, voice: str) -> None:
        rc = self.lib.espeak_SetVoiceByName(voice.encode())
        if rc != 0:  # on failure espeak silently keeps the previous voice: refuse instead
            raise ValueError(f"espeak voice {voice!r} not found (SetVoiceByName returned {rc})")

    def synth(self, text: str, voice: str, rate: int, pitch: int) -> tuple[bytes, int, Events]:
        self.set_voice(voice)
        self.lib.espeak_SetParameter(PARAM_RATE, int(rate), 0)
        self.lib.espeak_SetParameter(PARAM_PITCH, int(pitch), 0)
        self._chunks, self._events = [], []
        data = text.encode("utf-8") + b"\0"
        rc = self.lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
        if rc != 0:
            raise RuntimeError(f"espeak_Synth returned {rc}")
        self.lib.espeak_Synchronize()
        return b"".join(self._chunks), self.sample_rate, list(self._events)


# ----------------------------------------------------------------------------- helper process

_HEADER = struct.Struct("<I")


def _read_exact(stream, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def _read_message(stream) -> bytes | None:
    head = _read_exact(stream, _HEADER.size)
    if head is None:
        return None
    return _read_exact(stream, _HEADER.unpack(head)[0])


def _write_message(stream, payload: bytes) -> None:
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


def _answer(library: _Library, request: tuple) -> bytes:
    kind, args = request
    try:
        if kind == "synth":
            return pickle.dumps(("ok", library.synth(*args)))
        if kind == "voice":
            library.set_voice(*args)
            return pickle.dumps(("ok", True))
        raise ValueError(f"unknown request {kind!r}")
    except ValueError as exc:
        return pickle.dumps(("value_error", str(exc)))
    except Exception as exc:  # reported to the caller, which raises it
        return pickle.dumps(("error", f"{type(exc).__name__}: {exc}"))


def serve(stdin=None, stdout=None) -> None:
    """The helper's loop: initialise once, then fork a child per request so each starts from that state."""
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout.buffer
    try:
        library = _Library()
    except (OSError, RuntimeError) as exc:
        _write_message(stdout, pickle.dumps(("error", f"{type(exc).__name__}: {exc}")))
        return
    _write_message(stdout, pickle.dumps(("ready", library.sample_rate)))
    while True:
        raw = _read_message(stdin)
        if raw is None:
            return
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: speak from the pristine state, send the answer, leave without cleanup
            os.close(read_fd)
            try:
                payload = _answer(library, pickle.loads(raw))
                view = memoryview(payload)
                while view:
                    view = view[os.write(write_fd, view) :]
            finally:
                os._exit(0)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as pipe:
            payload = pipe.read()
        os.waitpid(pid, 0)
        if not payload:
            payload = pickle.dumps(("error", "the espeak child process crashed"))
        _write_message(stdout, payload)


class _Helper:
    """Client side: one helper process per Python process, started on first use."""

    def __init__(self) -> None:
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "training.data.espeak"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=root,
        )
        self.lock = threading.Lock()
        self.pid = os.getpid()  # a forked copy of this process must not share the helper's pipes
        status, value = self._receive()
        if status != "ready":
            self.close()
            raise RuntimeError(f"the espeak helper did not start: {value}")
        self.sample_rate = int(value)

    def _receive(self) -> tuple:
        raw = _read_message(self.proc.stdout)
        if raw is None:
            raise RuntimeError("the espeak helper process exited")
        return pickle.loads(raw)

    def request(self, kind: str, *args):
        with self.lock:
            _write_message(self.proc.stdin, pickle.dumps((kind, args)))
            status, value = self._receive()
        if status == "ok":
            return value
        if status == "value_error":
            raise ValueError(value)
        raise RuntimeError(value)

    def close(self) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


_helper_lock = threading.Lock()
_helper: _Helper | None = None


def _get_helper() -> _Helper:
    global _helper
    with _helper_lock:
        if _helper is None or _helper.pid != os.getpid() or _helper.proc.poll() is not None:
            _helper = _Helper()
            atexit.register(_helper.close)
        return _helper


def synth(text: str, voice: str, rate: int = DEFAULT_RATE, pitch: int = DEFAULT_PITCH) -> tuple[bytes, int, Events]:
    """(int16 little-endian samples, sample rate, phoneme events) for one utterance, deterministic."""
    return _get_helper().request("synth", text, voice, int(rate), int(pitch))


@functools.cache
def voice_exists(voice: str) -> bool:
    """Whether ``espeak_SetVoiceByName`` accepts this name (e.g. ``en-us+f3``; ``en-gb+f3`` is refused)."""
    if not library_available():
        return False
    try:
        return bool(_get_helper().request("voice", voice))
    except ValueError:
        return False


if __name__ == "__main__":
    serve()
