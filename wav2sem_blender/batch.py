"""Headless lip sync over one audio file or a folder of them.

With the ``bpy`` module::

    python wav2sem_blender/batch.py --blend IN.blend --object Head --audio a.wav [--out OUT.blend]
    python wav2sem_blender/batch.py --blend IN.blend --object Head --audio-dir voice/ --out-dir shots/

Inside Blender (the same arguments after ``--``)::

    blender -b IN.blend --python wav2sem_blender/batch.py -- --object Head --audio a.wav --out OUT.blend

Each output starts from IN.blend. Without ``--out`` the input .blend is updated in place.
A text file next to an audio file with its name (``line01.txt`` or ``line01.wav.txt``) holds the
words said in it: that file then runs in transcript-assisted mode (``--no-transcripts``: never).
One line per file on stdout; exit code 1 if any file failed (the others are still done). When
stderr is a terminal (and tqdm is installed, as in the ``bpy`` module's venv; Blender's own Python
has none), a progress bar there shows the files done and the current file's stage.
Bad arguments (an input that is not a .blend, an output that cannot be written) are found before
any work and end with one ``error: ...`` line on stderr and exit code 2.

A failed file changes nothing on disk: the output .blend (or, in place, the input) is written
only once its run has succeeded, as a copy under a temporary name in the same folder renamed
over the target, so it is either the old file or the complete new one. The old file is kept as
``OUT.blend1``, as Blender's own Save does (when Save Versions is above 0). A point cache is
named after and placed next to the output .blend; a failed run puts back the cache that was
there before (byte for byte) or removes the one it started.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the add-on package lives one folder up
    sys.path.insert(0, str(ROOT))

from wav2sem_blender.writers.registry import CLI_MODES  # noqa: E402
from wav2sem_contract.sidecars import AUDIO_TYPES, transcript_for  # noqa: E402

# How a .blend starts: plain, gzip (before Blender 3.0), zstd (3.0 and later).
BLEND_MAGIC = (b"BLENDER", b"\x1f\x8b", b"\x28\xb5\x2f\xfd")


class UsageError(Exception):
    """A bad argument found before any work: what is wrong, then what to do."""


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
    p.add_argument("--mode", choices=list(CLI_MODES), default="auto",
                   help="auto (default): control curves for the default model, compact keys for vertex models")
    p.add_argument("--start-frame", type=int, help="first frame (default: the scene's start frame)")
    p.add_argument("--no-semantic", action="store_true", help="turn Wav2Sem off")
    p.add_argument("--pack-audio", action="store_true",
                   help="store the audio inside each .blend, so it keeps its sound when moved without the recording")
    p.add_argument("--performance", help="intensity 0..1 of the blinks, brows, eyes, cheeks and head motion made from "
                   "the audio, on NLA tracks of their own; 0: mouth only (default: the scene's setting, 0.5 in a new one)")
    p.add_argument("--seed", help="seed of the performance layer (default: the scene's setting)")
    p.add_argument("--no-head-motion", action="store_true", help="the performance layer without head nods and tilts")
    p.add_argument("--strength", help="articulation strength 0..2 (1: as the model made it; default: the scene's setting)")
    p.add_argument("--smoothing", help="zero-phase smoothing of the motion in seconds 0..0.25 (0: none; default: the "
                   "scene's setting)")
    p.add_argument("--gain", action="append", metavar="NAME=VALUE",
                   help="scale one named control, e.g. --gain jawOpen=1.2 (repeatable; default: the scene's Gains)")
    p.add_argument("--no-report", action="store_true",
                   help="skip the lip-sync report (<output>.lipsync.json and the line's 'lip sync: ...': every /p b m/ "
                   "and whether the lips closed); without a transcript it runs speech recognition")
    p.add_argument("--close-recognised", action="store_true",
                   help="without a transcript (sidecar), close the lips at every /p b m/ of the words speech "
                   "recognition hears, as a transcript does (default: the scene's Close Heard p/b/m)")
    p.add_argument("--no-transcripts", action="store_true",
                   help="ignore transcript sidecars (<audio name>.txt next to an audio file, read as its words "
                   "for transcript-assisted lip sync)")
    p.add_argument("--server-python", help="interpreter that runs the inference server")
    args = p.parse_args(argv)
    if args.audio_dir and not args.out_dir:
        p.error("--audio-dir needs --out-dir")
    return args


def save_report(report_json: str, out: Path) -> None:
    """The lip-sync report next to the output .blend (``shot.lipsync.json``); with none (--no-report), an
    earlier run's is removed, since it would describe other keys."""
    from wav2sem_contract.lipsync import save_beside

    save_beside(out, json.loads(report_json) if report_json else None)


