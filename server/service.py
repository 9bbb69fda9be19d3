"""``python -m server serve``: the long-lived inference process behind the Blender add-on.

Reads requests from stdin and writes replies to stdout (``protocol`` framing); listens on
no network port. A reader thread takes messages off stdin so that ``cancel`` reaches a
running request; requests run one at a time on the main thread, and loaded bundles stay
warm between requests. While a request runs, a heartbeat progress message goes out every
few seconds, so the client can tell a long encode from a hung process. End of stdin (the
parent went away) or ``shutdown`` ends the process within ``EXIT_GRACE`` seconds, even while
a request is deep inside the audio encoder. A message that is not a well-formed request gets
an error reply and the reader goes on; nothing a client sends can stop it reading.
"""

from __future__ import annotations

import os
import queue
import sys
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

from wav2sem_contract import protocol
from wav2sem_contract.errors import Cancelled, Wav2SemError
from wav2sem_contract.request import InferRequest

from . import __version__

HEARTBEAT_SECONDS = 2.0
WARM_MODELS = 2
EXIT_GRACE = 1.5  # after shutdown / end of stdin: let a cancelled request unwind, then exit regardless


class Outbox:
    """Thread-safe message writer on the protocol stream."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        with self.lock:
            try:
                protocol.write_message(self.stream, message)
            except (BrokenPipeError, ValueError):
                pass  # the client is gone; the reader sees EOF and we exit


class Job:
    def __init__(self, message: dict[str, Any]) -> None:
        self.message = message
        self.id = message.get("id")
        self.cancelled = threading.Event()


class Server:
    def __init__(self, outbox: Outbox, max_message: int) -> None:
        self.outbox = outbox
        self.max_message = max_message
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.pending: dict[Any, Job] = {}
        self.current: Job | None = None
        self.lock = threading.Lock()
        self.models: OrderedDict[tuple, Any] = OrderedDict()
        self.metas: dict[Path, tuple[tuple[int, int, int], dict]] = {}  # folder -> (bundle.json stamp, meta)
        self.finished = threading.Event()

    # -- reader thread ----------------------------------------------------------------------
    def read_loop(self, stream) -> None:
        try:
            while True:
                try:
                    message = protocol.read_message(stream, self.max_message)
                except protocol.ProtocolError as exc:
                    self._ignored(exc.code, exc.message)
                    continue
                except (OSError, ValueError):
                    message = None
                if message is None or message["type"] == "shutdown":
                    return
                try:
                    self.accept(message)
                except Exception as exc:  # a bug in handling one message must not stop the reader
                    self._ignored("internal", f"The message could not be handled ({type(exc).__name__}: {exc}).")
        finally:
            self._stop()

    def _ignored(self, code: str, message: str) -> None:
        print(f"ignored a message: {message}", file=sys.stderr, flush=True)
        self.outbox.send({"type": "error", "code": code, "message": message,
                          "hint": "The message was ignored; the server is still running."})

    def accept(self, message: dict[str, Any]) -> None:
        if message["type"] == "cancel":
            self._cancel(message.get("id"))
            return
        job = Job(message)
        with self.lock:
            self.pending[job.id] = job
        self.jobs.put(job)

    def _stop(self) -> None:
        """Cancel everything and make sure the process ends within ``EXIT_GRACE`` seconds."""
        self._cancel_all()
        self.jobs.put(None)
        threading.Thread(target=self._exit_after_grace, daemon=True).start()

    def _exit_after_grace(self) -> None:
        if self.finished.wait(EXIT_GRACE):
            return
        # The main thread is inside one long tensor operation that cannot be interrupted, or
        # blocked writing to a client that stopped reading (a full pipe, the outbox lock held).
        # Say goodbye only if that takes no time: the farewell must not keep the process alive.
        farewell = threading.Thread(target=self._farewell, daemon=True)
        farewell.start()
        farewell.join(0.2)
        os._exit(0)

    def _farewell(self) -> None:
        self.outbox.send({"type": "bye"})
        sys.stderr.flush()

    def _cancel(self, job_id: Any) -> None:
        with self.lock:
            job = self.pending.get(job_id)
        if job is not None:
            job.cancelled.set()

    def _cancel_all(self) -> None:
        with self.lock:
            for job in self.pending.values():
                job.cancelled.set()

    # -- main thread ------------------------------------------------------------------------
    def run(self, idle_timeout: float = 0.0) -> None:
        while True:
            try:
                job = self.jobs.get(timeout=idle_timeout or None)
            except queue.Empty:
                return
            if job is None:
                return
            try:
                self.handle(job)
            finally:
                with self.lock:
                    self.pending.pop(job.id, None)

    def handle(self, job: Job) -> None:
        kind, job_id = job.message["type"], job.id
        if job.cancelled.is_set():
            self.outbox.send({"type": "cancelled", "id": job_id})
            return
        try:
            if kind == "ping":
                self.outbox.send({"type": "pong", "id": job_id})
            elif kind == "info":
                self.outbox.send({"type": "info", "id": job_id, **self.info(job.message)})
            elif kind == "infer":
                self.outbox.send({"type": "result", "id": job_id, **self.infer(job)})
            else:
                raise Wav2SemError("bad_request", f"Unknown request type '{kind}'.", "Update the add-on.")
        except Cancelled:
            self.outbox.send({"type": "cancelled", "id": job_id})
        except Wav2SemError as exc:
            self.outbox.send({"type": "error", "id": job_id, **exc.to_dict()})
        except MemoryError:
            self.outbox.send(
                {"type": "error", "id": job_id, "code": "out_of_memory",
                 "message": "The server ran out of memory on this request.",
                 "hint": "Use a shorter audio file or a machine with more memory."}
            )
        except Exception as exc:  # a bug: report it and keep serving
            self.outbox.send(
                {"type": "error", "id": job_id, "code": "internal",
                 "message": f"The server failed unexpectedly ({type(exc).__name__}: {exc}).",
                 "hint": "Try again; if it repeats, report it with the server log."}
            )

    def meta(self, bundle: str) -> tuple[Path, tuple[int, int, int], dict]:
        """The bundle folder (empty: the embedded default), its bundle.json's stamp and contents.

        Read and checked once per version of the file: ``convert --force`` replaces the folder,
        which gives bundle.json a new inode, so a rebuilt bundle is read (and loaded) again.
        """
        from .models.bundle import default_bundle, read_meta

        folder = Path(bundle or default_bundle()).resolve()
        try:
            st = (folder / "bundle.json").stat()
        except OSError:
            self.metas.pop(folder, None)
            read_meta(folder)  # says in one sentence what is wrong with the folder
            raise
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self.metas.get(folder)
        if cached is None or cached[0] != stamp:
            cached = (stamp, read_meta(folder))
            self.metas[folder] = cached
        return folder, stamp, cached[1]

    def bundle(self, bundle: str, device_name: str, semantic: bool = True, precision: str = "exact"):
        """The loaded bundle, kept warm (the ``WARM_MODELS`` most recently used); empty: the embedded default."""
        from .models.bundle import load_bundle, variant_for
        from .pipeline import resolve_device

        folder, stamp, meta = self.meta(bundle)
        device = resolve_device(device_name)
        variant = variant_for(meta, semantic)
        key = (folder, stamp, str(device), variant, precision)
        if key in self.models:
            self.models.move_to_end(key)
            return self.models[key]
        for old in [k for k in self.models if k[0] == folder and k[1] != stamp]:
            del self.models[old]  # an earlier build of this folder: never served again
        model = load_bundle(folder, device, variant, precision)
        self.models[key] = model
        while len(self.models) > WARM_MODELS:
            self.models.popitem(last=False)
        return model

    def info(self, message: dict[str, Any]) -> dict[str, Any]:
        folder, _, meta = self.meta(_text(message, "bundle"))
        host = meta["host"]
        return {
            "bundle": str(folder),
            "arch": meta["arch"],
            "result": meta.get("result", "offsets"),
            "controls": host.get("control_names", []),
            "vertices": host["n_vertices"],
            "fps": host["fps"],
            "subjects": host["subjects"],
            "semantic": meta.get("semantic") is not None,
            "provenance": meta.get("provenance", {}),
        }

    def infer(self, job: Job) -> dict[str, Any]:
        from .pipeline import check_result_path, run

        request = InferRequest.from_message(job.message)
        out = request.out or os.path.join(tempfile.gettempdir(), f"wav2sem-{os.getpid()}-{uuid.uuid4().hex}.npz")
        check_result_path(out, request.audio)
        reporter = Reporter(self.outbox, job)
        with reporter:
            reporter("load", 0.0)
            loaded = self.bundle(request.bundle, request.device, request.semantic, request.precision)
            result = run(loaded, request, reporter)
            reporter("write", 0.0)
            result.save(out)
        return result.to_message()


class Reporter:
    """Progress callback for one job: throttled progress messages, heartbeats, cancellation."""

    def __init__(self, outbox: Outbox, job: Job) -> None:
        self.outbox, self.job = outbox, job
        self.stage, self.fraction = "audio", 0.0
        self.last_sent = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self) -> Reporter:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=1.0)

    def check(self) -> None:
        """Raise ``Cancelled`` once the job is cancelled (called between encoder layers too)."""
        if self.job.cancelled.is_set():
            raise Cancelled()

    def __call__(self, stage: str, fraction: float) -> None:
        self.check()
        now = time.monotonic()
        changed = stage != self.stage
        self.stage, self.fraction = stage, fraction
        if changed or now - self.last_sent >= 0.1 or fraction >= 1.0:
            self._send()

    def _send(self) -> None:
        self.last_sent = time.monotonic()
        self.outbox.send(
            {"type": "progress", "id": self.job.id, "stage": self.stage, "fraction": round(self.fraction, 4)}
        )

    def _beat(self) -> None:
        while not self.stop.wait(HEARTBEAT_SECONDS / 2):
            if time.monotonic() - self.last_sent >= HEARTBEAT_SECONDS:
                self._send()


def _text(message: dict[str, Any], field: str) -> str:
    value = message.get(field)
    if value is not None and not isinstance(value, str):
        raise Wav2SemError("bad_request", f"The request's '{field}' field must be text.", "Update the add-on.")
    return value or ""


def hello() -> dict[str, Any]:
    import platform

    import torch
    import transformers

    cuda = torch.cuda.is_available()
    return {
        "type": "hello",
        "protocol": protocol.PROTOCOL_VERSION,
        "server_version": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": cuda,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "pid": os.getpid(),
    }


def serve(max_message: int = protocol.MAX_MESSAGE, idle_timeout: float = 0.0) -> None:
    # The protocol owns the real stdout; anything else printed (library warnings, stray
    # prints) goes to stderr instead of corrupting the stream.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    outbox = Outbox(out)
    server = Server(outbox, max_message)
    outbox.send(hello())
    reader = threading.Thread(target=server.read_loop, args=(sys.stdin.buffer,), daemon=True)
    reader.start()
    server.run(idle_timeout)
    outbox.send({"type": "bye"})
    server.finished.set()  # only now: a bye stuck on a full pipe still leaves the watchdog to end the process
