"""What the lip-sync report costs: cold `python -m server infer` of the embedded default on real
speech, without the report (the baseline), with it from the audio alone (word recognition, then
forced alignment of the recognised words), and with the transcript (`--text`: alignment only, and
the closure guarantee), idle and busy, in one run.

    .venv/bin/python benchmarks/lipsync_report.py [--repeats 3] [--loads idle,busy]

Audio: clips of the real-speech development set (`assets/real_speech`, LibriSpeech CC BY 4.0):
5.4 s and 10.4 s as they are, and 22.4 s made of two clips with a 0.3 s pause, each with its
transcript. Each repeat starts fresh processes, cycling through the three modes so that other load
on the machine touches them alike. Printed per length and load: medians, seconds added over the
baseline, and the ratio to it. ``busy`` runs one spinning process per core for the whole row.
Took 10 minutes on 2 cores with ``--repeats 2`` (the README's figures).
"""

from __future__ import annotations

import argparse
import json
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

SET = ROOT / "assets" / "real_speech"
CLIPS = {  # label -> clips of the set, joined with a pause
    "5 s": ["librispeech_1089-134691-0001"],
    "10 s": ["librispeech_1089-134686-0000"],
    "22 s": ["librispeech_1089-134686-0000", "librispeech_2412-153948-0000"],
}
PAUSE_S = 0.3
MODES = ("no report", "report from audio", "report with transcript")


def make_audio(folder: Path) -> dict[str, tuple[Path, str, float]]:
    """label -> (wav, transcript, seconds)"""
    manifest = {c["id"]: c for c in json.loads((SET / "manifest.json").read_text(encoding="utf-8"))["clips"]}
    out = {}
    for label, ids in CLIPS.items():
        parts, texts = [], []
        for i in ids:
            audio, rate = sf.read(SET / manifest[i]["file"], dtype="float32")
            assert rate == 16000, rate
            parts += [audio, np.zeros(int(PAUSE_S * rate), np.float32)]
            texts.append(manifest[i]["transcript"])
        audio = np.concatenate(parts[:-1])
        path = folder / f"{label.replace(' ', '')}.wav"
        sf.write(path, audio, 16000)
        out[label] = (path, " ".join(texts), audio.size / 16000)
    return out


def infer_command(wav: Path, text: str, mode: str, out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "server", "infer", "--audio", str(wav), "--out", str(out), "--quiet"]
    if mode == "no report":
        cmd.append("--no-report")
    elif mode == "report with transcript":
        cmd += ["--text", text]
    return cmd


def measure(audio: dict, repeats: int, folder: Path) -> dict[str, dict[str, list[float]]]:
    times = {label: {m: [] for m in MODES} for label in audio}
    for label, (wav, text, _) in audio.items():
        timed(infer_command(wav, text, MODES[1], folder / "warm.npz"))  # disk cache; not counted
        for r in range(repeats):
            for k in range(len(MODES)):
                mode = MODES[(k + r) % len(MODES)]
                times[label][mode].append(timed(infer_command(wav, text, mode, folder / "out.npz")))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loads", default="idle,busy")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
          f"load average before: {os.getloadavg()[0]:.2f}; cold `infer` of the embedded default, "
          f"median of {args.repeats}")
    print("| audio | load | no report | report from audio (added, ratio) | with transcript (added, ratio) |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        audio = make_audio(Path(tmp))
        for load in args.loads.split(","):
            with busy_cores(load == "busy"):
                times = measure(audio, args.repeats, Path(tmp))
            for label, rows in times.items():
                base = statistics.median(rows[MODES[0]])
                cells = [f"{base:.2f} s"]
                for mode in MODES[1:]:
                    m = statistics.median(rows[mode])
                    cells.append(f"{m:.2f} s (+{m - base:.2f} s, {m / base:.2f}x)")
                print(f"| {label} ({audio[label][2]:.1f} s) | {load} | " + " | ".join(cells) + " |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
