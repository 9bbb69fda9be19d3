"""Per-file time of ``wav2sem_blender/batch.py`` over a folder, and how many servers it started.

    .venv/bin/python benchmarks/batch_folder.py [--clips 4] [--mode auto] [--bundle DIR]

Makes a folder of short clips (pieces of ``assets/sample_sentence.wav``, 2-4 s), a .blend with
the procedural demo head, and runs the real ``batch.py`` over the folder as a user would (a
subprocess with the ``bpy`` module, the embedded default model unless ``--bundle``). While it
runs, the inference servers it starts are counted from ``/proc`` (children running
``-m server serve``): one warm server for the whole folder is the expected answer. The first
file pays for starting the server (importing torch, loading the model); the rest should not.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.processes import servers_below  # noqa: E402

SAMPLE = ROOT / "assets" / "sample_sentence.wav"
LINE = re.compile(r"^\[(\d+)/(\d+)\] (\S+): (OK|FAILED).*?(?:\(([\d.]+) s\))?$")


def make_clips(folder: Path, n: int) -> list[Path]:
    """``n`` clips of 2-4 s cut from the sample sentence at different places (all real speech)."""
    audio, rate = sf.read(SAMPLE, dtype="float32")
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for i in range(n):
        seconds = 2.0 + 2.0 * i / max(1, n - 1)
        start = int((len(audio) / rate - seconds) * rate * i / max(1, n - 1))
        piece = audio[start : start + int(seconds * rate)]
        path = folder / f"clip{i + 1}.wav"
        sf.write(path, piece, rate)
        clips.append(path)
    return clips


def make_blend(path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        import bpy
        from wav2sem_blender.head import make_head_object
        bpy.ops.wm.read_factory_settings(use_empty=True)
        bpy.context.scene.render.fps = 30
        make_head_object("Head")
        bpy.ops.wm.save_as_mainfile(filepath={str(path)!r})
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=4)
    p.add_argument("--mode", default="auto")
    p.add_argument("--bundle", help="model bundle (default: the embedded default)")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="w2s-batch-bench-") as tmp:
        tmp = Path(tmp)
        clips = make_clips(tmp / "voice", args.clips)
        durations = [sf.info(c).duration for c in clips]
        blend = tmp / "shot.blend"
        make_blend(blend)
        cmd = [sys.executable, str(ROOT / "wav2sem_blender" / "batch.py"), "--blend", str(blend), "--object", "Head",
               "--audio-dir", str(tmp / "voice"), "--out-dir", str(tmp / "shots"), "--mode", args.mode]
        if args.bundle:
            cmd += ["--bundle", args.bundle]
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        servers: set[int] = set()
        while proc.poll() is None:
            servers |= servers_below(proc.pid)
            time.sleep(0.05)
        out, err = proc.communicate()
        total = time.monotonic() - started

    rows = [m.groups() for m in map(LINE.match, out.splitlines()) if m]
    print(f"{len(clips)} clips ({', '.join(f'{d:.1f}' for d in durations)} s), mode {args.mode}, "
          f"{'embedded default' if not args.bundle else args.bundle}")
    for index, _, name, status, seconds in rows:
        print(f"  file {index} {name}: {status} {seconds or '-'} s")
    times = [float(r[4]) for r in rows if r[4]]
    if len(times) > 1:
        print(f"  first {times[0]:.2f} s, following mean {np.mean(times[1:]):.2f} s; whole run {total:.1f} s "
              f"(with Blender's start and exit)")
    print(f"  inference servers started: {len(servers)}")
    if proc.returncode != 0:
        print(err[-2000:], file=sys.stderr)
    return 0 if proc.returncode == 0 and len(servers) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
