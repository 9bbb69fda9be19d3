"""One Generate Lip Sync run, as a non-blocking state machine (no bpy here).

The modal operator calls ``step()`` from its timer, so Blender never waits on the server;
the blocking path (background mode, scripts) calls ``run_blocking()``, which loops the same
steps. States: start the server (in a thread: importing torch takes seconds) -> ask the
bundle for its topology -> check it against the mesh -> infer -> done.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wav2sem_contract.errors import Wav2SemError
from wav2sem_contract.request import InferRequest
from wav2sem_contract.result import InferResult

from .client import Client, Job


@dataclass
class Plan:
    """The request, decided and validated on the Blender side, and what the mesh must match."""

    request: InferRequest
    mesh_vertices: int | None = None  # None: the target is not checked against a vertex count


class Generation:
    def __init__(self, client: Client, plan: Plan) -> None:
        self.client = client
        self.plan = plan
        self.state = "starting"
        self.stage, self.fraction = "starting server", 0.0
        self.info: dict[str, Any] | None = None
        self.result: dict[str, Any] | None = None
        self.error: Wav2SemError | None = None
        self.job: Job | None = None
        self.cancel_requested = False
        self.started = time.monotonic()
        self._start_error: BaseException | None = None
        self._thread = threading.Thread(target=self._start, daemon=True)
        self._thread.start()

    def _start(self) -> None:
        try:
            self.client.ensure()
        except BaseException as exc:  # delivered to the main thread by step()
            self._start_error = exc

    @property
    def finished(self) -> bool:
        return self.state in ("done", "error", "cancelled")

    def cancel(self) -> None:
        self.cancel_requested = True
        if self.job is not None:
            self.job.cancel()

    def step(self) -> bool:
        """Advance without blocking; True once finished (see ``state``)."""
        try:
            self._step()
        except Wav2SemError as exc:
            self.error, self.state = exc, "error"
        return self.finished

    def _step(self) -> None:
        if self.state == "starting":
            if self._thread.is_alive():
                return
            if self._start_error is not None:
                raise _as_user_error(self._start_error)
            if self.cancel_requested:
                self.state = "cancelled"
                return
            self.job = self.client.submit({"type": "info", "bundle": self.plan.request.bundle})
            self.state, self.stage = "info", "reading model"
        if self.state == "info":
            if not self.job.poll():
                return
            if self.job.error:
                raise self.job.error
            self.info = self.job.result
            self._check_topology()
            if self.cancel_requested:
                self.state = "cancelled"
                return
            self.job = self.client.submit(self.plan.request.to_message())
            self.state = "infer"
        if self.state == "infer":
            finished = self.job.poll()
            self.stage, self.fraction = self.job.stage, self.job.fraction
            if not finished:
                return
            if self.job.error:
                raise self.job.error
            if self.job.cancelled:
                self.state = "cancelled"
                return
            self.result = self.job.result
            self.state = "done"

    def _check_topology(self) -> None:
        expected = self.info.get("vertices") if self.info.get("result", "offsets") == "offsets" else None
        found = self.plan.mesh_vertices
        if expected and found is not None and expected != found:
            raise Wav2SemError(
                "wrong_topology",
                f"The mesh has {found} vertices but the model '{Path(self.plan.request.bundle).name}' animates "
                f"{expected}-vertex heads ({'FLAME/VOCA topology' if expected == 5023 else 'its training topology'}).",
                "Use a mesh with that topology, or transfer the motion with the Retarget tools.",
            )

    def run_blocking(
        self, on_progress: Callable[[str, float], None] | None = None, interval: float = 0.05
    ) -> dict[str, Any]:
        while not self.step():
            if on_progress:
                on_progress(self.stage, self.fraction)
            time.sleep(interval)
        if self.error:
            raise self.error
        if self.state == "cancelled":
            raise Wav2SemError("cancelled", "Lip sync generation was cancelled.", "")
        return self.result

    def load_result(self) -> InferResult:
        """The result with its arrays (read once, then the temporary file is removed)."""
        result = InferResult.from_message(self.result).loaded()
        Path(result.path).unlink(missing_ok=True)
        return result


def _as_user_error(exc: BaseException) -> Wav2SemError:
    if isinstance(exc, Wav2SemError):
        return exc
    return Wav2SemError(
        "server_start_failed",
        f"The inference server could not be started ({type(exc).__name__}: {exc}).",
        "Check the server interpreter in the add-on preferences (Check button).",
    )
