"""Command line: ``python -m server {convert,infer,serve,make-corpus,train-default,evaluate,benchmark} ...``.

Every command exits 0 on success and otherwise prints one plain line to stderr
(``error: <what is wrong> <what to do>``) and exits non-zero.
"""

from __future__ import annotations

import argparse
import os
import sys

# Nothing in this project downloads from a model hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _convert(args: argparse.Namespace) -> None:
    from .convert import convert

    out = convert(
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
    )
    print(f"bundle written to {out}", file=sys.stderr)


def _infer(args: argparse.Namespace) -> None:
    from .pipeline import InferRequest, check_result_path

    request = InferRequest(
        audio=args.audio,
        subject=args.subject,
        subject2=args.subject2,
        blend=args.blend,
        semantic=not args.no_semantic,
        fps=args.fps,
        max_seconds=args.max_seconds,
        result="compact" if args.compact else "offsets",
    ).validate()
    check_result_path(args.out, args.audio)  # before minutes of inference, not after

    from .errors import Wav2SemError
    from .models.bundle import default_bundle, load_bundle, variant_for
    from .pipeline import resolve_device, run, save_result
    from .progress import ConsoleProgress

    device = resolve_device(args.device)
    bundle = args.bundle or str(default_bundle())
    model = load_bundle(bundle, device, variant_for(bundle, not args.no_semantic))
    template = None
    if args.template:
        from .template import parse_landmarks, read_template

        template = read_template(args.template)
        landmarks = parse_landmarks(args.landmarks, len(template))
    with ConsoleProgress(enabled=not args.quiet) as progress:
        result = run(model, request, progress)
    if template is not None:
        if "names" not in result:
            raise Wav2SemError("bad_request", "--template applies to control models (the default); this bundle "
                               "already writes vertex offsets.", "Leave out --template.")
        from .template import offsets_from_controls

        result["offsets"] = offsets_from_controls(result["weights"], [str(n) for n in result["names"]],
                                                  template, landmarks)
    save_result(result, args.out)
    frames = (result["offsets"] if "offsets" in result else result["weights"]).shape[0]
    print(f"{frames} frames at {float(result['fps']):g} fps written to {args.out}", file=sys.stderr)


def _serve(args: argparse.Namespace) -> None:
    from .service import serve

    serve(max_message=args.max_message, idle_timeout=args.idle_timeout)


def _train_default(args: argparse.Namespace) -> None:
    from .train.recipe import Recipe, train_default

    corpus_args = {"pairs": args.pairs, "workers": args.workers}
    if args.holdout_voices:
        corpus_args["holdout_voices"] = tuple(args.holdout_voices.split(","))
    recipe = Recipe(
        corpus=args.corpus, out=args.out, sentences=args.sentences, voices=args.voices, seed=args.seed,
        corpus_seed=args.corpus_seed, semantic_from=args.semantic_from,
        semantic_epochs=args.semantic_epochs, decoder_epochs=args.decoder_epochs, corpus_args=corpus_args,
    )
    train_default(recipe, log=lambda text: print(text, file=sys.stderr, flush=True))


def _evaluate(args: argparse.Namespace) -> None:
    from .eval.evaluate import main as evaluate

    evaluate(args.bundle, args.corpus, args.speech or [])


