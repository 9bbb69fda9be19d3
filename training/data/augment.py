"""Waveform augmentation for the training split. None of it moves speech in time, so the
engines' phone timings stay exact: reverberation is causal and cut to the input length, and the
voice shift keeps the clip's duration (below).

numpy, plus the ``sox`` program for the voice shift. Parameters are drawn once (``draw_augment``) from
a seeded generator, recorded in the clip's metadata, and applied by ``apply_augment``, which is
deterministic given those parameters.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from typing import Any

import numpy as np

from wav2sem_contract.errors import ModelError

SAMPLE_RATE = 16000

# Probability of each augmentation for a training clip; each is drawn independently.
DEFAULT_PROBS = {"reverb": 0.25, "band": 0.15, "noise": 0.35, "gain": 0.5, "voice": 0.45}
SNR_DB = (10.0, 30.0)
RT60_S = (0.1, 0.5)
BAND_HZ = (300.0, 3400.0)
GAIN_DB = (-6.0, 6.0)
# Voice shift: pitch and formants scaled together by one factor (a shorter or longer vocal tract),
# mostly upwards: the engines' voices are mostly male, and female and child voices lose the most
# closures on real speech (README, real-speech table).
VOICE_FACTOR = (0.92, 1.30)
LIMIT = 0.99  # a clip louder than this after augmentation is scaled down (recorded as "limited")


def draw_augment(rng: np.random.Generator, probs: dict[str, float] | None = None) -> dict[str, Any]:
    """Draw the augmentation of one clip: ``{}`` or some of noise / reverb / band / gain with parameters."""
    probs = DEFAULT_PROBS if probs is None else probs
    # Always draw every number, so that changing one probability does not shift the others' values.
    u = {k: float(rng.random()) for k in ("reverb", "band", "noise", "gain")}
    rt60 = float(rng.uniform(*RT60_S))
    reverb_seed = int(rng.integers(2**31))
    snr = float(rng.uniform(*SNR_DB))
    colour = "pink" if rng.random() < 0.5 else "white"
    noise_seed = int(rng.integers(2**31))
    gain = float(rng.uniform(*GAIN_DB))
    # drawn last, after every older number, so adding it left the other augmentations' values as they were
    u["voice"] = float(rng.random())
    factor = float(np.exp(rng.uniform(*np.log(VOICE_FACTOR))))
    out: dict[str, Any] = {}
    if u["voice"] < probs.get("voice", 0.0):
        out["voice"] = {"factor": round(factor, 3)}
    if u["reverb"] < probs.get("reverb", 0.0):
        out["reverb"] = {"rt60": round(rt60, 3), "seed": reverb_seed}
    if u["band"] < probs.get("band", 0.0):
        out["band"] = {"low_hz": BAND_HZ[0], "high_hz": BAND_HZ[1]}
    if u["noise"] < probs.get("noise", 0.0):
        out["noise"] = {"snr_db": round(snr, 2), "colour": colour, "seed": noise_seed}
    if u["gain"] < probs.get("gain", 0.0):
        out["gain"] = {"db": round(gain, 2)}
    return out


def shift_voice(x: np.ndarray, factor: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Pitch and formants times ``factor``, duration kept: sox resamples (``speed``, which moves
    every frequency and the tempo) and then restores the tempo by WSOLA (``tempo``, which keeps the
    spectrum). WSOLA moves no segment by more than its ~80 ms window, so phone timings hold to
    within a frame; the result is cut or padded to the input's length."""
    cmd = ["sox", "-q", "-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1", "-r", str(sr), "-",
           "-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1", "-r", str(sr), "-",
           "speed", f"{factor:.4f}", "rate", "-h", str(sr), "tempo", "-s", f"{1.0 / factor:.4f}"]
    if shutil.which("sox") is None:
        raise ModelError("sox_missing", "The voice-shift augmentation needs the sox program, which is not installed.",
                         "Install it (scripts/system-packages.sh, or apt-get install sox).")
    # bounded: sox runs far faster than real time, so a minute plus the clip's length is a hang
    try:
        done = subprocess.run(cmd, input=np.asarray(x, np.float32).tobytes(), capture_output=True, check=True,
                              timeout=60 + x.size / sr)
    except subprocess.TimeoutExpired as exc:
        raise ModelError("sox_failed", f"sox did not finish the voice shift within {exc.timeout:.0f} s.",
                         "Check that sox runs (sox --version); run the corpus build again.") from exc
    except subprocess.CalledProcessError as exc:
        said = exc.stderr.decode(errors="replace").strip().splitlines()
        raise ModelError("sox_failed", f"sox failed on the voice shift (exit {exc.returncode}"
                         f"{': ' + said[-1] if said else ''}).",
                         "Check that sox runs (sox --version); reinstall it with scripts/system-packages.sh.") from exc
    y = np.frombuffer(done.stdout, dtype=np.float32).astype(np.float64)
    return np.pad(y, (0, max(x.size - y.size, 0)))[: x.size]


