"""What transcript-assisted mode changes: audio only vs (a) closures vs (b) the text's sentence vector.

``python -m training.eval.transcript [--bundle B] [--speech WAV=TEXT ...] [--voices ...]`` prints the
README's table. Each clip is animated four ways by the same bundle, from the same aligned transcript:

* audio only: what ``infer`` writes without ``--text``;
* (a): closures enforced at the aligned /p b m/ (``server.transcript.enforce_closures``);
* (b): the teacher's embedding of the transcript fused instead of the audio-predicted vector;
* (a)+(b): both, which is what ``infer --text`` writes.

A transcript the aligner rejects falls back to audio only in every column, as ``infer`` does.
Metrics, pooled over the phones of all clips (``closure_rate`` and ``false_closure_rate``):
/p b m/ closure on the *reference* phones (synthetic speech: the engine's own timings, so
independent of the aligner; real speech: PocketSphinx given the true transcript, the same
aligner as (a), so (a)'s closure there is 1 by construction), and false closure on vowels
(a vowel of 60 ms or more during which the lips never open).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from wav2sem_contract.controls import CONTROLS, MOTION_FPS
from wav2sem_contract.lipsync import CLOSED_THRESHOLD, closure_hits

VOWELS = ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW")
CLOSE = CONTROLS.index("mouthClose")
# Sentences of our own, rich in /p b m/ and open vowels between them; none is in the training corpus.
SENTENCES = (
    "Bob bought a big blue boat for his mother.",
    "Please pass me the maple syrup, Pam.",
    "My brother plays the trumpet in a brass band.",
    "Maybe the problem is simpler than it seems.",
    "Her bright umbrella flapped in the bitter wind.",
    "We met the mayor by the post office at noon.",
    "Put the apples in the basket by the lamp.",
    "The puppy jumped up and bumped the lamp.",
)
# Unseen by the default's training (flite awb, espeak-ng Scottish) plus one seen voice per engine.
VOICES = ("flite:awb", "flite:slt", "festival:kal_diphone", "espeak:en-us", "espeak:en-gb-scotland")
VARIANTS = ("audio only", "(a) closures", "(b) text vector", "(a)+(b)")
# Vowels shorter than this are not scored for false closure. With the 60 ms floor the training
# targets (training/data/visemes.py) score 0 on the clips below; without it 0.09.
MIN_VOWEL_S = 0.06


def false_closures(close: np.ndarray, phones: Iterable[Sequence], fps: float, threshold: float = CLOSED_THRESHOLD,
                   min_vowel_s: float = MIN_VOWEL_S) -> list[bool]:
    """Per vowel of ``min_vowel_s`` or longer that contains a frame: is mouthClose above ``threshold`` at
    every one of its frames (the lips never open for it)? Shorter vowels are left out: next to a /p b m/
    their one or two frames are closed in the training targets too."""
    out = []
    for p, s, e in ((str(q[0]), float(q[1]), float(q[2])) for q in phones):
        if p not in VOWELS or e - s < min_vowel_s:
            continue
        k0, k1 = max(0, math.ceil(s * fps - 1e-9)), min(len(close), math.ceil(e * fps - 1e-9))
        if k1 > k0:
            out.append(bool(np.all(close[k0:k1] > threshold)))
    return out


def animate_four_ways(bundle, audio: np.ndarray, text: str) -> tuple[dict[str, np.ndarray], object, float]:
    """The four variants' control weights (T, K) for one clip, the transcript alignment used, and the
    cosine between the audio-predicted semantic vector and the teacher's embedding of the text."""
    from server.audio import normalize
    from server.models.bundle import LoadedBundle
    from server.transcript import align_transcript, enforce_closures, teacher_vector

    assert isinstance(bundle, LoadedBundle)
    model = bundle.model
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    # as the pipeline feeds the encoder: normalised only where the encoder reads normalised input
    normalised = bundle.normalize_audio and model.audio_encoder.normalized_input
    x = torch.from_numpy(normalize(audio) if normalised else audio)
    style = model.style_weights()
    found = align_transcript(audio, text)
    teacher = teacher_vector(text)
    heard = []  # the vector the semantic encoder predicts from the audio (what (b) replaces)
    hook = model.semantic.project.register_forward_hook(lambda mod, args, out: heard.append(args[0][0].clone()))
    try:
        with torch.inference_mode():
            plain = model.generate(x, style, semantic=True).float().clamp(0, 1).numpy()
    finally:
        hook.remove()
    cosine = float(torch.nn.functional.cosine_similarity(heard[0], teacher, dim=0))
    with torch.inference_mode():
        given = model.generate(x, style, semantic=True, semantic_vector=teacher).float().clamp(0, 1).numpy()
    if not found.ok:  # what infer does: the transcript is not used at all
        return dict.fromkeys(VARIANTS, plain), found, cosine
    names = list(model.spec.control_names)
    return {
        "audio only": plain,
        "(a) closures": enforce_closures(plain, names, found.phones, model.spec.fps)[0],
        "(b) text vector": given,
        "(a)+(b)": enforce_closures(given, names, found.phones, model.spec.fps)[0],
    }, found, cosine


