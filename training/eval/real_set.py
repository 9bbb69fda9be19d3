"""Lip sync on real speech: the development set in ``assets/real_speech`` (17 clips, LibriSpeech,
CMU ARCTIC, LibriVox, one public-domain speech; ``SOURCES.md`` there), by speaker sex.

``python -m training.eval.real_set [--bundle B [B2 ...]] [--folder F]`` prints the README's tables
(several bundles, one per training seed: the Wav2Sem rows also as mean ± sd over them). Per clip,
PocketSphinx force-aligns the true transcript (``server/align.py``); those phones are the reference.
The clip is animated by the bundle as ``transcript.animate_four_ways`` does (audio only, (a) closures,
(b) the text's vector, (a)+(b)), once more with Wav2Sem off (the bundle's decoder trained without
the semantic vector, as ``infer --no-semantic`` runs it), and once audio only with closures at the
recognised words' /p b m/ (``infer --close-recognised``). Metrics, pooled over a group's phones:

* closure: share of /p b m/ where mouthClose passes 0.5 at one of its frames (``wav2sem_contract.lipsync``);
* false closure: share of vowels of 60 ms or more whose frames all keep mouthClose above 0.5
  (``transcript.false_closures``);
* jaw r: Pearson correlation, over the aligned vowels, between the mean jawOpen on a vowel's frames
  and the vowel's openness (``VOWEL_OPENNESS``).

None of these recordings is used in training: the training corpus is synthesised speech only
(``training/data/corpus.py``), and ``tests/test_real_set.py`` checks the corpus code never names this folder.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from wav2sem_contract.controls import CONTROLS, MOTION_FPS
from wav2sem_contract.lipsync import closure_hits, span_frames

from .transcript import CLOSE, VARIANTS, false_closures

FOLDER = Path(__file__).resolve().parents[2] / "assets" / "real_speech"
JAW = CONTROLS.index("jawOpen")
# Three levels of how far the jaw opens for each ARPAbet vowel (the brief's table; visemes.py holds
# target shapes, not heights): open 1, mid 0.5, close 0. Diphthongs go by their first, longer part.
VOWEL_OPENNESS = {
    "AA": 1.0, "AE": 1.0, "AO": 1.0, "AW": 1.0, "AY": 1.0,
    "AH": 0.5, "EH": 0.5, "ER": 0.5, "EY": 0.5, "OW": 0.5, "OY": 0.5, "AX": 0.5,
    "IY": 0.0, "IH": 0.0, "UW": 0.0, "UH": 0.0,
}
OFF = "Wav2Sem off"
HEARD = "audio + heard closures"  # infer --close-recognised: closures at the recognised words' /p b m/
ALL_VARIANTS = (*VARIANTS, OFF, HEARD)
MODES = (("audio only", "audio only"), (HEARD, "audio only + `--close-recognised`"),
         ("(a)+(b)", "with transcript ((a)+(b))"))
SEXES = ("F", "M")
# the Wav2Sem table's rows: (variant, label)
ABLATION_ROWS = ((OFF, "off (decoder trained without it)"), ("audio only", "audio-predicted vector"),
                 ("(b) text vector", "true-text vector"), ("(a) closures", "audio vector + (a)"),
                 ("(a)+(b)", "true-text vector + (a)"))


def load_manifest(folder: str | Path = FOLDER) -> list[dict]:
    """The clips of ``folder/manifest.json``, each with ``path`` (absolute) added."""
    folder = Path(folder)
    data = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    return [{**clip, "path": str(folder / clip["file"])} for clip in data["clips"]]


def vowel_jaw(jaw: np.ndarray, phones: Iterable[Sequence], fps: float = MOTION_FPS) -> list[tuple[float, float]]:
    """(openness, mean jawOpen over the vowel's frames) for each aligned vowel that contains a frame."""
    out = []
    for p in phones:
        name = str(p[0])
        if name in VOWEL_OPENNESS:
            frames = span_frames(p[1], p[2], len(jaw), fps)
            if frames.size:
                out.append((VOWEL_OPENNESS[name], float(np.mean(np.asarray(jaw)[frames]))))
    return out


def pearson(pairs: Sequence[tuple[float, float]]) -> float:
    """Pearson r of the pairs; NaN with fewer than 3 or when either side does not vary."""
    if len(pairs) < 3:
        return float("nan")
    a, b = np.asarray(pairs, dtype=np.float64).T
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else float("nan")


def score(weights: np.ndarray, phones: list, fps: float = MOTION_FPS) -> dict[str, list]:
    """One clip's per-phone outcomes: closure hits, false closures, (openness, jaw) per vowel."""
    return {"hits": closure_hits(weights[:, CLOSE], phones, fps),
            "false": false_closures(weights[:, CLOSE], phones, fps),
            "jaw": vowel_jaw(weights[:, JAW], phones, fps)}


def animate(bundle, plain, clip: dict) -> tuple[dict[str, np.ndarray], list, object]:
    """Every variant's weights for one clip, the reference phones, and the transcript alignment used."""
    from server.align import align
    from server.audio import load_audio
    from server.pipeline import run
    from wav2sem_contract.request import InferRequest

    from .transcript import animate_four_ways

    audio = load_audio(clip["path"])
    # the reference: the transcript in the aligner's dictionary spelling where the manifest gives one
    phones = align(audio, clip.get("align_text") or clip["transcript"])[1]
    out, found, _ = animate_four_ways(bundle, audio, clip["transcript"])
    off = run(plain, InferRequest(audio=clip["path"], semantic=False))
    out[OFF] = np.asarray(off["weights"], dtype=np.float32)
    heard = run(bundle, InferRequest(audio=clip["path"], close_recognised=True, report=False))
    out[HEARD] = np.asarray(heard["weights"], dtype=np.float32)
    return out, phones, found


def summarise(per_clip: list[dict], clips: list[dict]) -> dict[str, dict[str, dict]]:
    """{group: {variant: {closure, false, jaw_r, n_bilabials, n_vowels, n_jaw, clips}}}; groups F, M, all."""
    groups = {s: [i for i, c in enumerate(clips) if c["sex"] == s] for s in SEXES}
    groups["all"] = list(range(len(clips)))
    table: dict[str, dict[str, dict]] = {}
    for group, idx in groups.items():
        table[group] = {}
        for variant in ALL_VARIANTS:
            hits = [h for i in idx for h in per_clip[i][variant]["hits"]]
            false = [f for i in idx for f in per_clip[i][variant]["false"]]
            jaw = [j for i in idx for j in per_clip[i][variant]["jaw"]]
            table[group][variant] = {
                "clips": len(idx), "n_bilabials": len(hits), "n_vowels": len(false), "n_jaw": len(jaw),
                "closure": float(np.mean(hits)) if hits else float("nan"),
                "false": float(np.mean(false)) if false else float("nan"),
                "jaw_r": pearson(jaw)}
    return table


def evaluate(bundle, plain, clips: list[dict]) -> tuple[dict, list[str]]:
    """The summary table and one line per clip whose transcript the aligner rejected."""
    per_clip, fallbacks = [], []
    for clip in clips:
        out, phones, found = animate(bundle, plain, clip)
        if not found.ok:
            fallbacks.append(f"{clip['id']}: {found.notice}")
        per_clip.append({v: score(w, phones) for v, w in out.items()})
        print(f"{clip['id']}: " + ", ".join(
            f"{v} {np.mean(per_clip[-1][v]['hits']) if per_clip[-1][v]['hits'] else float('nan'):.2f}"
            for v in ("audio only", "(a)+(b)", OFF)), flush=True)
    return summarise(per_clip, clips), fallbacks


def tables(summary: dict, clips: list[dict]) -> str:
    def cell(m: dict) -> str:
        return f"{m['closure']:.3f} | {m['false']:.3f} | {m['jaw_r']:.2f}"

    speakers = {g: len({c["speaker"] for c in clips if g == "all" or c["sex"] == g}) for g in (*SEXES, "all")}
    names = {"F": "female", "M": "male", "all": "all (incl. sex unknown)"}
    lines = ["| speakers | clips | /p b m/ | vowels (false / jaw) | mode | closure | false closure | jaw r |",
             "|---|---|---|---|---|---|---|---|"]
    for group in (*SEXES, "all"):
        for variant, label in MODES:
            m = summary[group][variant]
            lines.append(f"| {names[group]} ({speakers[group]}) | {m['clips']} | {m['n_bilabials']} | "
                         f"{m['n_vowels']} / {m['n_jaw']} | {label} | {cell(m)} |")
    lines += ["", "| Wav2Sem (all clips) | closure | false closure | jaw r |", "|---|---|---|---|"]
    for variant, label in ABLATION_ROWS:
        m = summary["all"][variant]
        lines.append(f"| {label} | {cell(m)} |")
    return "\n".join(lines)


def seeds_table(summaries: list[dict]) -> str:
    """The Wav2Sem rows over several training seeds (same corpus and set): mean ± sd of each metric."""
    def cell(variant: str, key: str, digits: int) -> str:
        values = np.array([s["all"][variant][key] for s in summaries], dtype=np.float64)
        return f"{values.mean():.{digits}f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.{digits}f}"

    lines = [f"| Wav2Sem (all clips, {len(summaries)} seeds, mean ± sd) | closure | false closure | jaw r |",
             "|---|---|---|---|"]
    for variant, label in ABLATION_ROWS:
        lines.append(f"| {label} | {cell(variant, 'closure', 3)} | {cell(variant, 'false', 3)} | "
                     f"{cell(variant, 'jaw_r', 2)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m training.eval.real_set", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", nargs="+",
                        help="model bundle (default: the embedded default); several (training seeds): a table per "
                             "bundle, then the Wav2Sem rows as mean ± sd over them")
    parser.add_argument("--folder", default=str(FOLDER), help="a folder with manifest.json and its clips")
    parser.add_argument("--json", help="also write the summary here")
    args = parser.parse_args(argv)
    from server.models.bundle import default_bundle, load_bundle

    clips = load_manifest(args.folder)
    summaries, parts = [], []
    for path in args.bundle or [str(default_bundle())]:
        summary, fallbacks = evaluate(load_bundle(path), load_bundle(path, variant="plain"), clips)
        summaries.append(summary)
        parts.append(f"{path}:\n\n" + tables(summary, clips) + "".join(f"\nfallback: {f}" for f in fallbacks))
    if len(summaries) > 1:
        parts.append(seeds_table(summaries))
    text = "\n\n".join(parts)
    if args.json:
        data = summaries[0] if len(summaries) == 1 else summaries
        Path(args.json).write_text(json.dumps(data, indent=1), encoding="utf-8")
    print(text)
    return text


if __name__ == "__main__":
    main()
