"""Metrics for control-space lip sync.

* control error: mean absolute error over frames and controls (controls are in [0, 1]);
* lip-closure rate on /p b m/: share of bilabial phones during which the predicted
  mouthClose reaches the threshold at some frame (``visemes.bilabial_closure_rate``);
* near-homophone separation: for the two members of a pair spoken by the same voice in the
  same carrier sentence, the distance between the predicted mean controls over the phones
  where the two utterances differ, divided by the same distance for the targets. 1 means
  the model separates the words as much as the targets do; 0 means it averages them.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from wav2sem_contract.controls import MOTION_FPS


def control_error(pred: np.ndarray, target: np.ndarray) -> float:
    n = min(len(pred), len(target))
    return float(np.abs(pred[:n] - target[:n]).mean())


def differing_span(phones_a: list, phones_b: list) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """Time spans (in each utterance) of the phones where two phone sequences differ."""
    a, b = [p[0] for p in phones_a], [p[0] for p in phones_b]
    if a == b:
        return None
    lo = 0
    while lo < min(len(a), len(b)) and a[lo] == b[lo]:
        lo += 1
    hi = 0
    while hi < min(len(a), len(b)) - lo and a[-1 - hi] == b[-1 - hi]:
        hi += 1
    span_a = (phones_a[lo][1], phones_a[len(a) - hi - 1][2]) if len(a) - hi > lo else None
    span_b = (phones_b[lo][1], phones_b[len(b) - hi - 1][2]) if len(b) - hi > lo else None
    if span_a is None or span_b is None:
        return None
    return span_a, span_b


def _mean_over(curves: np.ndarray, span: tuple[float, float], fps: float) -> np.ndarray:
    lo, hi = int(np.floor(span[0] * fps)), int(np.ceil(span[1] * fps))
    lo, hi = max(0, lo), max(lo + 1, min(len(curves), hi))
    return curves[lo:hi].mean(0)


def separation_scores(items: list[dict], fps: float = MOTION_FPS) -> list[float]:
    """``items``: dicts with clip (pair, member, voice, text, phones), pred, target.

    Utterances are matched by (pair, voice, carrier text with the member word removed).
    """
    groups: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for item in items:
        clip = item["clip"]
        if not clip.get("pair"):
            continue
        carrier = clip["text"].replace(clip["member"], "_")
        groups[(clip["pair"], clip["voice"], carrier)][clip["member"]] = item
    scores = []
    for members in groups.values():
        if len(members) != 2:
            continue
        a, b = members.values()
        spans = differing_span(a["clip"]["phones"], b["clip"]["phones"])
        if spans is None:
            continue
        target_gap = np.linalg.norm(_mean_over(a["target"], spans[0], fps) - _mean_over(b["target"], spans[1], fps))
        if target_gap < 1e-3:
            continue
        pred_gap = np.linalg.norm(_mean_over(a["pred"], spans[0], fps) - _mean_over(b["pred"], spans[1], fps))
        scores.append(float(pred_gap / target_gap))
    return scores
