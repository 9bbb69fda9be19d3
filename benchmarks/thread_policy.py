"""Thread policies for CPU inference, idle and with every core kept busy by other processes.

    .venv/bin/python benchmarks/thread_policy.py [--policies auto,all,one,torch] [--models default,w2v]
        [--seconds 10] [--repeats 3]

For each policy (``server/threads.py``: ``torch`` is torch's defaults everywhere, the
behaviour before the policy existed) a fresh process with a clean environment (no
``OMP_NUM_THREADS``, as a user's would be) loads the model and times the encoder and the
decoder, alternating "idle" and "busy" (one spinning process per core) rounds; each cell is
the fastest of its repeats. ``default`` is the embedded default (Whisper tiny + Wav2Sem head
+ small FaceFormer); ``w2v`` a FaceFormer with a wav2vec2-base phonetic encoder and a
wav2vec2-base Wav2Sem encoder (random weights; speed does not depend on them).

"single thread" is a pure-Python loop measured the same way: the slow-down any one-thread
work sees when the cores are shared, the floor no policy can beat.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def spinners(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.kill()
        proc.wait()


def python_loop() -> float:
    started = time.perf_counter()
    x = 0
    for i in range(3_000_000):
        x = (x + i) % 1_000_003
    return time.perf_counter() - started


def child(policy: str, model_name: str, audio: str, repeats: int) -> dict:
    """One process: load, warm up, then alternate idle and busy rounds."""
    import torch

    from server import threads
    from server.audio import load_for_model
    from server.models.bundle import default_bundle, load_bundle

    threads.POLICY = policy
    torch.set_grad_enabled(False)
    if model_name == "default":
        model = load_bundle(default_bundle()).model
        raw, _ = load_for_model(audio)
        x = torch.from_numpy(raw)
    else:
        from server.benchmark import build

        model = build("faceformer", "full")
        x = torch.from_numpy(load_for_model(audio)[1])
    style = model.style(model.style_weights(0))
    memory = model.memory(x)
    model.decode(memory, style)
    times: dict[str, list[float]] = {}
    for _ in range(repeats):
        for condition in ("idle", "busy"):
            procs = spinners(threads.cpu_cores()) if condition == "busy" else []
            time.sleep(0.3)
            try:
                started = time.perf_counter()
                memory = model.memory(x)
                times.setdefault(f"encode {condition}", []).append(time.perf_counter() - started)
                started = time.perf_counter()
                model.decode(memory, style)
                times.setdefault(f"decode {condition}", []).append(time.perf_counter() - started)
                times.setdefault(f"loop {condition}", []).append(python_loop())
            finally:
                stop(procs)
    return {k: min(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", default="auto,all,one,torch")
    parser.add_argument("--models", default="default")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        policy, model_name, audio, repeats = args.child
        print(json.dumps(child(policy, model_name, audio, int(repeats))))
        return
    from server.threads import cpu_cores
    from tests.bundles import speech_like

    print(f"{cpu_cores()} cores; {args.seconds:g} s clip; fastest of {args.repeats} rounds per cell; "
          "busy = one spinning process per core")
    print("| model | policy | encode idle | encode busy | decode idle | decode busy | total idle | total busy | "
          "busy / idle | single thread busy / idle |")
    print("|" + "---|" * 10)
    with tempfile.TemporaryDirectory() as tmp:
        audio = str(speech_like(Path(tmp) / "speech.wav", args.seconds))
        for model_name in args.models.split(","):
            for policy in args.policies.split(","):
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", policy, model_name, audio, str(args.repeats)],
                    capture_output=True, text=True, env=CLEAN_ENV, cwd=ROOT,
                )
                if proc.returncode:
                    raise SystemExit(proc.stderr.strip()[-800:])
                t = json.loads(proc.stdout.strip().splitlines()[-1])
                idle = t["encode idle"] + t["decode idle"]
                busy = t["encode busy"] + t["decode busy"]
                print(f"| {model_name} | {policy} | {t['encode idle']:.2f} | {t['encode busy']:.2f} | "
                      f"{t['decode idle']:.2f} | {t['decode busy']:.2f} | {idle:.2f} | {busy:.2f} | "
                      f"{busy / idle:.1f}x | {t['loop busy'] / t['loop idle']:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
