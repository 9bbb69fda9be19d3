"""The serve protocol, driven as a real subprocess (raw pipes and the add-on's client)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.bundles import make_tiny_bundle, speech_like
from wav2sem_blender.client import Client, ServerProcess, Wav2SemError
from wav2sem_contract import protocol

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    return {
        "ff": make_tiny_bundle(tmp / "ff"),
        "ct": make_tiny_bundle(tmp / "ct", arch="codetalker"),
        "short": speech_like(tmp / "short.wav", 2.0),
        "long": speech_like(tmp / "long.wav", 60.0, rate=16000),
        "tmp": tmp,
    }


class RawServer:
    """``python -m server serve`` on raw pipes, with a bounded read."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [PY, "-m", "server", "serve", *args],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.client = ServerProcess(PY)  # only for its reader thread and queue
        self.client.proc = self.proc
        import threading

        threading.Thread(target=self.client._read_stdout, daemon=True).start()

    def write(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def read(self, timeout: float = 30.0) -> dict:
        return self.client.inbox.get(timeout=timeout)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def test_hello_then_ping_and_clean_shutdown():
    raw = RawServer()
    try:
        hello = raw.read(60)
        assert hello["type"] == "hello" and hello["protocol"] == protocol.PROTOCOL_VERSION
        assert hello["pid"] == raw.proc.pid and "torch" in hello and hello["device"]
        raw.write(protocol.encode({"type": "ping", "id": 7}))
        assert raw.read() == {"type": "pong", "id": 7}
        raw.write(protocol.encode({"type": "shutdown"}))
        assert raw.read()["type"] == "bye"
        assert raw.proc.wait(10) == 0
    finally:
        raw.close()


def test_malformed_and_oversized_messages_are_answered_and_survived():
    raw = RawServer("--max-message", "4096")
    try:
        assert raw.read(60)["type"] == "hello"
        raw.write(b"this is not json\n")
        err = raw.read()
        assert err["type"] == "error" and err["code"] == "malformed" and err["message"]
        raw.write(b"[1, 2, 3]\n")
        assert raw.read()["code"] == "malformed"
        raw.write(b'{"type": "ping", "id": 1, "pad": "' + b"x" * 100_000 + b'"}\n')
        err = raw.read()
        assert err["code"] == "oversized" and "4096" in err["message"]
        raw.write(protocol.encode({"type": "frobnicate", "id": 2}))
        err = raw.read()
        assert err["code"] == "bad_request" and err["id"] == 2
        raw.write(protocol.encode({"type": "ping", "id": 3}))
        assert raw.read() == {"type": "pong", "id": 3}
    finally:
        raw.close()


def test_end_of_stdin_stops_the_server():
    raw = RawServer()
    try:
        assert raw.read(60)["type"] == "hello"
        raw.proc.stdin.close()
        assert raw.proc.wait(10) == 0
    finally:
        raw.close()


@pytest.fixture
def client():
    c = Client(PY, stall_timeout=30.0)
    yield c
    c.close()


def test_back_to_back_requests_stay_warm(client, assets):
    out = assets["tmp"]
    jobs = [
        client.submit({"type": "infer", "bundle": str(assets["ff"]), "audio": str(assets["short"]),
                       "out": str(out / f"r{i}.npz"), "subject": ["alice", "bob", "carol"][i]})
        for i in range(3)
    ]
    stages = set()
    results = [job.wait(on_progress=lambda s, f: stages.add(s)) for job in jobs]
    assert [r["frames"] for r in results] == [results[0]["frames"]] * 3
    n = 32000  # 2 s at 16 kHz after resampling; then the conv stack's length, layer by layer
    for kernel, stride in zip((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2), strict=True):
        n = (n - kernel) // stride + 1
    assert results[0]["frames"] == int((n / 50.0) * 30)
    arrays = [np.load(r["path"])["offsets"] for r in results]
    assert arrays[0].shape == (results[0]["frames"], 5023, 3)
    assert not np.allclose(arrays[0], arrays[1])  # different subjects, different motion
    assert {"decode"} <= stages
    pid = client.process.proc.pid
    again = client.submit({"type": "infer", "bundle": str(assets["ff"]), "audio": str(assets["short"]),
                           "out": str(out / "again.npz"), "subject": "alice"}).wait()
    assert client.process.proc.pid == pid  # same warm process
    np.testing.assert_array_equal(np.load(again["path"])["offsets"], arrays[0])


def test_missing_files_give_their_errors(client, assets, tmp_path):
    job = client.submit({"type": "infer", "bundle": str(assets["ff"]), "audio": str(tmp_path / "nope.wav"),
                         "out": str(tmp_path / "x.npz")})
    with pytest.raises(Wav2SemError) as err:
        job.wait()
    assert err.value.code == "audio_missing" and "nope.wav" in err.value.message and err.value.hint
    job = client.submit({"type": "infer", "bundle": str(tmp_path / "no-bundle"), "audio": str(assets["short"]),
                         "out": str(tmp_path / "x.npz")})
    with pytest.raises(Wav2SemError) as err:
        job.wait()
    assert err.value.code == "bundle_missing"
    assert not (tmp_path / "x.npz").exists()
    assert client.info(str(assets["ff"]))["vertices"] == 5023  # still serving


def _wait_for_stage(job, stage: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while job.stage != stage and stage not in {s for s, _ in job.events}:
        assert not job.poll(), "the job finished before reaching the stage"
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_a_bundle_rebuilt_in_place_is_loaded_again(client, assets, tmp_path):
    # convert --force replaces the folder while the add-on's server keeps the old model warm
    bundle = make_tiny_bundle(tmp_path / "rebuilt", n_vertices=5023)
    request = {"type": "infer", "bundle": str(bundle), "audio": str(assets["short"]), "out": str(tmp_path / "a.npz")}
    assert client.submit(request).wait()["vertices"] == 5023
    make_tiny_bundle(tmp_path / "rebuilt", n_vertices=100, seed=1)
    assert client.info(str(bundle))["vertices"] == 100
    assert client.submit({**request, "out": str(tmp_path / "b.npz")}).wait()["vertices"] == 100
    assert np.load(tmp_path / "b.npz")["offsets"].shape[1] == 100


def test_cancel_mid_decode(client, assets, tmp_path):
    out = tmp_path / "cancelled.npz"
    job = client.submit({"type": "infer", "bundle": str(assets["ct"]), "audio": str(assets["long"]), "out": str(out)})
    _wait_for_stage(job, "decode")
    job.cancel()
    with pytest.raises(Wav2SemError) as err:
        job.wait()
    assert err.value.code == "cancelled"
    assert not out.exists()
    # the process is still warm and serves the next request
    assert client.info(str(assets["ct"]))["arch"] == "codetalker"


def test_server_killed_mid_request_is_reported_and_restarted(client, assets, tmp_path):
    job = client.submit({"type": "infer", "bundle": str(assets["ct"]), "audio": str(assets["long"]),
                         "out": str(tmp_path / "k.npz")})
    _wait_for_stage(job, "decode")
    old_pid = client.process.proc.pid
    os.kill(old_pid, signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(Wav2SemError) as err:
        job.wait()
    assert err.value.code == "server_crashed" and "signal 9" in err.value.message
    assert time.monotonic() - started < 10
    result = client.submit({"type": "infer", "bundle": str(assets["ff"]), "audio": str(assets["short"]),
                            "out": str(tmp_path / "after.npz")}).wait()
    assert client.process.proc.pid != old_pid and Path(result["path"]).exists()


def test_hung_server_times_out(assets, tmp_path):
    # generous while torch imports and the model loads (slow on a loaded machine), short once decoding
    client = Client(PY, stall_timeout=60.0)
    try:
        job = client.submit({"type": "infer", "bundle": str(assets["ct"]), "audio": str(assets["long"]),
                             "out": str(tmp_path / "h.npz")})
        _wait_for_stage(job, "decode")
        client.process.stall_timeout = 3.0
        proc = client.process.proc
        os.kill(proc.pid, signal.SIGSTOP)  # alive but silent: no heartbeat
        started = time.monotonic()
        with pytest.raises(Wav2SemError) as err:
            job.wait()
        assert err.value.code == "server_hung"
        assert 2.5 < time.monotonic() - started < 15
        assert proc.poll() is not None  # the client killed it
    finally:
        client.close()


def test_a_cancel_the_server_does_not_answer_kills_it_and_the_next_request_starts_a_fresh_one(assets, tmp_path):
    from wav2sem_blender.client import CANCEL_GRACE

    client = Client(PY, stall_timeout=60.0)
    try:
        job = client.submit({"type": "infer", "bundle": str(assets["ct"]), "audio": str(assets["long"]),
                             "out": str(tmp_path / "c.npz")})
        _wait_for_stage(job, "decode")
        proc = client.process.proc
        os.kill(proc.pid, signal.SIGSTOP)  # stands in for one long tensor operation: the cancel is never read
        started = time.monotonic()
        job.cancel()
        with pytest.raises(Wav2SemError) as err:
            job.wait()
        assert err.value.code == "cancelled"
        assert CANCEL_GRACE <= time.monotonic() - started < CANCEL_GRACE + 5
        assert proc.poll() is not None  # the client killed it
        assert not (tmp_path / "c.npz").exists()
        result = client.submit({"type": "infer", "bundle": str(assets["ff"]), "audio": str(assets["short"]),
                                "out": str(tmp_path / "after.npz")}).wait()
        assert client.process.proc.pid != proc.pid and Path(result["path"]).is_file()
    finally:
        client.close()


def test_bad_interpreter_and_missing_torch(tmp_path):
    with pytest.raises(Wav2SemError) as err:
        ServerProcess(str(tmp_path / "no-python")).start()
    assert err.value.code == "python_missing" and "preferences" in err.value.hint
    # A real interpreter without torch: Python's isolated venv.
    import venv

    venv.EnvBuilder(with_pip=False).create(tmp_path / "bare")
    bare = tmp_path / "bare" / "bin" / "python"
    with pytest.raises(Wav2SemError) as err:
        ServerProcess(str(bare), startup_timeout=60).start()
    assert err.value.code == "server_missing_package"
    assert "Set Up" in err.value.hint
