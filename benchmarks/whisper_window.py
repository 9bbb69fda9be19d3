"""Whisper's padded 30 s window against shorter windows: speed and how far the default's
control weights move (the measurement behind the decision in server/models/whisper.py).

    .venv/bin/python benchmarks/whisper_window.py [--speech FILE ...]

Clips: the real VOCA test sentence (when ../shared is present), espeak-ng speech cut to
2/5/10/20 s (when espeak-ng is installed) and synthetic speech-like signals of the same
lengths. For each, the exact encoding (every window padded to 30 s, as in training) is
compared with windows that end 0, 1, 2 or 5 s after the speech, or at twice its length.
Deviations are of the final control weights (clipped to [0, 1]); "closures flipped" counts
frames where mouthClose is on one side of 0.5 in one result and on the other in the other.
One torch thread, so the timings compare like with like.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from server.audio import load_for_model  # noqa: E402
from server.models.bundle import default_bundle, load_bundle  # noqa: E402
from server.models.whisper import SAMPLES_PER_STATE, WINDOW  # noqa: E402
from tests.bundles import speech_like  # noqa: E402
from wav2sem_contract.controls import CONTROLS  # noqa: E402

TEXT = ("The quick brown fox jumps over the lazy dog. Peter Piper picked a peck of pickled peppers. "
        "She sells sea shells by the sea shore. How much wood would a woodchuck chuck? Many people believe "
        "that the moon is made of cheese, but a map of the mountains shows only rock and dust. Bob bought a "
        "big blue balloon at the market on Monday morning.")
WINDOWS = {
    "speech + 0 s": lambda n: n,
    "speech + 1 s": lambda n: n + 50,
    "speech + 2 s": lambda n: n + 100,
    "speech + 5 s": lambda n: n + 250,
    "2 x speech": lambda n: 2 * n,
}


def clips(folder: Path, extra: list[str]) -> dict[str, Path]:
    found = {Path(p).name: Path(p) for p in extra}
    voca = ROOT.parent / "shared" / "fixtures" / "speech" / "voca_test_sentence.wav"
    if voca.is_file():
        found["VOCA sentence (5.1 s)"] = voca
    if shutil.which("espeak-ng"):
        import soundfile as sf

        subprocess.run(["espeak-ng", "-w", str(folder / "espeak.wav"), TEXT], check=True)
        audio, rate = sf.read(folder / "espeak.wav")
        for seconds in (2, 5, 10, 20):
            sf.write(folder / f"espeak_{seconds}.wav", audio[: seconds * rate], rate)
            found[f"espeak-ng {seconds} s"] = folder / f"espeak_{seconds}.wav"
    for seconds in (2, 5, 10, 20):
        found[f"synthetic {seconds} s"] = speech_like(folder / f"synthetic_{seconds}.wav", seconds)
    return found


def controls(model, raw: np.ndarray, window: int) -> tuple[np.ndarray, float]:
    """The default model's controls with every Whisper window padded to ``window`` states."""
    encoder = model.audio_encoder
    started = time.perf_counter()
    states = encoder.model(raw, window)[None]
    frames = model.semantic(encoder.to_motion_rate(states), states)
    memory = model.audio_proj(frames)[0]
    seconds = time.perf_counter() - started
    weights = model.decode(memory, model.style(model.style_weights()))
    return weights.clamp(0, 1).numpy(), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speech", nargs="*", default=[], help="more audio files to include")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_grad_enabled(False)
    model = load_bundle(default_bundle()).model
    close = CONTROLS.index("mouthClose")
    print("| clip | window | encoder s | speed-up | max control deviation | mean | closures flipped |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in clips(Path(tmp), args.speech).items():
            raw, _ = load_for_model(str(path))
            exact, exact_s = controls(model, raw, WINDOW)
            print(f"| {name} | 30 s (exact) | {exact_s:.2f} | 1x | 0 | 0 | 0 |", flush=True)
            n = len(raw) // SAMPLES_PER_STATE
            for label, window in WINDOWS.items():
                if window(n) >= WINDOW:
                    continue
                got, seconds = controls(model, raw, window(n))
                dev = np.abs(got - exact)
                flips = int(((got[:, close] > 0.5) != (exact[:, close] > 0.5)).sum())
                print(f"| {name} | {label} | {seconds:.2f} | {exact_s / seconds:.1f}x | {dev.max():.3f} | "
                      f"{dev.mean():.4f} | {flips} |", flush=True)


if __name__ == "__main__":
    main()