def performance_args(args: argparse.Namespace) -> dict[str, Any]:
    """``--performance`` and ``--seed`` as operator arguments, refused in one sentence when out of range."""
    out: dict[str, Any] = {}
    if args.performance is not None:
        try:
            value = float(args.performance)
        except ValueError:
            value = float("nan")
        if not 0.0 <= value <= 1.0:  # (also refuses nan)
            raise UsageError(f"--performance must be a number from 0 to 1, not '{args.performance}'. "
                             "Pass e.g. --performance 0.5 (0: mouth only).")
        out["performance"] = value
    if args.seed is not None:
        if not args.seed.isdigit() or int(args.seed) > 2**31 - 1:
            raise UsageError(f"--seed must be a whole number from 0 to {2**31 - 1}, not '{args.seed}'. "
                             "Pass e.g. --seed 7.")
        out["seed"] = int(args.seed)
    if args.no_head_motion:
        out["head_motion"] = False
    return out


def artist_args(args: argparse.Namespace) -> dict[str, Any]:
    """``--strength``, ``--smoothing`` and ``--gain`` as operator arguments, refused in one sentence when wrong."""
    from wav2sem_contract.artist import SMOOTHING_RANGE, STRENGTH_RANGE, format_gains, parse_gains
    from wav2sem_contract.errors import Wav2SemError

    out: dict[str, Any] = {}
    for flag, limits in (("strength", STRENGTH_RANGE), ("smoothing", SMOOTHING_RANGE)):
        text = getattr(args, flag)
        if text is None:
            continue
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not limits[0] <= value <= limits[1]:  # (also refuses nan)
            raise UsageError(f"--{flag} must be a number from {limits[0]:g} to {limits[1]:g}, not '{text}'. "
                             f"Pass e.g. --{flag} {1 if flag == 'strength' else 0.03}.")
        out[flag] = value
    if args.gain:
        try:
            out["gains"] = format_gains(parse_gains(args.gain))
        except Wav2SemError as exc:
            raise UsageError(f"--gain: {exc.message} {exc.hint}") from None
    return out


def jobs(args: argparse.Namespace, blend: Path) -> list[tuple[Path, Path]]:
    """(audio, output .blend) pairs; absolute, since the outputs' sidecar paths are made from them."""
    if args.audio:
        return [(Path(args.audio), Path(os.path.abspath(args.out or blend)))]
    files = sorted(f for f in Path(args.audio_dir).iterdir() if f.suffix.lower() in AUDIO_TYPES)
    return [(f, Path(os.path.abspath(Path(args.out_dir) / f"{f.stem}.blend"))) for f in files]


def check_input(blend: Path) -> None:
    """Refuse anything but a readable .blend file (checked by its first bytes, not its name)."""
    try:
        mode = blend.stat().st_mode
    except FileNotFoundError:
        raise UsageError(f"the input .blend '{blend}' does not exist. Check the --blend path.") from None
    except OSError as exc:
        raise UsageError(f"the input .blend '{blend}' cannot be read ({exc.strerror}). Check the --blend path.") from None
    if not stat.S_ISREG(mode):  # never open a pipe or device: reading it could block
        what = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
        raise UsageError(f"the input '{blend}' is {what}, not a .blend file. Give a .blend file with --blend.")
    try:
        with open(blend, "rb") as fh:
            head = fh.read(len(BLEND_MAGIC[0]))
    except OSError as exc:
        raise UsageError(f"the input .blend '{blend}' cannot be read ({exc.strerror}). Check its permissions.") from None
    if not head.startswith(BLEND_MAGIC):
        raise UsageError(f"'{blend}' is not a .blend file. Give a file saved by Blender with --blend.")


def check_outputs(outs: list[Path], flag: str) -> None:
    """Refuse outputs that cannot be written: an existing folder, a file where a folder must be, or a
    folder without write permission (tried with a real file, which also holds for root and for ACLs)."""
    tried: set[Path] = set()
    for out in outs:
        if out.is_dir():
            raise UsageError(f"the output '{out}' is a folder. Give a .blend file path with {flag}.")
        folder = out.parent
        while not folder.exists():  # folders still to be made will be made inside the nearest existing one
            folder = folder.parent
        if folder in tried:
            continue
        tried.add(folder)
        if not folder.is_dir():
            raise UsageError(f"cannot write '{out}' because '{folder}' is a file, not a folder. Choose another {flag}.")
        try:
            fd, probe = tempfile.mkstemp(dir=folder, prefix=".w2s-probe-")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise UsageError(
                f"cannot write to the folder '{folder}' ({exc.strerror}). Choose a writable {flag} location."
            ) from None