def _benchmark(args: argparse.Namespace) -> None:
    from .benchmark import main as bench

    bench(args)


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _make_corpus(args: argparse.Namespace) -> None:
    import json
    import logging

    from .data.corpus import build_corpus

    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s", stream=sys.stderr)
    path = build_corpus(
        args.out,
        n_sentences=args.sentences,
        voices=_csv(args.voices),
        seed=args.seed,
        holdout_voices=_csv(args.holdout_voices),
        holdout_fraction=args.holdout_fraction,
        augment=not args.no_augment,
        workers=args.workers,
        progress=not args.quiet and sys.stderr is not None and sys.stderr.isatty(),  # no \r spam in logs
        pairs=args.pairs,
        voices_per_sentence=args.voices_per_sentence,
    )
    with open(path.parent / "manifest.json", encoding="utf-8") as f:
        counts = json.load(f)["counts"]
    print(
        f"{counts['clips']} clips ({counts['hours']:.2f} h; {counts['synthesised']} new, {counts['cached']} cached, "
        f"{counts['failed']} failed) written to {path}",
        file=sys.stderr,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m server", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "convert",
        help="build a model bundle from official checkpoint files",
        description="Convert official FaceFormer / CodeTalker(+Wav2Sem) checkpoints into a bundle folder.",
    )
    p.add_argument("--arch", required=True, choices=["faceformer", "codetalker"])
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
    p.add_argument("--n-head", type=int, default=4, help="decoder attention heads (official: 4)")
    p.add_argument("--vq-heads", type=int, default=8, help="CodeTalker stage-1 attention heads (official: 8)")
    p.add_argument("--out", required=True, help="bundle folder to write (new, empty, or a bundle with --force)")
    p.add_argument("--force", action="store_true", help="replace an existing bundle at --out (never other files)")
    p.set_defaults(func=_convert)

    p = sub.add_parser(
        "infer",
        help="animate one audio file",
        description="Run a bundle on an audio file and write offsets (T, V, 3), fps and provenance to an .npz.",
    )
    p.add_argument("--bundle", help="model bundle folder (default: the embedded default model)")
    p.add_argument("--audio", required=True, help="WAV/FLAC/OGG/MP3, any sample rate and channel count")
    p.add_argument("--out", required=True, help="output .npz")
    p.add_argument("--subject", help="speaking style (a training subject's name or index); default: the first")
    p.add_argument("--subject2", help="second style to blend with --subject")
    p.add_argument("--blend", type=float, default=1.0, help="weight of --subject when blending (0..1)")
    p.add_argument("--no-semantic", action="store_true", help="turn Wav2Sem off (the plain host model)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--fps", type=float, help="resample the motion to this frame rate")
    p.add_argument("--max-seconds", type=float, default=600.0, help="refuse longer audio (default 600)")
    p.add_argument(
        "--compact",
        action="store_true",
        help="write bias (V,3) + weights (T,K) @ basis (K,V,3) instead of offsets (exact for FaceFormer)",
    )
    p.add_argument("--template", help="control models: also write offsets (T, V, 3) on this mesh (.npy or .obj)")
    p.add_argument("--landmarks", help="the template's mouth landmarks as name=vertex,... (built in for FLAME)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_infer)

    p = sub.add_parser(
        "serve",
        help="long-lived process for the Blender add-on (framed JSON on stdin/stdout, no network port)",
        description="Serve inference requests over stdin/stdout; see server/protocol.py for the messages.",
    )
    p.add_argument("--max-message", type=int, default=1 << 20, help="largest accepted message in bytes")
    p.add_argument("--idle-timeout", type=float, default=0.0, help="exit after this many idle seconds (0: never)")
    p.set_defaults(func=_serve)

    p = sub.add_parser(
        "train-default",
        help="train the embedded default bundle from scratch (corpus, both stages, evaluation)",
        description="Build the synthetic corpus, train the semantic encoder and the decoder with and without "
        "Wav2Sem, evaluate both, and write the bundle.",
    )
    p.add_argument("--corpus", default="out/corpus", help="corpus folder (built and cached there)")
    p.add_argument("--out", default="server/default_bundle", help="bundle folder to write")
    p.add_argument("--sentences", type=int, default=800, help="text sentences (each spoken by 2 voices)")
    p.add_argument("--voices", default="flite,festival,espeak:en-us,espeak:en-gb-x-rp+f3,espeak:en-029+m3,"
                   "espeak:en-us-nyc+klatt4,espeak:en-gb-scotland")
    p.add_argument("--holdout-voices", help="voices kept for testing (default: flite:awb, espeak:en-gb-scotland)")
    p.add_argument("--pairs", type=int, default=16, help="near-homophone pairs in the carrier sentences")
    p.add_argument("--seed", type=int, default=0, help="training seed (initialisation, batch order)")
    p.add_argument("--corpus-seed", type=int, default=0, help="corpus seed (sentences, voices, splits)")
    p.add_argument("--semantic-from", help="reuse this bundle's trained semantic head (decoder-only seeds)")
    p.add_argument("--semantic-epochs", type=int, default=40)
    p.add_argument("--decoder-epochs", type=int, default=40)
    p.add_argument("--workers", type=int, default=2, help="speech synthesis processes")
    p.set_defaults(func=_train_default)

    p = sub.add_parser(
        "evaluate",
        help="the default model with and without Wav2Sem on held-out voices and sentences",
        description="Print the evaluation table (control error, /p b m/ closure, near-homophone separation).",
    )
    p.add_argument("--bundle", nargs="+", default=["server/default_bundle"],
                   help="one bundle, or one per training seed (same corpus): mean ± sd over them")
    p.add_argument("--corpus", help="corpus folder (default: the one the bundle's recipe names; rebuilt if absent)")
    p.add_argument("--speech", nargs="*", help="real speech files: closure rate on pocketsphinx-aligned bilabials")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser(
        "benchmark",
        help="time official-style decoding against ours on 5/20/60 s of audio",
        description="Decoding benchmark: official-style recomputation vs cached decoding.",
    )
    p.add_argument("--seconds", default="5,20,60", help="comma-separated audio lengths")
    p.add_argument("--arch", default="faceformer,codetalker", help="which hosts to time")
    p.add_argument("--size", default="full", choices=["full", "small"], help="full: official dimensions")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--reference-limit", type=float, default=60.0, help="skip the official loop above this length")
    p.add_argument("--threads", type=int, default=1, help="torch threads per measurement (1: robust to other load)")
    p.set_defaults(func=_benchmark)

    p = sub.add_parser(
        "make-corpus",
        help="synthesise a multi-speaker training corpus with exact phone timings (flite, espeak-ng, festival)",
        description="Synthesise English sentences from Debian packages (WordNet examples, fortunes, GCIDE quotations) "
        "and near-homophone carrier sentences with the installed TTS engines, writing 16 kHz wavs, clips.jsonl "
        "(text, voice, split, phone timings) and manifest.json. Deterministic for a seed; re-running resumes and "
        "skips clips that already exist.",
    )
    p.add_argument("--out", required=True, help="corpus folder to write (or resume)")
    p.add_argument("--sentences", type=int, default=1000, help="how many pool sentences to draw (default 1000)")
    p.add_argument(
        "--voices",
        default="flite,espeak,festival",
        help="comma-separated engines (all their voices) and/or voices such as flite:slt, espeak:en-us+f3, "
        "festival:kal_diphone (default: flite,espeak,festival; a missing engine is skipped with a warning)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed of the plan (default 0)")
    p.add_argument(
        "--holdout-voices",
        default="flite:awb,espeak:en-gb-scotland",
        help="comma-separated voices kept out of training; an espeak voice without '+' also holds out its variants "
        "(default: flite:awb,espeak:en-gb-scotland)",
    )
    p.add_argument(
        "--holdout-fraction", type=float, default=0.05, help="share of sentences kept out of training (default 0.05)"
    )
    p.add_argument(
        "--pairs", type=int, default=None, help="use only the first N near-homophone pairs (default: all of them)"
    )
    p.add_argument(
        "--voices-per-sentence", type=int, default=2, help="voices that speak each pool sentence (default 2)"
    )
    p.add_argument("--no-augment", action="store_true", help="no noise, reverberation, band-limiting or gain")
    p.add_argument("--workers", type=int, default=1, help="parallel synthesis processes (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_make_corpus)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .errors import Wav2SemError

    try:
        args.func(args)
    except Wav2SemError as exc:
        print(f"error: {exc.message} {exc.hint}".rstrip(), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one line, the traceback only on request
        if os.environ.get("WAV2SEM_DEBUG"):
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (set WAV2SEM_DEBUG=1 for details)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
