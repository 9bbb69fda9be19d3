"""Thread policy (server/threads.py): decoding stays calm when other processes keep the cores busy.

The ratio test runs in a subprocess with a clean environment (no OMP_NUM_THREADS, unlike this
test process: see conftest.py), so it sees the thread pool a user's process has.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from server import threads
from tests.bundles import speech_like
from tests.helpers import REPO

CHILD = r"""
import json, os, subprocess, sys, time
import torch
from server.audio import load_for_model
from server.models.bundle import default_bundle, load_bundle

torch.set_grad_enabled(False)
model = load_bundle(default_bundle()).model
raw, _ = load_for_model(sys.argv[1])
style = model.style(model.style_weights())
memory = model.memory(torch.from_numpy(raw))
model.decode(memory, style)


def loop():  # one-thread work about as long as the decoding: what fair sharing of the cores allows
    started, x = time.perf_counter(), 0
    for i in range(4_000_000):
        x = (x + i) % 1_000_003
    return time.perf_counter() - started


times = {}
for _ in range(5):
    for condition in ("idle", "busy"):
        spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                    for _ in range(max(2, len(os.sched_getaffinity(0))) if condition == "busy" else 0)]
        time.sleep(0.3)
        try:
            for _ in range(2):
                started = time.perf_counter()
                model.decode(memory, style)
                times.setdefault("decode " + condition, []).append(time.perf_counter() - started)
                times.setdefault("loop " + condition, []).append(loop())
        finally:
            for proc in spinners:
                proc.kill()
                proc.wait()
print(json.dumps({k: min(v) for k, v in times.items()}))
"""


def test_decoding_with_busy_cores_is_at_most_twice_as_slow_as_idle(tmp_path):
    """Before the policy, the default's decoder ran 9-20x slower with two busy processes on 2 cores.

    Each time is the fastest of 10, idle and busy rounds alternating. A one-thread Python loop
    measured the same way gives the slow-down that sharing the cores imposes on any work: 1.5x
    with two spinners on 2 cores, more when other work runs too (1.4-1.7x on the shared 2-core
    development machine, where the decoder measured 1.5-1.7x now and 4-5x before). The decoder
    suffers somewhat more than that loop even where no thread pool exists at all (a process
    started with OMP_NUM_THREADS=1: up to 1.65x the loop's ratio), so the bound is 2x, or twice
    the loop's ratio where other load makes that larger.
    """
    audio = speech_like(tmp_path / "speech.wav", 10.0)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(audio)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    t = json.loads(proc.stdout.strip().splitlines()[-1])
    ratio = t["decode busy"] / t["decode idle"]
    floor = t["loop busy"] / t["loop idle"]
    print(f"decode idle {t['decode idle']:.3f} s, busy {t['decode busy']:.3f} s: {ratio:.2f}x "
          f"(one-thread loop {floor:.2f}x)")
    assert ratio <= max(2.0, 2.0 * floor)


def test_encoder_threads_are_the_free_cores(monkeypatch):
    monkeypatch.setattr(threads, "cpu_cores", lambda: 4)
    for busy, expected in ((0, 4), (1, 3), (3, 1), (7, 1), (None, 4)):
        monkeypatch.setattr(threads, "busy_cores", lambda busy=busy: busy)
        assert threads.encoder_threads(ceiling=4) == expected
    monkeypatch.setattr(threads, "busy_cores", lambda: 0)
    assert threads.encoder_threads(ceiling=2) == 2  # never more than torch's configured count
    assert threads.encoder_threads(ceiling=1) == 1


def test_busy_cores_reads_the_kernel_count():
    if not os.path.exists("/proc/stat"):
        pytest.skip("Linux only")
    busy = threads.busy_cores()
    assert busy is not None and busy >= 0


def test_phases_set_and_restore_the_thread_count(monkeypatch):
    calls = []
    current = [3]
    monkeypatch.setattr(torch, "get_num_threads", lambda: current[0])
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), current.__setitem__(0, n)))
    monkeypatch.setattr(threads, "encoder_threads", lambda: 2)
    with threads.sequential("cpu"):
        assert current[0] == 1
        with threads.parallel(torch.device("cpu")):
            assert current[0] == 2
        assert current[0] == 1
    assert current[0] == 3 and calls == [1, 2, 1, 3]
    calls.clear()
    with threads.sequential("cuda"), threads.parallel("cuda:0"):  # a GPU keeps torch's defaults
        pass
    monkeypatch.setattr(threads, "POLICY", "torch")
    with threads.sequential("cpu"), threads.parallel("cpu"):
        pass
    assert calls == []
