"""Command line of the Wav2Sem Lip Sync server: python -m server {convert,infer,serve,benchmark} ...

Every command exits 0 on success and otherwise prints one plain line to stderr
(``error: <what is wrong> <what to do>``) and exits non-zero.

The training tools (``make-corpus``, ``train-default``, ``evaluate``, ``make-dataset``, ``check-dataset``,
``metrics``) live in ``python -m training``; their names work here too and are forwarded there
(so older scripts keep running). The extension zip ships without ``training``, and there a
forward says so in one line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .cli import HelpFormatter, run_command, stay_offline
from .infer_options import INFER_MANY_DESCRIPTION, INFER_MANY_HELP, add_infer_many_options, add_model_options
from .models.registry import ARCHITECTURES

if TYPE_CHECKING:  # torch-free at start-up: these modules are imported where used
    from wav2sem_contract.request import InferRequest
    from wav2sem_contract.result import InferResult

Progress = Callable[[str, float], None]

stay_offline()

DESCRIPTION = ("Wav2Sem Lip Sync: convert official checkpoints into model bundles, animate audio files, "
               "serve the Blender add-on, and time the decoders.")

# name -> one-line help, shown in ``python -m server --help``; the options are training's own
TRAINING_COMMANDS = {
    "make-corpus": "synthesise the training corpus (= python -m training make-corpus)",
    "train-default": "train the embedded default bundle from scratch (= python -m training train-default)",
    "evaluate": "the default model with and without Wav2Sem on held-out data (= python -m training evaluate)",
    "make-dataset": "a small synthetic dataset in the VOCASET/BIWI layout (= python -m training make-dataset)",
    "check-dataset": "what a VOCASET/BIWI dataset folder holds, and its mismatches (= python -m training check-dataset)",
    "metrics": "LVE, MVE and FDD of vertex predictions against ground truth (= python -m training metrics)",
    "train": "train FaceFormer (± Wav2Sem) on VOCASET/BIWI-layout data, also under torchrun (= python -m training train)",
}


# Share of the convert bar each stage takes (reading and saving large files dominate).
CONVERT_STAGES = {"loading": (0.0, 0.2), "reading": (0.2, 0.5), "mapping": (0.5, 0.6),
                  "hashing": (0.6, 0.7), "saving": (0.7, 1.0)}


def _convert(args: argparse.Namespace) -> None:
    from .progress import ConsoleProgress

    with ConsoleProgress(enabled=not args.quiet, stages=CONVERT_STAGES) as progress:
        progress("loading", 0.0)
        out = _run_convert(args, progress)
    print(f"bundle written to {out}", file=sys.stderr)


def _run_convert(args: argparse.Namespace, progress: Progress) -> Path:
    from .convert import convert  # imports torch: inside the bar

    return convert(
        arch=args.arch,
        checkpoint=args.checkpoint,
        encoder=args.encoder,
        dataset=args.dataset,
        out=args.out,
        subjects=args.subjects.split() if args.subjects else None,
        vqvae=args.vqvae,
        wav2sem=args.wav2sem,
        wav2sem_config=args.wav2sem_config,
        fusion=args.fusion,
        n_head=args.n_head,
        vq_heads=args.vq_heads,
        force=args.force,
        progress=progress,
    )


def _infer(args: argparse.Namespace) -> None:
    from .infer_options import request_from_args

    request = request_from_args(args, args.audio, _transcript_text(args))
    from .progress import ConsoleProgress

    # The bar opens before torch is imported: that import is most of a short run's time.
    with ConsoleProgress(enabled=not args.quiet) as progress:
        progress("loading", 0.0)
        result = _run_infer(args, request, progress)
    print(f"{result.frames} frames at {result.fps:g} fps written to {args.out}", file=sys.stderr)
    transcript = result.provenance.get("transcript")
    if transcript:
        print(transcript_line(transcript), file=sys.stderr)
    from wav2sem_contract.lipsync import heard_closures_line, summary_line

    heard = heard_closures_line(result.provenance.get("recognised_closures"))
    if heard:
        print(heard, file=sys.stderr)
    if result.lipsync is not None:
        print(summary_line(result.lipsync), file=sys.stderr)


def _infer_many(args: argparse.Namespace) -> None:
    from .infer_many import infer_many

    infer_many(args)


def _transcript_text(args: argparse.Namespace) -> str | None:
    """--text, or the contents of --text-file (UTF-8), or None."""
    if args.text_file is None:
        return args.text
    from wav2sem_contract.errors import Wav2SemError

    try:
        return Path(args.text_file).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise Wav2SemError("bad_request", f"The transcript file '{args.text_file}' cannot be read ({reason}).",
                           "Give a UTF-8 text file with the words that are said.") from None


def transcript_line(info: dict) -> str:
    """One line on what transcript mode did: the notice when it fell back, else its counts."""
    if info.get("notice"):
        return f"notice: {info['notice']}"
    vector = "the sentence vector from the text" if info.get("semantic_from_text") else "the audio's sentence vector"
    return (f"transcript: {info.get('aligned_words', 0)} of {info.get('words', 0)} words aligned, "
            f"{info.get('closures', 0)} lip closures enforced, {vector}")


def _run_infer(args: argparse.Namespace, request: InferRequest, progress: Progress) -> InferResult:
    import torch  # noqa: F401 - the slowest import on its own, so that the bar moves after it

    progress("loading", 0.5)
    from .pipeline import check_result_path, resolve_device

    check_result_path(args.out, args.audio)  # before minutes of inference, not after
    progress("loading", 0.8)
    from .animator import Animator

    animate = Animator.from_args(args, resolve_device(args.device))
    progress("loading", 1.0)
    result = animate(request, progress)
    progress("saving", 0.0)
    result.save(args.out)
    from wav2sem_contract.lipsync import save_beside

    save_beside(args.out, result.lipsync)
    progress("saving", 1.0)
    return result


def _serve(args: argparse.Namespace) -> None:
    from .service import serve

    serve(max_message=args.max_message, idle_timeout=args.idle_timeout)


def _benchmark(args: argparse.Namespace) -> None:
    from .benchmark import main as bench

    bench(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m server", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "convert",
        help="build a model bundle from official checkpoint files",
        description="Convert official FaceFormer / CodeTalker(+Wav2Sem) checkpoints into a bundle folder.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--arch", required=True, choices=list(ARCHITECTURES), help="the host model the checkpoint is")
    p.add_argument("--checkpoint", required=True, help="FaceFormer .pth or CodeTalker stage-2 .pth.tar")
    p.add_argument("--encoder", required=True, help="Hugging Face wav2vec2/HuBERT folder (config + preprocessing)")
    p.add_argument("--dataset", required=True, help="vocaset (30 fps, FLAME 5023 vertices) or BIWI (25 fps)")
    p.add_argument("--subjects", help="training subjects in style order (default: the dataset's official list)")
    p.add_argument("--vqvae", help="CodeTalker stage-1 checkpoint, if the stage-2 file lacks autoencoder.*")
    p.add_argument("--wav2sem", help="Wav2Sem semantic encoder .pth.tar, if the stage-2 file lacks Wav2Bert.*")
    p.add_argument("--wav2sem-config", help="HF config folder of the semantic encoder (default: --encoder)")
    p.add_argument(
        "--fusion",
        choices=["official", "consistent"],
        default="consistent",
        help="consistent: add the trained projection of the semantic vector, as in training (default); "
        "official: add the raw vector, as the released predict() does",
    )
    p.add_argument("--n-head", type=int, default=4, help="decoder attention heads, as in the official models")
    p.add_argument("--vq-heads", type=int, default=8, help="CodeTalker stage-1 attention heads, as in the official models")
    p.add_argument("--out", required=True, help="bundle folder to write (new, empty, or a bundle with --force)")
    p.add_argument("--force", action="store_true", help="replace an existing bundle at --out (never other files)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (there is none when stderr is not a terminal)")
    p.set_defaults(func=_convert)

    p = sub.add_parser(
        "infer",
        help="animate one audio file (control weights or vertex offsets in an .npz)",
        description="Run a model bundle on an audio file and write the motion to an .npz, with its frame rate "
        "(fps) and provenance. The embedded default model (and any model of named controls) writes control "
        "weights (T, K) and their names; FaceFormer/CodeTalker bundles write vertex offsets (T, V, 3), or with "
        "--compact bias + weights @ basis.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--audio", required=True, help="WAV/FLAC/OGG/MP3, any sample rate and channel count")
    p.add_argument("--out", required=True, help="output .npz")
    add_model_options(p)
    text = p.add_mutually_exclusive_group()
    text.add_argument("--text", help="transcript-assisted mode: the words that are said; the lips close at every "
                      "aligned /p b m/ and Wav2Sem gets the sentence's own vector (a transcript that does not fit "
                      "the audio is ignored with a notice)")
    text.add_argument("--text-file", help="the same, read from a UTF-8 text file")
    p.set_defaults(func=_infer)

    p = sub.add_parser("infer-many", help=INFER_MANY_HELP, description=INFER_MANY_DESCRIPTION,
                       formatter_class=HelpFormatter)
    add_infer_many_options(p)
    add_model_options(p)
    p.set_defaults(func=_infer_many)

    p = sub.add_parser(
        "serve",
        help="long-lived process for the Blender add-on (framed JSON on stdin/stdout, no network port)",
        description="Serve inference requests over stdin/stdout; see wav2sem_contract/protocol.py for the messages.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--max-message", type=int, default=1 << 20, help="largest accepted message in bytes")
    p.add_argument("--idle-timeout", type=float, default=0.0, help="exit after this many idle seconds (0: never)")
    p.set_defaults(func=_serve)

    p = sub.add_parser(
        "benchmark",
        help="time official-style decoding against ours on 5/20/60 s of audio",
        description="Decoding benchmark: official-style recomputation vs cached decoding, on random weights "
        "of the official dimensions (each cell in its own process).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--seconds", default="5,20,60", help="audio lengths to time, in seconds, comma-separated")
    p.add_argument("--arch", default=",".join(ARCHITECTURES),
                   help="host models to time, comma-separated")
    p.add_argument("--size", default="full", choices=["full", "small"],
                   help="full: the official dimensions; small: a quick check")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the models run")
    p.add_argument("--reference-limit", type=float, default=60.0, help="skip the official loop above this length")
    p.add_argument("--threads", type=int, default=1, help="torch threads per measurement; 1 is robust to other load")
    p.set_defaults(func=_benchmark)

    for name, text in TRAINING_COMMANDS.items():
        # listed for --help only: main() hands these names to training before this parser runs
        sub.add_parser(name, help=text, add_help=False)
    return parser


def _forward_to_training(argv: list[str]) -> int:
    try:
        from training.__main__ import main as training_main
    except ModuleNotFoundError as exc:
        if exc.name not in ("training", "training.__main__"):
            raise
        print(f"error: '{argv[0]}' is a training tool, and the training tools are not part of the add-on "
              f"install. Run 'python -m training {argv[0]}' from a source checkout of the project.", file=sys.stderr)
        return 2
    return training_main(argv, prog="python -m server")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in TRAINING_COMMANDS:
        return _forward_to_training(argv)
    args = build_parser().parse_args(argv)
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
