"""Cold start: `python -m server infer` of the embedded default on 10 s of audio, from a fresh
process, against `python -c "import torch"` measured in the same run.

    .venv/bin/python benchmarks/cold_start.py [--runs 5] [--seconds 10] [--checkout DIR] [--precision exact] [--busy]

Each run starts new processes, alternating baseline and infer so that other load on the
machine affects both alike; the medians and their ratio are printed (target: ratio <= 3).
``--checkout`` times another copy of the project (e.g. an older commit unpacked with
``git archive``) with the same interpreter, for before/after numbers. ``--imports`` also
times `import server.models.bundle` on its own. ``--busy`` keeps every core busy with one
spinning process each for the whole measurement (baseline included): a user's machine is
rarely idle, and a cold start reads files and imports modules while sharing the cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.timing import busy_cores, timed  # noqa: E402


def speech_like(path: Path, seconds: float, rate: int = 16000) -> Path:
    """A voiced signal under a syllable-rate envelope: the model's speed does not depend on the words."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(120 + 20 * np.sin(2 * np.pi * 0.5 * t)) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    signal = 0.2 * voice * (0.5 * (1 + np.sin(2 * np.pi * 4 * t))) ** 2 + 0.003 * rng.standard_normal(len(t))
    sf.write(path, signal.astype(np.float32), rate)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--checkout", type=Path, default=ROOT, help="project copy to time (default: this one)")
    parser.add_argument("--precision", default=None, help="pass --precision to infer (newer versions only)")
    parser.add_argument("--imports", action="store_true", help="also time `import server.models.bundle`")
    parser.add_argument("--busy", action="store_true", help="one spinning process per core throughout")
    args = parser.parse_args()
    checkout = args.checkout.resolve()
    py = sys.executable
    with busy_cores(args.busy):
        times = measure(args, checkout, py)
    print(f"checkout: {checkout}; {args.seconds:g} s of audio; {args.runs} cold runs each; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; cores: {os.cpu_count()}; "
          f"{'busy: one spinning process per core' if args.busy else 'no load of our own'}")
    for name, values in times.items():
        if values:
            print(f"{name:28s} median {statistics.median(values):6.2f} s   "
                  f"(min {min(values):.2f}, max {max(values):.2f})")
    ratio = statistics.median(times["infer"]) / statistics.median(times["import torch"])
    print(f"ratio infer / import torch: {ratio:.2f} (target <= 3)")


def measure(args: argparse.Namespace, checkout: Path, py: str) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        audio = speech_like(Path(tmp) / "speech.wav", args.seconds)
        infer = [py, "-m", "server", "infer", "--audio", str(audio), "--out", str(Path(tmp) / "out.npz"), "--quiet"]
        if args.precision:
            infer += ["--precision", args.precision]
        timed([py, "-c", "import torch"], checkout)  # first run pays the disk cache; not counted
        timed(infer, checkout)
        times: dict[str, list[float]] = {"import torch": [], "infer": [], "import server.models.bundle": []}
        for _ in range(args.runs):
            times["import torch"].append(timed([py, "-c", "import torch"], checkout))
            times["infer"].append(timed(infer, checkout))
            if args.imports:
                times["import server.models.bundle"].append(timed([py, "-c", "import server.models.bundle"], checkout))
    return times


if __name__ == "__main__":
    main()
