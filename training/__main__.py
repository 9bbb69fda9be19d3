"""Command line of the training tools: python -m training {make-corpus,train-default,evaluate,make-dataset,
check-dataset,metrics,train} ...

Every command exits 0 on success and otherwise prints one plain line to stderr
(``error: <what is wrong> <what to do>``) and exits non-zero, as ``python -m server`` does
(which forwards these commands here).
"""

from __future__ import annotations

import argparse
import sys

from server.cli import HelpFormatter, run_command, stay_offline

stay_offline()

DESCRIPTION = ("Wav2Sem Lip Sync training tools: synthesise the speech corpus, train the embedded default "
               "model, and evaluate it with and without Wav2Sem; check VOCASET/BIWI dataset folders, make a "
               "synthetic one, and score vertex predictions (LVE, MVE, FDD).")


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
        closure_weight=args.closure_weight,
    )
    from server.progress import console_write

    train_default(recipe, log=console_write)  # lines that do not tear the stage's progress bar


def _evaluate(args: argparse.Namespace) -> None:
    from .eval.evaluate import main as evaluate

    evaluate(args.bundle, args.corpus, args.speech or [])


def _make_dataset(args: argparse.Namespace) -> None:
    from .datasets.synthetic import make_dataset

    out = make_dataset(args.out, layout=args.layout, subjects=args.subjects, sentences=args.sentences,
                       voices=_csv(args.voices), grid=args.grid, seed=args.seed, progress=not args.quiet)
    print(f"{args.subjects * args.sentences} sequences ({args.layout} layout) written to {out}", file=sys.stderr)


def _check_dataset(args: argparse.Namespace) -> None:
    from wav2sem_contract.errors import Wav2SemError

    from .datasets.check import check_dataset

    report = check_dataset(args.dataset, layout=args.layout, tolerance_s=args.tolerance, progress=not args.quiet)
    print("\n".join(report.lines()))
    if args.list:
        print("sequences:")
        print("\n".join(report.sequence_lines()))
    if report.problems:
        raise Wav2SemError("dataset_problems", f"{len(report.problems)} problems in {args.dataset} (listed above).",
                           "Fix or remove the files named there; the official loaders skip or crash on them.")


def _metrics(args: argparse.Namespace) -> None:
    from .eval.face_metrics import evaluate_files, read_regions, write_json

    metrics, stride = evaluate_files(args.pred, args.gt, read_regions(args.regions), templates=args.templates,
                                     gt_stride=args.gt_stride, progress=not args.quiet)
    note = "every GT frame" if stride == 1 else f"every {stride}nd GT frame" if stride == 2 else f"every {stride}th GT frame"
    print(f"{metrics.sequences} sequences, {metrics.frames} frames ({note})")
    print("\n".join(metrics.lines()))
    if args.json:
        write_json(metrics, args.json)