def check_audio_dir(folder: Path) -> None:
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is not a folder"
        raise UsageError(f"the audio folder '{folder}' {what}. Check the --audio-dir path.")


def _link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` becomes the current ``src`` and stays so when ``src`` is later replaced by a rename."""
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)  # instant, and no second copy of a large file
    except OSError:
        shutil.copy2(src, dst)


@contextmanager
def restore_on_failure(path: Path | None) -> Iterator[list[bool]]:
    """Keep the file at ``path`` aside during a run. Unless the caller marks success (``ok.append(True)``),
    put it back byte for byte afterwards, or remove the file the run made where there was none."""
    ok: list[bool] = []
    if path is None or (path.exists() and not path.is_file()):  # nothing of ours to keep or remove
        yield ok
        return
    aside = path.with_name(f".{path.name}.{os.getpid()}.keep")
    had = path.is_file()
    if had:
        _link_or_copy(path, aside)
    try:
        yield ok
    finally:
        if ok or (had and path.is_file() and os.path.samefile(path, aside)):
            aside.unlink(missing_ok=True)  # (rename onto its own hard link would do nothing and keep both)
        elif had:
            os.replace(aside, path)
        else:
            path.unlink(missing_ok=True)


@contextmanager
def quiet_stdout() -> Iterator[None]:
    """Silence Blender's own stdout (its "Info: Saved copy as <temporary name>" line) for one call."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def save_atomically(bpy, out: Path) -> None:
    """Write the open file to ``out`` in one step: a copy under a temporary name in the same folder
    (relative paths rebased to it), then a rename over ``out``; the old ``out`` becomes ``out.blend1``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp.blend")
    staged = out.with_name(f".{out.name}1.{os.getpid()}.tmp")
    try:
        with quiet_stdout():
            bpy.ops.wm.save_as_mainfile(filepath=str(tmp), copy=True)
        if out.is_file() and bpy.context.preferences.filepaths.save_version > 0:
            backup = out.with_name(out.name + "1")
            try:
                _link_or_copy(out, staged)
                os.replace(staged, backup)
            except OSError as exc:
                raise OSError(exc.errno, f"the old file cannot be kept as '{backup.name}': {exc.strerror}") from exc
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        staged.unlink(missing_ok=True)


class FileBar:
    """A tqdm bar on stderr over the files, its text the current file and the add-on's stage line
    (the one it shows in Blender's status bar), redrawn from a thread while a file runs.
    Does nothing unless stderr is a terminal and tqdm can be imported."""

    def __init__(self, total: int) -> None:
        self.bar: Any = None
        self.current = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not sys.stderr.isatty():  # in a log the bar's carriage returns are noise
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self._tqdm = tqdm
        size = os.get_terminal_size(sys.stderr.fileno())
        columns = size.columns or 80  # a fresh pseudo-terminal reports 0 x 0, and tqdm then draws nothing
        self.width = columns // 2  # the text keeps one width, so the bar does not jump as it changes
        self.bar = tqdm(total=total, unit="file", file=sys.stderr, ncols=columns, nrows=size.lines or 24,
                        desc=" " * self.width, mininterval=0.2, bar_format="{n}/{total} files |{bar}| {elapsed}  {desc}")

    @property
    def on(self) -> bool:
        return self.bar is not None

    def start(self, name: str, status_bar: list[str]) -> None:
        """A new file; ``status_bar`` is the add-on's live status-bar line (a list, empty when none)."""
        if self.bar is None:
            return
        self.current = name
        self._show(name)
        self._stop.clear()
        self._thread = threading.Thread(target=self._follow, args=(status_bar,), daemon=True)
        self._thread.start()

    def _follow(self, status_bar: list[str]) -> None:
        while not self._stop.wait(0.25):
            line = next(iter(status_bar[:]), "")  # (a copy: the main thread may empty it meanwhile)
            self._show(f"{self.current}: {line}" if line else self.current)

    def _show(self, text: str) -> None:
        if len(text) > self.width:
            text = text[: self.width - 1] + "\u2026"
        self.bar.set_description_str(text.ljust(self.width))  # redraws, under the bar's own lock

    def done(self, line: str) -> None:
        """The file's line on stdout (above the bar, which is redrawn below it) and one step on."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        if self.bar is None:
            print(line, flush=True)
            return
        self.bar.set_description_str(" " * self.width, refresh=False)  # that file's stage is over
        self._tqdm.write(line, file=sys.stdout)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.set_description_str(" " * self.width, refresh=False)
            self.bar.close()


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.server_python:
        os.environ["WAV2SEM_SERVER_PYTHON"] = args.server_python
    import bpy

    blend = Path(args.blend or bpy.data.filepath)
    try:
        performance = {**performance_args(args), **artist_args(args)}
        check_input(blend)
        if args.audio_dir:
            check_audio_dir(Path(args.audio_dir))
        todo = jobs(args, blend)
        if not todo:
            raise UsageError(
                f"no audio files ({', '.join(sorted(AUDIO_TYPES))}) in '{args.audio_dir}'. Check the --audio-dir path."
            )
        check_outputs([out for _, out in todo], "--out-dir" if args.audio_dir else "--out")
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    import wav2sem_blender
    from wav2sem_blender.writers.common import sidecars_for
    from wav2sem_blender.writers.point_cache import cache_path
    from wav2sem_contract.errors import Wav2SemError

    if not hasattr(bpy.types, "WAV2SEM_OT_generate"):
        wav2sem_blender.register()
    # the add-on that runs (an installed extension's copy inside Blender) and its status-bar line
    status_bar = getattr(sys.modules[bpy.types.WAV2SEM_OT_generate.__module__], "STATUS_BAR", [])
    bar = FileBar(len(todo))
    # Blender prints "Read blend ..." and its reports on stdout; on the bar's terminal they would tear it
    quiet = quiet_stdout if bar.on and sys.stdout.isatty() else nullcontext
    failed = 0
    for i, (audio, out) in enumerate(todo, 1):
        started = time.monotonic()
        bar.start(audio.name, status_bar)
        try:
            with quiet():
                bpy.ops.wm.open_mainfile(filepath=str(blend))
        except RuntimeError as exc:
            bar.close()
            print(f"error: Blender could not open '{blend}' ({exc}). Check that it is a .blend file.", file=sys.stderr)
            wav2sem_blender.runtime.shutdown()
            return 2
        kwargs = {"audio": str(audio.resolve()), "object": args.object, "mode": CLI_MODES[args.mode]}
        if args.bundle:
            kwargs["bundle"] = str(Path(args.bundle).resolve())
        if args.subject:
            kwargs["subject"] = args.subject
        if args.start_frame is not None:
            kwargs["start_frame"] = args.start_frame
        if args.no_semantic:
            kwargs["semantic"] = False
        if args.pack_audio:
            kwargs["pack_audio"] = True
        if args.no_report:
            kwargs["lipsync"] = False
        if args.close_recognised:
            kwargs["close_recognised"] = True
        kwargs.update(performance)
        try:
            kwargs["text"], _ = transcript_for(audio, args.no_transcripts)
        except (OSError, UnicodeDecodeError) as exc:
            failed += 1
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
            bar.done(f"[{i}/{len(todo)}] {audio.name}: FAILED The transcript next to it cannot be read ({reason}). "
                     "Save it as UTF-8 text, or pass --no-transcripts.")
            continue
        with sidecars_for(out):  # the cache is named for, and lies next to, the output .blend
            ob = bpy.data.objects.get(args.object)
            cache = cache_path(ob, out.parent)[0] if args.mode == "point-cache" and ob is not None else None
            with restore_on_failure(cache) as ok:
                try:
                    with quiet():
                        result = bpy.ops.wav2sem.generate(**kwargs)
                except RuntimeError:  # an ERROR report; the plain message is in the status
                    result = {"CANCELLED"}
                message = bpy.context.window_manager.wav2sem_status.message
                if "FINISHED" in result:
                    try:
                        save_atomically(bpy, out)
                        save_report(bpy.context.scene.wav2sem.lipsync_json, out)
                        ok.append(True)
                    except OSError as exc:
                        message = f"The result could not be saved as '{out}' ({exc.strerror or exc}). Check the folder."
                    except Wav2SemError as exc:  # the lip-sync report could not be written next to it
                        message = f"{exc.message} {exc.hint}"
                    except RuntimeError as exc:  # Blender's own report, e.g. "Error: Cannot open file ..."
                        reason = str(exc).strip().removeprefix("Error: ")
                        message = f"The result could not be saved as '{out}' ({reason}). Check the folder."
        if ok:
            bar.done(f"[{i}/{len(todo)}] {audio.name}: OK {message} -> {out} ({time.monotonic() - started:.1f} s)")
        else:
            failed += 1
            bar.done(f"[{i}/{len(todo)}] {audio.name}: FAILED {message}")
    bar.close()
    wav2sem_blender.runtime.shutdown()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
