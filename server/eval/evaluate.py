"""``python -m server evaluate``: the default model with and without Wav2Sem on held-out data.

Prints the README's table: per held-out split (unseen voices, unseen sentences, both), the
control error, the lip-closure rate on /p b m/, and the near-homophone separation score,
for the decoder trained with Wav2Sem and the one trained without (same seed and budget).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..controls import MOTION_FPS
from ..data.visemes import bilabial_closure_rate
from .metrics import control_error, separation_scores

VARIANTS = {"wav2sem": True, "plain": False}


def evaluate_models(models: dict, held: dict[str, list]) -> dict:
    from ..train.decoder import decode

    results: dict = {}
    for split, examples in held.items():
        if not examples:
            continue
        results[split] = {}
        for variant, model in models.items():
            items = []
            for e in examples:
                pred = decode(model, e, semantic=VARIANTS[variant]).numpy()
                items.append({"clip": e.clip, "pred": pred, "target": e.targets.numpy()})
            closure = [bilabial_closure_rate(i["pred"], [tuple(p) for p in i["clip"]["phones"]], MOTION_FPS)
                       for i in items]
            closure = [c for c in closure if c == c]  # clips without bilabials give NaN
            sep = separation_scores(items)
            results[split][variant] = {
                "clips": len(items),
                "control_mae": float(np.mean([control_error(i["pred"], i["target"]) for i in items])),
                "closure_rate": float(np.mean(closure)) if closure else None,
                "separation": float(np.mean(sep)) if sep else None,
                "pairs": len(sep),
            }
    return results


def table(results: dict) -> str:
    rows = ["| held-out split | clips | decoder | control MAE | /p b m/ closure | near-homophone separation (pairs) |",
            "|---|---|---|---|---|---|"]
    names = {"test_voice": "unseen voices", "test_sentence": "unseen sentences", "test_both": "unseen both"}
    for split, variants in results.items():
        for variant, m in variants.items():
            sep = f"{m['separation']:.3f} ({m['pairs']})" if m["separation"] is not None else "-"
            closure = f"{m['closure_rate']:.3f}" if m["closure_rate"] is not None else "-"
            label = "with Wav2Sem" if variant == "wav2sem" else "without"
            rows.append(f"| {names.get(split, split)} | {m['clips']} | {label} | {m['control_mae']:.4f} | "
                        f"{closure} | {sep} |")
    return "\n".join(rows)


def main(bundle: str, corpus: str | None, speech: list[str]) -> str:
    from ..models.bundle import load_bundle, read_meta
    from ..train.data import load_examples
    from ..train.recipe import HELD_OUT

    meta = read_meta(bundle)
    recipe = meta.get("provenance", {}).get("recipe", {})
    corpus = corpus or recipe.get("corpus")
    if not corpus:
        raise SystemExit("error: the bundle records no corpus; pass --corpus.")
    if not (Path(corpus) / "clips.jsonl").is_file():
        from ..data.corpus import build_corpus

        build_corpus(corpus, n_sentences=recipe["sentences"], voices=recipe["voices"].split(","),
                     seed=recipe["seed"], **recipe.get("corpus_args", {}))
    examples = load_examples(corpus, set(HELD_OUT))
    held = {s: [e for e in examples if e.clip["split"] == s] for s in HELD_OUT}
    models = {"wav2sem": load_bundle(bundle)}
    if meta.get("plain"):
        models["plain"] = load_bundle(bundle, variant="plain")
    results = evaluate_models(models, held)
    text = table(results)
    if speech:
        from .real_speech import closure_on_real_speech

        lines = ["", "| real speech | bilabials | decoder | /p b m/ closure |", "|---|---|---|---|"]
        for wav in speech:
            for variant, model in models.items():
                rate, n = closure_on_real_speech(model, wav, semantic=VARIANTS[variant])
                label = "with Wav2Sem" if variant == "wav2sem" else "without"
                lines.append(f"| {Path(wav).name} | {n} | {label} | {rate:.3f} |")
        text += "\n" + "\n".join(lines)
    print(text)
    return text
