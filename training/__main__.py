"""Command line of the training tools: python -m training {make-corpus,train-default,evaluate} ...

Every command exits 0 on success and otherwise prints one plain line to stderr
(``error: <what is wrong> <what to do>``) and exits non-zero, as ``python -m server`` does
(which forwards these three commands here).
"""

from __future__ import annotations

import argparse
import sys

from server.cli import HelpFormatter, run_command, stay_offline

stay_offline()

DESCRIPTION = ("Wav2Sem Lip Sync training tools: synthesise the speech corpus, train the embedded default "
               "model, and evaluate it with and without Wav2Sem.")


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
        progress=not args.quiet,  # a bar only when stderr is a terminal (server.progress)
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


def _train_default(args: argparse.Namespace) -> None:
    from .recipe import Recipe, train_default

    corpus_args = {"pairs": args.pairs, "workers": args.workers}
    if args.holdout_voices:
        corpus_args["holdout_voices"] = tuple(args.holdout_voices.split(","))
    recipe = Recipe(
        corpus=args.corpus, out=args.out, sentences=args.sentences, voices=args.voices, seed=args.seed,
        corpus_seed=args.corpus_seed, semantic_from=args.semantic_from,
        semantic_epochs=args.semantic_epochs, decoder_epochs=args.decoder_epochs, corpus_args=corpus_args,
    )
    from server.progress import console_write

    train_default(recipe, log=console_write)  # lines that do not tear the stage's progress bar


def _evaluate(args: argparse.Namespace) -> None:
    from .eval.evaluate import main as evaluate

    evaluate(args.bundle, args.corpus, args.speech or [])


def build_parser(prog: str = "python -m training") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "make-corpus",
        help="synthesise a multi-speaker training corpus with exact phone timings (flite, espeak-ng, festival)",
        description="Synthesise English sentences from Debian packages (WordNet examples, fortunes, GCIDE quotations) "
        "and near-homophone carrier sentences with the installed TTS engines, writing 16 kHz wavs, clips.jsonl "
        "(text, voice, split, phone timings) and manifest.json. Deterministic for a seed; re-running resumes and "
        "skips clips that already exist.",
        formatter_class=HelpFormatter,
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
    p.add_argument("--quiet", action="store_true", help="no progress bar (there is none when stderr is not a terminal)")
    p.set_defaults(func=_make_corpus)

    p = sub.add_parser(
        "train-default",
        help="train the embedded default bundle from scratch (corpus, both stages, evaluation)",
        description="Build the synthetic corpus, train the semantic encoder and the decoder with and without "
        "Wav2Sem, evaluate both, and write the bundle. A progress bar per stage when stderr is a terminal; "
        "a line every 5 epochs either way.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--corpus", default="out/corpus", help="corpus folder (built and cached there)")
    p.add_argument("--out", default="server/default_bundle",
                   help="bundle folder to write (an earlier bundle there is replaced; any other files are refused)")
    p.add_argument("--sentences", type=int, default=800, help="text sentences (each spoken by 2 voices)")
    p.add_argument("--voices", default="flite,festival,espeak:en-us,espeak:en-gb-x-rp+f3,espeak:en-029+m3,"
                   "espeak:en-us-nyc+klatt4,espeak:en-gb-scotland",
                   help="comma-separated engines (all their voices) and/or voices such as flite:slt or "
                   "espeak:en-us+f3 that speak the corpus")
    p.add_argument("--holdout-voices", help="voices kept for testing (default: flite:awb, espeak:en-gb-scotland)")
    p.add_argument("--pairs", type=int, default=16, help="near-homophone pairs in the carrier sentences")
    p.add_argument("--seed", type=int, default=0, help="training seed (initialisation, batch order)")
    p.add_argument("--corpus-seed", type=int, default=0, help="corpus seed (sentences, voices, splits)")
    p.add_argument("--semantic-from", help="reuse this bundle's trained semantic head (decoder-only seeds)")
    p.add_argument("--semantic-epochs", type=int, default=40,
                   help="passes over the training clips for the semantic encoder (stage 1)")
    p.add_argument("--decoder-epochs", type=int, default=40,
                   help="passes over the training clips for each decoder (stage 2, with and without Wav2Sem)")
    p.add_argument("--workers", type=int, default=2, help="speech synthesis processes")
    p.set_defaults(func=_train_default)

    p = sub.add_parser(
        "evaluate",
        help="the default model with and without Wav2Sem on held-out voices and sentences",
        description="Print the evaluation table (control error, /p b m/ closure, near-homophone separation).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--bundle", nargs="+", default=["server/default_bundle"],
                   help="one bundle, or one per training seed (same corpus): mean ± sd over them")
    p.add_argument("--corpus", help="corpus folder (default: the one the bundle's recipe names; rebuilt if absent)")
    p.add_argument("--speech", nargs="*", help="real speech files: closure rate on pocketsphinx-aligned bilabials")
    p.set_defaults(func=_evaluate)
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m training") -> int:
    """Parse and run one command; ``prog`` names the command line in usage and help texts."""
    args = build_parser(prog).parse_args(argv)
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
