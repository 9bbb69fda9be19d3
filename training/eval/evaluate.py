"""``python -m training evaluate``: the default model with and without Wav2Sem on held-out data.

Prints the README's table: per held-out split (unseen voices, unseen sentences, both), the
control error, the lip-closure rate on /p b m/, and the near-homophone separation score,
for the decoder trained with Wav2Sem and the one trained without (same seed and budget).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wav2sem_contract.controls import MOTION_FPS

from ..data.visemes import bilabial_closure_rate
from ..decoder import decode
from ..examples import load_examples
from ..splits import HELD_OUT
from .metrics import control_error, separation_scores

VARIANTS = {"wav2sem": True, "plain": False}


def evaluate_models(models: dict, held: dict[str, list]) -> dict:
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


def _cell(values: list, fmt: str) -> str:
    """One metric over seeds: the value, or mean ± standard deviation when there are several."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(float(np.mean(values)), fmt)} ± {format(float(np.std(values, ddof=1)), fmt)}"


def table(runs: list[dict]) -> str:
    """The README's table from one evaluation per training seed (mean ± sd over seeds)."""
    seeds = f" ({len(runs)} seeds, mean ± sd)" if len(runs) > 1 else ""
    rows = [f"| held-out split | clips | decoder | control MAE{seeds} | /p b m/ closure | "
            "near-homophone separation (pairs) |", "|---|---|---|---|---|---|"]
    names = {"test_voice": "unseen voices", "test_sentence": "unseen sentences", "test_both": "unseen both"}
    for split, variants in runs[0].items():
        for variant, m in variants.items():
            per_seed = [r[split][variant] for r in runs]
            label = "with Wav2Sem" if variant == "wav2sem" else "without"
            sep = _cell([x["separation"] for x in per_seed], ".3f")
            rows.append(f"| {names.get(split, split)} | {m['clips']} | {label} | "
                        f"{_cell([x['control_mae'] for x in per_seed], '.4f')} | "
                        f"{_cell([x['closure_rate'] for x in per_seed], '.3f')} | "
                        f"{sep} ({m['pairs']}) |")
    return "\n".join(rows)


def _held_out(meta: dict, corpus: str | None) -> dict[str, list]:
    recipe = meta.get("provenance", {}).get("recipe", {})
    corpus = corpus or recipe.get("corpus")
    if not corpus:
        raise SystemExit("error: the bundle records no corpus; pass --corpus.")
    if not (Path(corpus) / "clips.jsonl").is_file():
        from ..data.corpus import build_corpus

        build_corpus(corpus, n_sentences=recipe["sentences"], voices=recipe["voices"].split(","),
                     seed=recipe.get("corpus_seed", recipe["seed"]), **recipe.get("corpus_args", {}))
    examples = load_examples(corpus, set(HELD_OUT))
    return {s: [e for e in examples if e.clip["split"] == s] for s in HELD_OUT}


def main(bundles: list[str], corpus: str | None, speech: list[str]) -> str:
    """Evaluate one bundle per training seed (same corpus) and print the table."""
    from server.models.bundle import load_bundle, read_meta

    held = None
    runs, speech_rows = [], {}
    for bundle in bundles:
        meta = read_meta(bundle)
        held = held or _held_out(meta, corpus)
        loaded = {"wav2sem": load_bundle(bundle)}
        if meta.get("plain"):
            loaded["plain"] = load_bundle(bundle, variant="plain")
        runs.append(evaluate_models({name: b.model for name, b in loaded.items()}, held))
        if speech:
            from .real_speech import closure_on_real_speech

            for wav in speech:
                for variant, one in loaded.items():
                    rate, n = closure_on_real_speech(one, wav, semantic=VARIANTS[variant])
                    speech_rows.setdefault((Path(wav).name, n, variant), []).append(rate)
    text = table(runs)
    if speech_rows:
        lines = ["", "| real speech | bilabials (aligned) | decoder | /p b m/ closure |", "|---|---|---|---|"]
        for (name, n, variant), rates in speech_rows.items():
            label = "with Wav2Sem" if variant == "wav2sem" else "without"
            lines.append(f"| {name} | {n} | {label} | {_cell(rates, '.3f')} |")
        text += "\n" + "\n".join(lines)
    print(text)
    return text