def evaluate_clips(bundle, clips: list[tuple[str, np.ndarray, str, list]]) -> dict:
    """``clips``: (name, 16 kHz audio, transcript, reference phones). Pooled rates per variant."""
    hits: dict[str, list[bool]] = {v: [] for v in VARIANTS}
    false: dict[str, list[bool]] = {v: [] for v in VARIANTS}
    moved: dict[str, list[float]] = {v: [] for v in VARIANTS}  # mean |change| of the controls vs audio only
    fallbacks, cosines = [], []
    for name, audio, text, phones in clips:
        out, found, cosine = animate_four_ways(bundle, audio, text)
        cosines.append(cosine)
        if not found.ok:
            fallbacks.append(f"{name}: {found.notice}")
        for variant, weights in out.items():
            hits[variant] += closure_hits(weights[:, CLOSE], phones, MOTION_FPS)
            false[variant] += false_closures(weights[:, CLOSE], phones, MOTION_FPS)
            moved[variant].append(float(np.abs(weights - out["audio only"]).mean()))
    return {"clips": len(clips), "hits": hits, "false": false, "moved": moved, "cosines": cosines,
            "fallbacks": fallbacks}


def pooled(results: list[dict]) -> dict:
    """Several ``evaluate_clips`` results as one (their phones pooled)."""
    return {"clips": sum(r["clips"] for r in results),
            "hits": {v: [h for r in results for h in r["hits"][v]] for v in VARIANTS},
            "false": {v: [f for r in results for f in r["false"][v]] for v in VARIANTS},
            "moved": {v: [m for r in results for m in r["moved"][v]] for v in VARIANTS},
            "cosines": [c for r in results for c in r["cosines"]],
            "fallbacks": [f for r in results for f in r["fallbacks"]]}


def rates(result: dict) -> dict[str, tuple[float, float]]:
    """Per variant: (/p b m/ closure rate, false closure rate on vowels); NaN where there are none."""
    def mean(values: list[bool]) -> float:
        return float(np.mean(values)) if values else float("nan")

    return {v: (mean(result["hits"][v]), mean(result["false"][v])) for v in VARIANTS}


def synthetic_clips(voices: Sequence[str] = VOICES, sentences: Sequence[str] = SENTENCES) -> list:
    """TTS clips with their engines' own phone timings (voices not installed here are skipped)."""
    from ..data.voices import synthesize, voice_available

    clips = []
    for voice in voices:
        try:
            available = voice_available(voice)
        except Exception:  # an engine that is not installed at all
            available = False
        if not available:
            continue
        for text in sentences:
            audio, _, phones = synthesize(voice, text)
            clips.append((f"{voice} {text[:20]}", audio, text, [tuple(p) for p in phones]))
    return clips


def real_clip(wav: str, text: str) -> tuple:
    """A recording with reference phones from PocketSphinx given the true transcript."""
    from server.align import align
    from server.audio import load_audio

    audio = load_audio(wav)
    return (wav, audio, text, align(audio, text)[1])


def table(rows: dict[str, dict]) -> str:
    lines = ["| speech | clips | /p b m/ | vowels | " + " | ".join(VARIANTS) + " | controls moved by (a) / (b) "
             "| cosine audio vector : text vector |",
             "|---|---|---|---|" + "---|" * len(VARIANTS) + "---|---|"]
    for label, r in rows.items():
        cells = [f"{c:.3f} / {f:.3f}" for c, f in rates(r).values()]
        n_b, n_v = len(r["hits"][VARIANTS[0]]), len(r["false"][VARIANTS[0]])
        moved = " / ".join(f"{np.mean(r['moved'][v]):.4f}" for v in ("(a) closures", "(b) text vector"))
        lines.append(f"| {label} | {r['clips']} | {n_b} | {n_v} | " + " | ".join(cells)
                     + f" | {moved} | {np.mean(r['cosines']):.2f} |")
    lines.append("")
    lines.append("Cells: /p b m/ closure rate / false closure rate on vowels; controls moved: mean |change| of the "
                 "16 controls against audio only (each in [0, 1]).")
    lines += [f"fallback: {f}" for f in dict.fromkeys(f for r in rows.values() for f in r["fallbacks"])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m training.eval.transcript", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", help="model bundle (default: the embedded default)")
    parser.add_argument("--speech", nargs="*", default=[], help="real speech as WAV=TRANSCRIPT")
    parser.add_argument("--voices", default=",".join(VOICES), help="TTS voices, comma-separated")
    args = parser.parse_args(argv)
    from server.models.bundle import default_bundle, load_bundle

    bundle = load_bundle(args.bundle or str(default_bundle()))
    rows = {}
    by_voice: dict[str, list] = {}
    for clip in synthetic_clips([v for v in args.voices.split(",") if v]):
        by_voice.setdefault(clip[0].split()[0], []).append(clip)
    for voice, clips in by_voice.items():
        rows[f"synthetic, {voice}"] = evaluate_clips(bundle, clips)
    if len(by_voice) > 1:
        rows["synthetic, all voices"] = pooled(list(rows.values()))
    for spec in args.speech:
        wav, _, text = spec.partition("=")
        rows[f"real, {wav.rsplit('/', 1)[-1]}"] = evaluate_clips(bundle, [real_clip(wav, text)])
    text = table(rows)
    print(text)
    return text


if __name__ == "__main__":
    main()
