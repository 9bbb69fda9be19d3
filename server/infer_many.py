"""``python -m server infer-many``: a folder of audio in, one result file per audio file out.

Every process lists the same files (sorted relative paths) and takes its share (``ranks.py``);
the model is loaded once per process. A result is written whole or not at all
(``InferResult.save``: a temporary file renamed into place), so a result that exists and reads
back is finished, and a rerun skips it; one that does not read back (a damaged copy) is redone.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from wav2sem_contract.errors import Wav2SemError
from wav2sem_contract.lipsync import save_beside, summary_line
from wav2sem_contract.request import InferRequest
from wav2sem_contract.result import InferResult
from wav2sem_contract.sidecars import AUDIO_TYPES, transcript_for

from .cli import say
from .infer_options import request_from_args
from .pipeline import check_result_path
from .progress import console_bar
from .ranks import JobEnd, Ranks

# Never audio, whatever --pattern says: results (an --out-dir inside --audio-dir) and transcripts.
NOT_AUDIO = {".npz", ".txt"}


@dataclass(frozen=True)
class Job:
    audio: Path
    name: str  # the audio's path under --audio-dir, with / (what the lines show)
    out: Path


@dataclass
class Counts:
    done: int = 0
    skipped: int = 0
    failed: int = 0

    def line(self) -> str:
        return f"{self.done} done, {self.skipped} skipped, {self.failed} failed"


def _bad(message: str, hint: str) -> Wav2SemError:
    return Wav2SemError("bad_request", message, hint)


def _is_audio(path: Path, pattern: str | None) -> bool:
    if path.suffix.lower() in NOT_AUDIO:
        return False
    return fnmatch.fnmatch(path.name, pattern) if pattern else path.suffix.lower() in AUDIO_TYPES


def list_jobs(audio_dir: str | Path, out_dir: str | Path, recursive: bool = False,
              pattern: str | None = None) -> list[Job]:
    """Every audio file under ``audio_dir`` and its result under ``out_dir``, in the order of their
    relative paths (the same in every process, whatever order the file system lists them in)."""
    root = Path(audio_dir)
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise _bad(f"The audio folder '{audio_dir}' {what}.", "Check the --audio-dir path.")
    try:
        found = [p for p in (root.rglob("*") if recursive else root.iterdir())]
    except OSError as exc:
        raise _bad(f"The audio folder '{audio_dir}' cannot be read ({exc.strerror or exc}).",
                   "Check its permissions.") from None
    names = []
    for path in found:
        relative = path.relative_to(root)
        # Hidden names: macOS's ._line.wav resource forks, and results being written (.line.npz.123.tmp).
        if any(part.startswith(".") for part in relative.parts) or not _is_audio(path, pattern):
            continue
        if path.is_file():
            names.append(relative.as_posix())
    names.sort()
    jobs, owner = [], {}
    for name in names:
        out = Path(out_dir) / Path(name).with_suffix(".npz")
        if out in owner:
            raise _bad(f"'{owner[out]}' and '{name}' would both write the result '{out}'.",
                       "Rename one of them, or pick one kind with --pattern.")
        owner[out] = name
        jobs.append(Job(root / name, name, out))
    if not jobs:
        kinds = f"matching '{pattern}'" if pattern else f"({', '.join(sorted(AUDIO_TYPES))})"
        where = f"'{audio_dir}' or its subfolders" if recursive else f"'{audio_dir}'"
        raise _bad(f"There are no audio files {kinds} in {where}.",
                   "Check --audio-dir and --pattern" + ("." if recursive else ", or pass --recursive for subfolders."))
    return jobs


def finished(out: Path) -> bool:
    """Whether ``out`` holds a result that reads back whole (a damaged or cut-off one does not)."""
    if not out.is_file():
        return False
    try:
        InferResult.load(out)
    except Wav2SemError:
        return False
    return True


def _transcript(job: Job, ignore: bool) -> str | None:
    try:
        text, _ = transcript_for(job.audio, ignore)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise _bad(f"Its transcript file cannot be read ({reason}).",
                   "Make it a UTF-8 text file, or pass --no-transcripts.") from None
    return text or None


def _prepare_output(out_dir: str | Path) -> None:
    """The output folder exists and takes files, or the job is refused before any model is loaded."""
    try:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _bad(f"The output folder '{out_dir}' cannot be made ({exc.strerror or exc}).",
                   "Choose an --out-dir in a folder you can write to.") from None
    check_result_path(Path(out_dir) / "probe.npz")  # writes (and removes) a temporary file there


class Lines:
    """Per-file lines on stdout, one write each (processes under torchrun share the stream). With a bar
    on a terminal and stdout on that terminal too, only failures: the bar shows the rest."""

    def __init__(self, ranks: Ranks, total: int, quiet: bool) -> None:
        self.prefix = ranks.prefix
        self.bar = console_bar(total=total, desc=self.prefix, unit="file", enabled=not quiet,
                               position=ranks.local_rank)
        self.all = self.bar.disable or not _stdout_is_terminal()

    def __enter__(self) -> Lines:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)

    def file(self, text: str, failed: bool = False) -> None:
        if self.all or failed:
            if self.bar.disable:
                sys.stdout.write(f"{self.prefix} {text}\n")
                sys.stdout.flush()
            else:  # clears the bar, writes, draws it again
                tqdm.write(f"{self.prefix} {text}", file=sys.stdout)
        self.bar.update(1)


def _stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _work(args: argparse.Namespace, ranks: Ranks, base: InferRequest, counts: Counts) -> None:
    jobs = list_jobs(args.audio_dir, args.out_dir, args.recursive, args.pattern)
    _prepare_output(args.out_dir)
    mine = ranks.share(jobs)  # shared out before skipping: the shares do not depend on what is done
    with Lines(ranks, len(mine), args.quiet) as lines:
        todo = []
        for job in mine:
            if not args.overwrite and finished(job.out):
                counts.skipped += 1
                lines.file(f"skipped {job.name} (its result {job.out} is there)")
            else:
                todo.append(job)
        if not todo:
            return  # no model to load
        if args.threads:
            torch.set_num_threads(args.threads)
        elif ranks.local_world > 1:
            torch.set_num_threads(ranks.threads())
        from .animator import Animator

        animate = Animator.from_args(args, ranks.device(args.device))
        animate.check(base)
        for job in todo:
            try:
                request = request_from_args(args, str(job.audio), _transcript(job, args.no_transcripts))
                result = animate(request)
                result.save(job.out)
                save_beside(job.out, result.lipsync)
            except Wav2SemError as exc:
                counts.failed += 1
                lines.file(f"failed {job.name}: {exc.message} {exc.hint}".rstrip(), failed=True)
                continue
            except Exception as exc:  # noqa: BLE001 - one file's surprise must not stop thousands of others
                counts.failed += 1
                lines.file(f"failed {job.name}: unexpected {type(exc).__name__}: {exc}", failed=True)
                continue
            counts.done += 1
            notice = (result.provenance.get("transcript") or {}).get("notice")
            report = f"; {summary_line(result.lipsync)}" if result.lipsync is not None else ""
            lines.file(f"done {job.name} -> {job.out} ({result.frames} frames)" + (f"; notice: {notice}" if notice
                                                                                     else "") + report)


def infer_many(args: argparse.Namespace) -> None:
    ranks = Ranks.from_env()
    if args.threads is not None and args.threads < 1:
        raise _bad(f"--threads must be 1 or more, not {args.threads}.", "Leave it out for a fair share of the cores.")
    base = request_from_args(args, "(each audio file)", None)  # option ranges: refused before any work
    counts = Counts()
    problem: Exception | None = None
    with JobEnd(ranks) as end:
        try:
            _work(args, ranks, base, counts)
        except Exception as exc:  # noqa: BLE001 - still reach the end below, or torchrun would stop the others
            problem = exc
        if problem is None:  # before the totals, so that rank 0's line of them comes after every rank's own
            say(f"{ranks.prefix} {counts.line()}")
        mine = [counts.done, counts.skipped, counts.failed, int(problem is not None)]
        done, skipped, failed, stopped = end.totals(mine)
    if end.grouped and ranks.rank == 0:
        also = f", {stopped} of {ranks.world} processes stopped (see their error lines)" if stopped else ""
        say(f"[all {ranks.world} ranks] {Counts(done, skipped, failed).line()}{also}")
    if problem is not None:
        if isinstance(problem, Wav2SemError) and ranks.world > 1:
            raise Wav2SemError(problem.code, f"{ranks.prefix} {problem.message}", problem.hint) from problem
        raise problem
    if failed or stopped:
        if end.grouped and ranks.rank != 0:
            raise SystemExit(2)  # rank 0 says it for the job; every process exits non-zero, as torchrun expects
        what = f"{failed} of {done + skipped + failed} audio files failed" if failed else "not every process finished"
        raise Wav2SemError("files_failed", f"{what} (the lines above say why); the other results are written.",
                           "Fix or remove those files and run the same command again: finished files are skipped.")
