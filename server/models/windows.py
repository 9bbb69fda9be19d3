"""Overlapping windows with linear cross-fades, for models that must run on bounded lengths."""

from __future__ import annotations

import torch


def spans(n: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """Evenly spaced windows of ``size`` covering ``n`` frames, neighbours overlapping >= ``overlap``."""
    if n <= size:
        return [(0, n)]
    count = -(-(n - overlap) // (size - overlap))
    starts = [round(k * (n - size) / (count - 1)) for k in range(count)]
    return [(s, s + size) for s in starts]


def fade_weights(windows: list[tuple[int, int]], k: int, device=None) -> torch.Tensor:
    """(len, 1) weights of window ``k``: ramps over its overlaps with both neighbours."""
    s, e = windows[k]
    w = torch.ones(e - s, 1, device=device)
    if k > 0:
        ov = windows[k - 1][1] - s
        w[:ov, 0] = torch.arange(1, ov + 1, device=device) / (ov + 1)
    if k + 1 < len(windows):
        ov = e - windows[k + 1][0]
        fade = 1 - torch.arange(1, ov + 1, device=device) / (ov + 1)
        w[e - s - ov :, 0] = torch.minimum(w[e - s - ov :, 0], fade)  # overlaps may meet
    return w


def blend(windows: list[tuple[int, int]], parts: list[torch.Tensor], n: int) -> torch.Tensor:
    """Cross-fade per-window outputs (len_k, D) into one (n, D) sequence."""
    device = parts[0].device
    out = torch.zeros(n, parts[0].shape[1], device=device, dtype=parts[0].dtype)
    total = torch.zeros(n, 1, device=device, dtype=parts[0].dtype)
    for k, ((s, e), part) in enumerate(zip(windows, parts, strict=True)):
        w = fade_weights(windows, k, device).to(part.dtype)
        out[s:e] += part * w
        total[s:e] += w
    return out / total
