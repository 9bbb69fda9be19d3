"""The model options ``infer`` and ``infer-many`` share: defined once, turned into a request once.

Stdlib and the contract only (argparse is built before torch is imported).
"""

from __future__ import annotations

import argparse

from wav2sem_contract.artist import parse_gains
from wav2sem_contract.request import InferRequest


def add_model_options(p: argparse.ArgumentParser) -> None:
    """Which model, how it runs, and what it is asked for: every option of one inference but its audio,
    output and transcript (``infer`` takes one file's; ``infer-many`` reads one per audio file)."""
    p.add_argument("--bundle", help="model bundle folder (default: the embedded default model)")
    p.add_argument("--subject", help="speaking style (a training subject's name or index); default: the first")
    p.add_argument("--subject2", help="second style to blend with --subject")
    p.add_argument("--blend", type=float, default=1.0, help="weight of --subject when blending with --subject2, 0..1")
    p.add_argument("--no-semantic", action="store_true", help="turn Wav2Sem off (the plain host model)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where the model runs: auto picks a CUDA GPU when PyTorch sees one, else the CPU")
    p.add_argument("--fps", type=float, help="resample the motion to this frame rate (default: the model's own)")
    p.add_argument("--max-seconds", type=float, default=600.0, help="refuse longer audio")
    p.add_argument("--precision", default="exact", choices=["exact", "fast"],
                   help="exact: the model as trained; fast: int8 wav2vec2/HuBERT encoders on the CPU, a measured "
                   "approximation (see the README; the embedded default and CUDA run exact either way)")
    p.add_argument(
        "--compact",
        action="store_true",
        help="vertex models: write bias (V,3) + weights (T,K) @ basis (K,V,3) instead of offsets "
        "(exact for FaceFormer)",
    )
    p.add_argument("--performance", type=float, default=0.0,
                   help="intensity 0..1 of the performance layer beyond the mouth (blinks, brows, eyes, cheeks, "
                   "head nods), written as performance_weights + performance_names + head_rotation; 0: none")
    p.add_argument("--seed", type=int, default=0, help="seed of the performance layer's random draws")
    p.add_argument("--strength", type=float, default=1.0,
                   help="articulation strength 0..2: scales the mouth's motion from the neutral pose (1: as made)")
    p.add_argument("--smoothing", type=float, default=0.0,
                   help="zero-phase Gaussian smoothing of the motion over time, its width in seconds 0..0.25 "
                   "(0: none); the model's lip closures are kept")
    p.add_argument("--gain", action="append", metavar="NAME=VALUE",
                   help="control models: scale one named control, e.g. --gain jawOpen=1.2 (repeatable)")
    p.add_argument("--template", help="control models: also write offsets (T, V, 3) on this mesh (.npy or .obj)")
    p.add_argument("--landmarks", help="the template's mouth landmarks as name=vertex,... (built in for FLAME)")
    p.add_argument("--no-report", action="store_true",
                   help="skip the lip-sync report (the result's name with .lipsync.json beside it: every /p b m/ with "
                   "its word, time, frame and whether the lips closed); without a transcript it runs speech "
                   "recognition, about as long as the audio on 2 busy cores")
    p.add_argument("--close-recognised", action="store_true",
                   help="without a transcript (or when it does not fit the audio): close the lips at every /p b m/ "
                   "of the words speech recognition hears, as a transcript's closures do (control models; a "
                   "misheard word can close them where nothing is said)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (there is none when stderr is not a terminal)")


def request_from_args(args: argparse.Namespace, audio: str, text: str | None) -> InferRequest:
    """The validated request for ``audio`` (with its transcript ``text``, or None) under ``args``'s options."""
    return InferRequest(
        audio=audio,
        subject=args.subject,
        subject2=args.subject2,
        blend=args.blend,
        semantic=not args.no_semantic,
        fps=args.fps,
        max_seconds=args.max_seconds,
        result="compact" if args.compact else "offsets",
        precision=args.precision,
        performance=args.performance,
        seed=args.seed,
        strength=args.strength,
        smoothing=args.smoothing,
        gains=parse_gains(args.gain or []),
        text=text,
        report=not args.no_report,
        close_recognised=args.close_recognised,
    ).validate()


INFER_MANY_HELP = "animate a folder of audio files, one result each; shards across processes under torchrun"
INFER_MANY_DESCRIPTION = (
    "Animate every audio file in --audio-dir with one model loaded once, writing OUT-DIR/<the file's relative "
    "path>.npz (subfolders mirrored). A file whose result is already there and readable is skipped, so a stopped "
    "job resumes where it was; results are written whole or not at all. A text file beside an audio file "
    "(line01.txt or line01.wav.txt) is its transcript. A file that fails is reported on one line and the others "
    "go on; the exit status is then non-zero. Run it alone, or as many processes under torchrun "
    "(torchrun --nproc_per_node N -m server infer-many ...): each takes every N-th file of the sorted list "
    "(RANK, WORLD_SIZE from the environment), on GPU LOCAL_RANK when there are GPUs. The files are independent, "
    "so the processes share no model and need no process group; under torchrun a gloo group only gathers the "
    "final counts, so that every process ends with the same exit status.")


def add_infer_many_options(p: argparse.ArgumentParser) -> None:
    """``infer-many``'s own options: which files, where their results go, and when to redo one."""
    p.add_argument("--audio-dir", required=True, help="folder of audio files (WAV/FLAC/OGG/MP3)")
    p.add_argument("--out-dir", required=True, help="folder for the results, one .npz per audio file")
    p.add_argument("--recursive", action="store_true", help="also the audio in --audio-dir's subfolders")
    p.add_argument("--pattern", help="only files whose name matches this shell pattern, e.g. '*.wav' "
                   "(default: every .wav, .flac, .ogg and .mp3)")
    p.add_argument("--overwrite", action="store_true", help="redo files whose result already exists")
    p.add_argument("--no-transcripts", action="store_true",
                   help="ignore transcript sidecars (<audio name>.txt next to an audio file)")
    p.add_argument("--threads", type=int, help="CPU threads per process (default: this machine's cores shared "
                   "evenly among the processes on it)")
