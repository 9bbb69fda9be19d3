"""How fast cancel, shutdown and end of stdin take effect while the server encodes a long clip.

    .venv/bin/python benchmarks/cancel_latency.py [--seconds 300] [--bundle DIR] [--repeats 3]

Runs the real server through the add-on's client, waits until the request reaches the audio
encoder (plus a random delay, so the cancel lands at different layers), then measures the time
until the job ends (cancel) or the process is gone (shutdown, EOF). Each measurement is taken
on an idle machine and with every core kept busy by other processes. "cooperative" means the
server itself stopped between encoder layers; "killed" that the client's grace period ran out
and it killed the server (restarted on the next request).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from server.models.bundle import default_bundle  # noqa: E402
from tests.bundles import speech_like  # noqa: E402
from wav2sem_blender.client import Client, Wav2SemError  # noqa: E402
from wav2sem_contract import protocol  # noqa: E402


def _burn(stop) -> None:
    x = 0
    while not stop.is_set():
        x = (x * 1103515245 + 12345) % 2**31


def _until_encoding(job, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while job.stage != "encode" and "encode" not in {s for s, _ in job.events}:
        if job.poll() or time.monotonic() > deadline:
            raise RuntimeError("the request never reached the encoder")
        time.sleep(0.005)


def measure(action: str, bundle: str, audio: Path, out: Path) -> tuple[float, str]:
    client = Client(sys.executable, stall_timeout=300.0)
    try:
        job = client.submit({"type": "infer", "bundle": bundle, "audio": str(audio), "out": str(out)})
        _until_encoding(job)
        time.sleep(random.uniform(0.0, 1.0))
        proc = client.process.proc
        started = time.monotonic()
        if action == "cancel":
            job.cancel()
            try:
                job.wait(interval=0.005)
            except Wav2SemError:
                pass
            how = "killed" if proc.poll() is not None else "cooperative"
        else:
            if action == "shutdown":
                client.process.send({"type": "shutdown"})
            else:
                proc.stdin.close()
            proc.wait(30)
            how = "exit code 0" if proc.returncode == 0 else f"exit code {proc.returncode}"
        return time.monotonic() - started, how
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="clip length (default 300)")
    parser.add_argument("--bundle", default=str(default_bundle()), help="bundle (default: the embedded default)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--official-size", action="store_true",
                        help="a FaceFormer+Wav2Sem bundle with wav2vec2-base dimensions (random weights) instead")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    if args.official_size:
        from server.benchmark import build
        from server.models.bundle import save_bundle

        args.bundle = str(save_bundle(build("faceformer", "full"), tmp / "wav2vec2-base-size"))
    audio = speech_like(tmp / "clip.wav", args.seconds, rate=16000)
    print(f"protocol {protocol.PROTOCOL_VERSION}; {args.seconds:g} s clip; bundle {Path(args.bundle).name}; "
          f"{os.cpu_count()} cores")
    print(f"{'load':<6} {'action':<9} {'median s':>9} {'max s':>7}  how")
    for load in ("idle", "busy"):
        stop = mp.Event()
        burners = [mp.Process(target=_burn, args=(stop,)) for _ in range(os.cpu_count() if load == "busy" else 0)]
        for b in burners:
            b.start()
        try:
            for action in ("cancel", "shutdown", "eof"):
                runs = [measure(action, args.bundle, audio, tmp / "out.npz") for _ in range(args.repeats)]
                times = [t for t, _ in runs]
                hows = ", ".join(sorted({h for _, h in runs}))
                print(f"{load:<6} {action:<9} {statistics.median(times):>9.2f} {max(times):>7.2f}  {hows}", flush=True)
        finally:
            stop.set()
            for b in burners:
                b.join()


if __name__ == "__main__":
    main()
