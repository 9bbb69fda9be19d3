"""Headless lip sync over one audio file or a folder of them.

With the ``bpy`` module::

    python wav2sem_blender/batch.py --blend IN.blend --object Head --audio a.wav [--out OUT.blend]
    python wav2sem_blender/batch.py --blend IN.blend --object Head --audio-dir voice/ --out-dir shots/

Inside Blender (the same arguments after ``--``)::

    blender -b IN.blend --python wav2sem_blender/batch.py -- --object Head --audio a.wav --out OUT.blend

Each output starts from IN.blend. Without ``--out`` the input .blend is updated in place.
One line per file on stdout; exit code 1 if any file failed (the others are still done).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AUDIO_TYPES = {".wav", ".flac", ".ogg", ".mp3"}
MODES = {"compact": "COMPACT", "per-frame": "PER_FRAME", "point-cache": "POINT_CACHE", "controls": "CONTROLS"}


def parse(argv: list[str]) -> argparse.Namespace:
    if "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    p = argparse.ArgumentParser(prog="batch.py", description="Generate lip sync headless.")
    p.add_argument("--blend", help="input .blend (default: the file Blender opened)")
    p.add_argument("--object", required=True, help="name of the head mesh object")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--audio", help="one audio file")
    src.add_argument("--audio-dir", help="a folder of audio files (one output .blend each)")
    p.add_argument("--out", help="output .blend for --audio (default: update the input in place)")
    p.add_argument("--out-dir", help="output folder for --audio-dir")
    p.add_argument("--bundle", help="model bundle folder (default: the embedded default)")
    p.add_argument("--subject", help="speaking style")
    p.add_argument("--mode", choices=sorted(MODES), default="compact")
    p.add_argument("--start-frame", type=int, help="first frame (default: the scene's start frame)")
    p.add_argument("--no-semantic", action="store_true", help="turn Wav2Sem off")
    p.add_argument("--server-python", help="interpreter that runs the inference server")
    args = p.parse_args(argv)
    if args.audio_dir and not args.out_dir:
        p.error("--audio-dir needs --out-dir")
    return args


def jobs(args: argparse.Namespace, blend: Path) -> list[tuple[Path, Path]]:
    if args.audio:
        return [(Path(args.audio), Path(args.out) if args.out else blend)]
    files = sorted(f for f in Path(args.audio_dir).iterdir() if f.suffix.lower() in AUDIO_TYPES)
    return [(f, Path(args.out_dir) / f"{f.stem}.blend") for f in files]


def main(argv: list[str]) -> int:
    args = parse(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    if args.server_python:
        os.environ["WAV2SEM_SERVER_PYTHON"] = args.server_python
    import bpy

    import wav2sem_blender

    if not hasattr(bpy.types, "WAV2SEM_OT_generate"):
        wav2sem_blender.register()
    blend = Path(args.blend or bpy.data.filepath)
    if not blend.is_file():
        print(f"error: the input .blend '{blend}' does not exist.", file=sys.stderr)
        return 2
    todo = jobs(args, blend)
    if not todo:
        print(f"error: no audio files ({', '.join(sorted(AUDIO_TYPES))}) in {args.audio_dir}.", file=sys.stderr)
        return 2
    failed = 0
    for i, (audio, out) in enumerate(todo, 1):
        started = time.monotonic()
        bpy.ops.wm.open_mainfile(filepath=str(blend))
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.resolve() != blend.resolve():
            bpy.ops.wm.save_as_mainfile(filepath=str(out))  # so caches land next to the output
        kwargs = {"audio": str(audio.resolve()), "object": args.object, "mode": MODES[args.mode]}
        if args.bundle:
            kwargs["bundle"] = str(Path(args.bundle).resolve())
        if args.subject:
            kwargs["subject"] = args.subject
        if args.start_frame is not None:
            kwargs["start_frame"] = args.start_frame
        if args.no_semantic:
            kwargs["semantic"] = False
        try:
            result = bpy.ops.wav2sem.generate(**kwargs)
        except RuntimeError:  # an ERROR report; the plain message is in the status
            result = {"CANCELLED"}
        message = bpy.context.window_manager.wav2sem_status.message
        if "FINISHED" in result:
            backup = out.with_suffix(".blend1")
            had_backup = backup.exists()
            bpy.ops.wm.save_mainfile()
            if out.resolve() != blend.resolve() and not had_backup:
                backup.unlink(missing_ok=True)  # the copy saved a moment ago is not worth a backup
            print(f"[{i}/{len(todo)}] {audio.name}: OK {message} -> {out} ({time.monotonic() - started:.1f} s)", flush=True)
        else:
            failed += 1
            if out.resolve() != blend.resolve() and out.exists():
                out.unlink()  # no half-made output for a failed file
            print(f"[{i}/{len(todo)}] {audio.name}: FAILED {message}", flush=True)
    wav2sem_blender.runtime.shutdown()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