def reverb_ir(rt60: float, seed: int, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A synthetic room: a direct path plus exponentially decaying noise (60 dB down at ``rt60``)."""
    n = max(int(rt60 * sr), 1)
    t = np.arange(n) / sr
    rng = np.random.default_rng(seed)
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)  # ln(1000): 60 dB in amplitude
    tail[0] = 0.0
    # Direct-to-reverberant ratio falls as the room gets more reverberant: about 0 dB at RT60 0.3 s.
    tail *= 1.0 / max(np.sqrt(np.sum(tail**2)), 1e-12) * math.sqrt(rt60 / 0.3)
    ir = tail
    ir[0] = 1.0
    return ir.astype(np.float64)


def _fft_convolve_causal(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    n = x.size + h.size - 1
    size = 1 << (n - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)
    return y[: x.size]


def band_limit(x: np.ndarray, low_hz: float, high_hz: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Zero-phase band-pass by FFT masking, with 100 Hz raised-cosine skirts (telephone-like)."""
    n = x.size
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(n, 1.0 / sr)
    skirt = 100.0
    mask = np.ones_like(f)
    lo = np.clip((f - (low_hz - skirt)) / skirt, 0.0, 1.0)
    hi = np.clip(((high_hz + skirt) - f) / skirt, 0.0, 1.0)
    mask = 0.5 - 0.5 * np.cos(np.pi * lo) if low_hz > 0 else mask
    mask = mask * (0.5 - 0.5 * np.cos(np.pi * hi))
    return np.fft.irfft(spec * mask, n)


def coloured_noise(n: int, colour: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(n)
    if colour == "white":
        return white
    spec = np.fft.rfft(white)
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spec / np.sqrt(f), n)  # 1/f power


def apply_augment(audio: np.ndarray, params: dict[str, Any], sr: int = SAMPLE_RATE) -> tuple[np.ndarray, dict]:
    """Apply recorded parameters in a fixed order: voice, reverb, band, noise, gain, then a limiter.

    Returns (audio float32, params) where params gains ``limited`` (the factor) if the limiter acted.
    """
    params = {k: dict(v) for k, v in params.items()}
    x = np.asarray(audio, dtype=np.float64)
    if x.size == 0 or not params:
        return np.asarray(audio, dtype=np.float32), params
    peak_in = float(np.max(np.abs(x))) or 1.0
    if "voice" in params:
        x = shift_voice(x, params["voice"]["factor"], sr)
        x *= peak_in / (float(np.max(np.abs(x))) or 1.0)
    if "reverb" in params:
        p = params["reverb"]
        x = _fft_convolve_causal(x, reverb_ir(p["rt60"], p["seed"], sr))
        x *= peak_in / (float(np.max(np.abs(x))) or 1.0)
    if "band" in params:
        p = params["band"]
        x = band_limit(x, p["low_hz"], p["high_hz"], sr)
        x *= peak_in / (float(np.max(np.abs(x))) or 1.0)
    if "noise" in params:
        p = params["noise"]
        noise = coloured_noise(x.size, p["colour"], p["seed"])
        # SNR against the speech power over its active part (frames within 40 dB of the loudest).
        frame = max(sr // 50, 1)
        usable = x[: x.size - x.size % frame] if x.size >= frame else x
        energies = (usable.reshape(-1, frame) ** 2).mean(axis=1) if usable.size >= frame else np.array([np.mean(x**2)])
        active = energies[energies > energies.max() * 1e-4]
        p_speech = float(active.mean()) if active.size else float(np.mean(x**2))
        p_noise = float(np.mean(noise**2)) or 1.0
        x = x + noise * math.sqrt(p_speech / (p_noise * 10 ** (p["snr_db"] / 10)))
    if "gain" in params:
        x = x * 10 ** (params["gain"]["db"] / 20)
    peak = float(np.max(np.abs(x)))
    if peak > LIMIT:
        factor = LIMIT / peak
        x = x * factor
        params["limited"] = round(factor, 4)
    return x.astype(np.float32), params