def _train(args: argparse.Namespace) -> None:
    from .hosts.trainer import TrainConfig, train

    cfg = TrainConfig(data=args.data, out=args.out, encoder=args.encoder, dataset=args.dataset, arch=args.arch,
                      wav2sem=args.wav2sem, wav2sem_config=args.wav2sem_config, init=args.init, vqvae=args.vqvae,
                      resume=args.resume,
                      epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                      teacher_forcing=args.teacher_forcing, feature_dim=args.feature_dim, regions=args.regions,
                      seed=args.seed, cpu=args.cpu, bundle=not args.no_bundle, quiet=args.quiet)
    train(cfg)


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
    p.add_argument("--closure-weight", type=float, default=4.0,
                   help="weight in the decoder's loss of the frames whose target closes the lips (default 4)")
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

    p = sub.add_parser(
        "make-dataset",
        help="write a small synthetic dataset in the VOCASET or BIWI layout (TTS speech, rig-driven motion)",
        description="Synthesise speech with the TTS voices and drive a procedural face with the articulation rig "
        "(phone-timed controls times a per-subject gain) plus brows moved linearly by the audio's loudness; write "
        "wav/, vertices_npy/, templates.pkl, regions/ (lve.txt, fdd.txt), controls/ (the known answer) and "
        "dataset.json (splits and styles).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--out", required=True, help="folder to create (must be absent or empty)")
    p.add_argument("--layout", choices=("vocaset", "biwi"), default="vocaset",
                   help="file names, motion rate (VOCASET 60 fps read [::2]; BIWI 25 fps) and audio rate")
    p.add_argument("--subjects", type=int, default=3, help="speakers, one voice each; the last is the test subject")
    p.add_argument("--sentences", type=int, default=2, help="sentences per subject (2-6)")
    p.add_argument("--voices", default="flite:slt,flite:rms,flite:awb,flite:kal16",
                   help="comma-separated TTS voices given to the subjects in turn")
    p.add_argument("--grid", type=int, default=20, help="the face is a grid x grid vertex patch")
    p.add_argument("--seed", type=int, default=0, help="seed of the subjects' face sizes and styles")
    p.add_argument("--quiet", action="store_true", help="no progress bar (there is none when stderr is not a terminal)")
    p.set_defaults(func=_make_dataset)

    p = sub.add_parser(
        "check-dataset",
        help="list what a VOCASET/BIWI-layout folder holds and every mismatch",
        description="Read wav/, vertices_npy/ and templates.pkl (with a restricted unpickler: only numpy arrays) "
        "and print subjects, sentences, frames, audio lengths and splits, then every problem: a wav without motion "
        "or the reverse, a badly named file, an unknown subject or one without a template, unreadable or wrongly "
        "sized motion, audio and motion of different lengths. Exit status 2 when there are problems.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("dataset", help="the dataset folder (holding wav/, vertices_npy/, templates.pkl)")
    p.add_argument("--layout", choices=("vocaset", "biwi"),
                   help="default: the folder's dataset.json, else guessed from the file names")
    p.add_argument("--tolerance", type=float, default=0.2,
                   help="largest accepted difference between audio and motion durations, in seconds")
    p.add_argument("--list", action="store_true", help="also print every sequence (splits, frames, audio length)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (there is none when stderr is not a terminal)")
    p.set_defaults(func=_check_dataset)

    p = sub.add_parser(
        "metrics",
        help="LVE, MVE and FDD of vertex predictions against ground truth (as the official evaluation code)",
        description="Score predictions (.npy vertices (T, 3V), or .npz from infer with offsets) against "
        "vertices_npy ground truth: LVE (per frame the largest squared error over the lip vertices, mean over all "
        "frames), MVE (mean error over all vertices), FDD (ground truth minus predicted std over time of the "
        "upper-face squared displacement from the template, mean over sequences), following CodeTalker "
        "main/cal_metric.py and FaceDiffuser evaluation/compute_objective_metrics.py.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--pred", required=True, help="prediction file, or folder of <subject>_<sentence>[_condition_<s>].npy")
    p.add_argument("--gt", required=True, help="ground-truth file, or the dataset's vertices_npy folder")
    p.add_argument("--regions", required=True,
                   help="folder with lve.txt (lip vertex indices) and fdd.txt (upper-face indices); yours to supply "
                   "(BIWI ships them, FLAME masks have their own licence)")
    p.add_argument("--templates", help="templates.pkl for FDD (default: the one next to the GT folder)")
    p.add_argument("--gt-stride", type=int,
                   help="read every Nth GT frame (default: the dataset's own: 2 for VOCASET's 60 fps files, else 1)")
    p.add_argument("--json", help="also write the numbers (and per-sequence rows) to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bar (there is none when stderr is not a terminal)")
    p.set_defaults(func=_metrics)

    p = sub.add_parser(
        "train",
        help="train FaceFormer or CodeTalker (stage 1, stage 2; optionally with Wav2Sem) on a VOCASET/BIWI-layout "
        "folder, alone or under torchrun",
        description="The official FaceFormer recipe (Adam lr 1e-4, MSE on vertices, the autoregressive loop with "
        "gradients, conv feature extractor frozen) on the dataset's train split, validated every epoch on its val "
        "split (teacher-forced loss as official, autoregressive loss, LVE when lip regions exist). Writes "
        "metrics.csv, steps.csv, TensorBoard events (when installed), last.pt every epoch, best.pt, best.pth (the "
        "official state dict, for convert) and bundle/. CodeTalker follows its official recipes: stage 1 "
        "(train_vq.py: AdamW 1e-4, L1 + VQ loss, VOCASET StepLR 20 x 0.5; writes best.pth = {'state_dict': "
        "VQAutoEncoder}, no bundle), stage 2 (train_pred.py: Adam 1e-4, teacher forcing, MSE + feature "
        "regression, the --vqvae stage 1 frozen). Under torchrun (torchrun --nproc_per_node N -m training "
        "train ...) each process takes --batch-size sequences per step.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--arch", default="faceformer", choices=("faceformer", "codetalker-stage1", "codetalker-stage2"),
                   help="host to train: FaceFormer, CodeTalker's motion VQ-VAE (stage 1, no audio) or its speech-to-code "
                   "predictor (stage 2, needs --vqvae)")
    p.add_argument("--data", required=True, help="dataset folder (wav/, vertices_npy/, templates.pkl)")
    p.add_argument("--dataset", choices=("vocaset", "BIWI", "biwi"),
                   help="layout (default: the folder's dataset.json, else guessed from the file names)")
    p.add_argument("--encoder",
                   help="Hugging Face wav2vec2/HuBERT folder (not used by codetalker-stage1) (config.json, preprocessor_config.json; its weights are "
                   "the starting point when present, else random init)")
    p.add_argument("--wav2sem", help="official Wav2Sem semantic encoder file (frozen; its fusion layer is trained)")
    p.add_argument("--wav2sem-config", help="config folder of the Wav2Sem encoder (default: --encoder)")
    p.add_argument("--init", help="start from a bundle folder or an official FaceFormer checkpoint")
    p.add_argument("--vqvae", help="codetalker-stage2: the stage-1 checkpoint (best.pth of a codetalker-stage1 run, "
                   "or an official stage-1 file); frozen")
    p.add_argument("--resume", help="continue a run from its last.pt (same --out, same options)")
    p.add_argument("--out", required=True, help="folder for logs and checkpoints")
    p.add_argument("--epochs", type=int, default=100, help="passes over the training split")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate")
    p.add_argument("--batch-size", type=int, default=1,
                   help="sequences per optimiser step and process (gradients averaged)")
    p.add_argument("--teacher-forcing", action="store_true",
                   help="train on the shifted ground truth (faster) instead of the official autoregressive loop")
    p.add_argument("--feature-dim", type=int, help="model width (default official: FaceFormer 64 VOCASET / 128 BIWI, CodeTalker 1024)")
    p.add_argument("--regions", help="folder with lve.txt/fdd.txt for validation LVE (default: <data>/regions)")
    p.add_argument("--seed", type=int, default=0, help="initialisation, shuffling and dropout seed")
    p.add_argument("--cpu", action="store_true", help="stay on the CPU even when CUDA is available")
    p.add_argument("--no-bundle", action="store_true", help="do not write bundle/ at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    p.set_defaults(func=_train)
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m training") -> int:
    """Parse and run one command; ``prog`` names the command line in usage and help texts."""
    args = build_parser(prog).parse_args(argv)
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
