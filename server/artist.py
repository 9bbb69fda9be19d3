"""Artist controls, applied in one place after the model (wav2sem_contract.artist has the ranges).

* strength scales the deviation from the neutral pose: control weights (rest = 0) and vertex offsets
  (rest = no offset; for a compact result its bias and weights, so bias + weights @ basis scales too);
* gains scale named controls (control results only: a vertex model has no named controls);
* smoothing is a zero-phase Gaussian along time (its standard deviation in seconds): symmetric,
  so nothing lags the audio. On controls it must not smear the bilabial closures that make /p b m/
  readable: frames where the model closes the lips (mouthClose > 0.5) keep their values, blended
  back into the smoothed curves over the same Gaussian, so the lips still shut there.

Control weights end clipped to [0, 1]. With the defaults nothing is touched (the arrays stay the
model's own, bit for bit).
"""

from __future__ import annotations

import math

import numpy as np

from wav2sem_contract.artist import DEFAULT_STRENGTH, check_gain_names

CLOSED = 0.5  # mouthClose above this: the lips are shut (the threshold the transcript tests use too)


def gaussian(x: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Zero-phase Gaussian along axis 0 (edges padded with their own values: no ramp in from 0). Each
    output is a convex combination of inputs, so weights in [0, 1] stay there."""
    if sigma_frames < 1e-3 or len(x) < 2:
        return np.asarray(x, dtype=np.float64)
    radius = max(1, math.ceil(3.0 * sigma_frames))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_frames) ** 2)
    taps /= taps.sum()
    padded = np.pad(np.asarray(x, dtype=np.float64), [(radius, radius)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    out = np.zeros(x.shape, dtype=np.float64)
    for i, tap in enumerate(taps):
        out += tap * padded[i : i + len(x)]
    return out


def apply_artist(kind: str, arrays: dict[str, np.ndarray], fps: float, strength: float = DEFAULT_STRENGTH,
                 smoothing: float = 0.0, gains: dict[str, float] | None = None) -> dict:
    """Apply the artist controls to ``arrays`` in place; returns what the provenance records (the values
    used, so a re-run with them reproduces the result, and a note where something did not apply)."""
    gains = dict(gains or {})
    info: dict = {"strength": float(strength), "smoothing": float(smoothing), "gains": gains}
    if kind == "controls":
        names = [str(n) for n in arrays["names"]]
        check_gain_names(gains, names)  # a typo is refused, not silently ignored (the pipeline checks earlier too)
    elif gains:
        info["note"] = "gains apply to control results only (this model writes vertex offsets); not applied"
    sigma = smoothing * fps
    if strength == DEFAULT_STRENGTH and sigma < 1e-3 and not (gains and kind == "controls"):
        return info  # the defaults: the model's arrays untouched
    if kind == "controls":
        w = arrays["weights"].astype(np.float64)
        out = w * strength
        for name, gain in gains.items():
            out[:, names.index(name)] *= gain
        if sigma >= 1e-3:
            smooth = gaussian(out, sigma)
            if "mouthClose" in names:
                shut = (w[:, names.index("mouthClose")] > CLOSED).astype(np.float64)
                keep = np.maximum(shut, gaussian(shut, sigma))[:, None]  # 1 at a closure, easing off around it
                smooth = keep * out + (1.0 - keep) * smooth
                info["closures_kept"] = int(np.count_nonzero(np.diff(np.concatenate([[0.0], shut])) > 0))
            out = smooth
        arrays["weights"] = np.clip(out, 0.0, 1.0).astype(arrays["weights"].dtype)
    elif kind == "offsets":
        arrays["offsets"] = gaussian(arrays["offsets"] * np.float64(strength), sigma).astype(arrays["offsets"].dtype)
    else:  # compact: offsets = bias + weights @ basis; both scale, and the time smoothing is the weights'
        arrays["weights"] = gaussian(arrays["weights"] * np.float64(strength), sigma).astype(arrays["weights"].dtype)
        arrays["bias"] = (arrays["bias"] * strength).astype(arrays["bias"].dtype)
        if "max_error" in arrays:  # the basis's error scales with the offsets
            arrays["max_error"] = np.asarray(arrays["max_error"] * strength, dtype=np.asarray(arrays["max_error"]).dtype)
    return info
