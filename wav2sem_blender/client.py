"""Start, talk to, and restart the inference server (``python -m server serve``).

Stdlib only (Blender's Python). The server is a child process on pipes, never a network
port. Control messages are JSON lines (``server/protocol.py``); arrays come back in a file.
Every failure surfaces as a ``Wav2SemError`` with one plain sentence and a hint.
"""

from __future__ import annotations

import collections
import itertools
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wav2sem_contract import protocol
from wav2sem_contract.errors import Wav2SemError

ROOT = Path(__file__).resolve().parent.parent  # holds server/ in the repo and in the extension zip
STARTUP_TIMEOUT = 180.0  # importing torch from a cold disk can take a while
STALL_TIMEOUT = 60.0  # the server sends a heartbeat every 2 s while it works
# The server stops a cancelled request between encoder layers; one tensor operation on a long
# clip can still take many seconds, so past this the server is killed (restarted on next use).
CANCEL_GRACE = 1.5
_EOF = {"type": "_eof"}


def server_env() -> dict[str, str]:
    """A clean environment for the child: Blender's Python settings must not leak into it."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONSAFEPATH")}
    env["PYTHONUNBUFFERED"] = "1"
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONPATH"] = str(ROOT)
    return env


class Job:
    """One request in flight. ``poll()`` updates ``stage``/``fraction`` and returns True once finished."""

    def __init__(self, process: ServerProcess, job_id: str) -> None:
        self.process = process
        self.id = job_id
        self.stage, self.fraction = "queued", 0.0
        # every progress event since the last wait() callback: a poll may drain several at once,
        # and a caller should still see each stage the server went through
        self.events: collections.deque[tuple[str, float]] = collections.deque(maxlen=256)
        self.result: dict[str, Any] | None = None
        self.error: Wav2SemError | None = None
        self.cancelled = False
        self.cancel_sent: float | None = None
        self.last_event = time.monotonic()

    @property
    def done(self) -> bool:
        return self.result is not None or self.error is not None or self.cancelled

    def poll(self) -> bool:
        self.process.pump()
        if not self.done:
            self.process.check_health(self)
        return self.done

    def cancel(self) -> None:
        """Ask the server to stop this request; ``poll`` enforces it within ``CANCEL_GRACE`` s."""
        if not self.done and self.cancel_sent is None:
            self.cancel_sent = time.monotonic()
            self.process.send({"type": "cancel", "id": self.id})

    def wait(
        self,
        on_progress: Callable[[str, float], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        interval: float = 0.05,
    ) -> dict[str, Any]:
        """Block until finished; returns the result message or raises ``Wav2SemError``."""
        while not self.poll():
            if on_progress:
                while self.events:
                    on_progress(*self.events.popleft())
                on_progress(self.stage, self.fraction)
            if should_cancel and self.cancel_sent is None and should_cancel():
                self.cancel()
            time.sleep(interval)
        if on_progress:
            while self.events:
                on_progress(*self.events.popleft())
        if self.error:
            raise self.error
        if self.cancelled:
            raise Wav2SemError("cancelled", "Lip sync generation was cancelled.", "")
        return self.result


class ServerProcess:
    def __init__(
        self,
        python: str,
        *,
        startup_timeout: float = STARTUP_TIMEOUT,
        stall_timeout: float = STALL_TIMEOUT,
        extra_args: list[str] | None = None,
    ) -> None:
        self.python = python
        self.startup_timeout = startup_timeout
        self.stall_timeout = stall_timeout
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen | None = None
        self.inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self.jobs: dict[str, Job] = {}
        self.hello: dict[str, Any] = {}
        self.exited = False
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> dict[str, Any]:
        python = Path(self.python)
        if not self.python or not python.is_file() or not os.access(python, os.X_OK):
            raise Wav2SemError(
                "python_missing",
                f"The server's Python interpreter '{self.python}' does not exist or cannot be run.",
                "Set it in the add-on preferences, or press Set Up there to create one.",
            )
        kwargs: dict[str, Any] = {}
        if sys.platform == "win32":
            kwargs["creationflags"] = subprocess.CREATE_NO_WINDOW | subprocess.CREATE_NEW_PROCESS_GROUP
        else:
            kwargs["start_new_session"] = True  # so the whole tree can be killed
        self.proc = subprocess.Popen(
            [str(python), "-u", "-m", "server", "serve", *self.extra_args],
            cwd=str(ROOT),
            env=server_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            **kwargs,
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            try:
                message = self.inbox.get(timeout=0.1)
            except queue.Empty:
                continue
            if message.get("type") == "hello":
                self.hello = message
                if message.get("protocol") != protocol.PROTOCOL_VERSION:
                    self.kill()
                    raise Wav2SemError(
                        "server_version",
                        f"The server speaks protocol {message.get('protocol')}, the add-on {protocol.PROTOCOL_VERSION}.",
                        "Install the add-on and server from the same release.",
                    )
                return message
            if message is _EOF:
                self._wait_exit(2.0)
                raise self._startup_failure()
        self.kill()
        raise Wav2SemError(
            "server_timeout",
            f"The inference server did not start within {self.startup_timeout:.0f} s.",
            "Check the interpreter in the add-on preferences (Check button) and try again.",
        )

    def _startup_failure(self) -> Wav2SemError:
        tail = "\n".join(self.stderr_tail)
        if "No module named" in tail:
            missing = tail.rsplit("No module named", 1)[1].strip().split()[0].strip("'\"")
            return Wav2SemError(
                "server_missing_package",
                f"The server's Python lacks the package '{missing}'.",
                "Press Set Up in the add-on preferences (or run the set-up command in the README).",
            )
        last = next((line for line in reversed(self.stderr_tail) if line.strip()), "no output")
        return Wav2SemError(
            "server_crashed",
            f"The inference server failed to start (exit code {self.proc.returncode}): {last}",
            "Check the interpreter in the add-on preferences (Check button).",
        )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and not self.exited

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the server to exit; kill it if it does not."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.send({"type": "shutdown"})
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_pipes()

    def kill(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            if sys.platform == "win32":
                self.proc.kill()
            else:
                os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._wait_exit(5.0)
        self._close_pipes()

    def _wait_exit(self, timeout: float) -> None:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def _close_pipes(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                pipe.close()
            except OSError:
                pass

    # -- messages -----------------------------------------------------------------------------
    def _read_stdout(self) -> None:
        stream = self.proc.stdout
        while True:
            try:
                message = protocol.read_message(stream)
            except protocol.ProtocolError as exc:
                message = {"type": "error", "code": "protocol", "message": exc.message, "hint": ""}
            except (OSError, ValueError):
                message = None
            if message is None:
                self.inbox.put(_EOF)
                return
            self.inbox.put(message)

    def _read_stderr(self) -> None:
        # Always drain stderr: a full pipe would block the child and look like a hang.
        for raw in iter(self.proc.stderr.readline, b""):
            self.stderr_tail.append(raw.decode("utf-8", "replace").rstrip())

    def send(self, message: dict[str, Any]) -> None:
        try:
            with self._lock:
                self.proc.stdin.write(protocol.encode(message))
                self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError, AttributeError):
            self.exited = True

    def submit(self, message: dict[str, Any]) -> Job:
        job_id = f"r{next(self._ids)}"
        job = Job(self, job_id)
        self.jobs[job_id] = job
        self.send({**message, "id": job_id})
        return job

    def request(self, message: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """A short request (info, ping): wait for its reply."""
        job = self.submit(message)
        deadline = time.monotonic() + timeout
        while not job.poll():
            if time.monotonic() > deadline:
                raise Wav2SemError("server_timeout", "The inference server did not answer in time.", "Try again.")
            time.sleep(0.02)
        if job.error:
            raise job.error
        return job.result

    def pump(self) -> None:
        """Deliver every message that has arrived to its job."""
        while True:
            try:
                message = self.inbox.get_nowait()
            except queue.Empty:
                return
            if message is _EOF:
                self.exited = True
                continue
            job = self.jobs.get(message.get("id"))
            if job is None:
                continue
            job.last_event = time.monotonic()
            kind = message["type"]
            if kind == "progress":
                job.stage, job.fraction = message.get("stage", job.stage), float(message.get("fraction", 0.0))
                job.events.append((job.stage, job.fraction))
            elif kind == "error":
                job.error = Wav2SemError(message.get("code", "error"), message.get("message", ""), message.get("hint", ""))
            elif kind == "cancelled":
                job.cancelled = True
            else:  # result, info, pong
                job.result = message
            if job.done:
                self.jobs.pop(job.id, None)

    def check_health(self, job: Job) -> None:
        """Turn a dead or silent server into the job's error (and kill a silent one).

        A cancel the server has not acknowledged within ``CANCEL_GRACE`` kills it: the job
        ends as cancelled, and the next request starts a fresh server.
        """
        if job.cancel_sent is not None and time.monotonic() - job.cancel_sent > CANCEL_GRACE:
            self.kill()
            job.cancelled = True
            self.jobs.pop(job.id, None)
        elif self.exited or (self.proc is not None and self.proc.poll() is not None):
            self._wait_exit(1.0)
            code = self.proc.returncode if self.proc is not None else None
            how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited (code {code})"
            job.error = Wav2SemError(
                "server_crashed",
                f"The inference server stopped unexpectedly: it {how}.",
                "It will be restarted on the next request; if this repeats, try a shorter file or the CPU device.",
            )
            self.jobs.pop(job.id, None)
        elif time.monotonic() - job.last_event > self.stall_timeout:
            self.kill()
            job.error = Wav2SemError(
                "server_hung",
                f"The inference server stopped responding (nothing for {self.stall_timeout:.0f} s) and was stopped.",
                "Try again; it will be restarted.",
            )
            self.jobs.pop(job.id, None)


class Client:
    """A warm server process, restarted transparently when it has died."""

    def __init__(self, python: str, **kwargs: Any) -> None:
        self.python = python
        self.kwargs = kwargs
        self.process: ServerProcess | None = None

    def ensure(self) -> ServerProcess:
        if self.process is not None and self.process.python == self.python and self.process.alive:
            return self.process
        if self.process is not None:
            self.process.kill()
        self.process = ServerProcess(self.python, **self.kwargs)
        self.process.start()
        return self.process

    def submit(self, message: dict[str, Any]) -> Job:
        return self.ensure().submit(message)

    def info(self, bundle: str) -> dict[str, Any]:
        return self.ensure().request({"type": "info", "bundle": bundle})

    def close(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None
