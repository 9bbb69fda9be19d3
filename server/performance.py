"""The performance layer: blinks, brows, eyes, cheeks, nose and head motion from the audio (numpy only).

One job: turn a mono recording into procedural, seed-deterministic motion beyond the mouth.

* Prosody (``analyse``): RMS energy and F0 by normalised autocorrelation on 30 ms windows every
  10 ms; speech is energy above a level between the recording's noise floor and its loud speech;
  a *pause* is a quiet span of at least 250 ms (shorter gaps are stop closures, not pauses); a
  *phrase end* is where speech stops before a pause; *prominence* (a stressed, high syllable) is
  the mean of the energy and the pitch z-scores on voiced frames.
* Blinks: a hazard process calibrated to 23 blinks/min over the clip (conversation: 26/min in
  Bentivoglio et al. 1997, ~20-26/min in Doughty 2001), four times as likely per second inside
  pauses, and a blink right after a phrase end with probability 0.6 (speakers blink at pauses and
  the ends of utterances: Nakano & Kitazawa 2010 saw listeners' blinks lock to exactly these
  breakpoints of the speaker). Durations 150-400 ms (mean 250 ms); closing takes 30 % of it, the
  lid stays shut 10 %, opening takes 60 % (closing is faster than opening: VanderWerf et al. 2003).
  At least 0.5 s between blink starts.
* Brow raise (``browInnerUp``, ``browOuterUp_L/R``) and eye widening on prominent syllables (70 %
  of them, spaced 0.35 s or more); a slight ``browDown`` after a phrase whose pitch falls at the end.
* Cheeks (``cheekSquint``, with a little ``eyeSquint``) and nose (``noseSneer``) follow the speech
  energy envelope and the prominence: they move with the mouth's effort, never the mouth itself.
* Head: slow seeded drift in nod, tilt and turn (a few degrees), a small nod on each prominent
  syllable and a settle at phrase ends.

``intensity`` scales everything except the blinks' depth (half a blink reads as a twitch, so a
blink always closes the lid); the seed fixes every random draw, and the draws do not depend on the
intensity, so the same seed gives the same blinks and events at any intensity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wav2sem_contract.performance import PERFORMANCE_CONTROLS

HOP_SECONDS = 0.01
WINDOW_HOPS = 3  # 30 ms analysis windows (analyse pads and sums for exactly three hops)
MIN_PAUSE_SECONDS = 0.25
F0_RANGE = (70.0, 400.0)
VOICING_THRESHOLD = 0.5  # normalised autocorrelation peak

BLINKS_PER_MINUTE = 23.0
PAUSE_BOOST = 4.0  # blink hazard per second in pauses relative to speech
PHRASE_END_BLINK = 0.6  # probability of a blink just after a phrase end
BLINK_SECONDS = (0.25, 0.05, 0.15, 0.4)  # mean, sd, min, max
BLINK_PHASES = (0.3, 0.1, 0.6)  # closing, closed, opening: fractions of the duration
MIN_BLINK_INTERVAL = 0.5

BROW_CHANCE = 0.7
MIN_ACCENT_INTERVAL = 0.35
PROMINENCE_PEAK = 1.0
HEAD_AMPLITUDE = {"nod": 0.02, "tilt": 0.02, "turn": 0.025}  # radians of drift (sd)
ACCENT_NOD = 0.025  # radians at a prominence of 2
EDGE_SECONDS = 0.4  # fade in/out at the clip's ends


@dataclass
class Prosody:
    rate: float  # analysis frames per second
    energy_db: np.ndarray  # (N,)
    f0: np.ndarray  # (N,) Hz, 0 where unvoiced
    active: np.ndarray  # (N,) speech
    prominence: np.ndarray  # (N,) z-score mix of energy and pitch, 0 where unvoiced
    pauses: list[tuple[float, float]] = field(default_factory=list)  # seconds, each >= MIN_PAUSE_SECONDS
    phrase_ends: list[float] = field(default_factory=list)  # seconds: speech stops, a pause follows

    @property
    def seconds(self) -> float:
        return len(self.energy_db) / self.rate

    def in_pause(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, float)
        out = np.zeros(t.shape, bool)
        for a, b in self.pauses:
            out |= (t >= a) & (t < b)
        return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def _moving_average(x: np.ndarray, n: int) -> np.ndarray:
    if n <= 1:
        return x
    kernel = np.ones(n) / n
    return np.convolve(np.pad(x, (n // 2, n - 1 - n // 2), mode="edge"), kernel, mode="valid")


def analyse(audio: np.ndarray, sr: int) -> Prosody:
    """Energy, voicing, F0, pauses, phrase ends and prominence of a mono recording."""
    audio = np.asarray(audio, np.float32)
    hop = max(1, round(sr * HOP_SECONDS))
    win = WINDOW_HOPS * hop  # whole hops, so that window sums are sums of hop sums
    n = max(1, int(np.ceil(len(audio) / hop)))
    # window k covers hops k-1, k, k+1 of the audio (centred on hop k); zeros beyond both ends
    padded = np.zeros((n + 2) * hop, np.float32)
    padded[hop : hop + len(audio)] = audio
    blocks = padded.reshape(-1, hop)
    s1, s2 = blocks.sum(1, dtype=np.float64), np.einsum("ij,ij->i", blocks, blocks).astype(np.float64)
    mean = (s1[:-2] + s1[1:-1] + s1[2:]) / win
    energy_db = 10 * np.log10(np.maximum((s2[:-2] + s2[1:-1] + s2[2:]) / win - mean**2, 0.0) + 1e-12)

    floor, loud = np.percentile(energy_db, 10), np.percentile(energy_db, 95)
    active = energy_db > max(floor + 0.3 * (loud - floor), loud - 45.0)
    for a, b in _runs(~active):  # a gap shorter than a pause is a stop or a breath inside the phrase
        if a > 0 and b < n and (b - a) * HOP_SECONDS < MIN_PAUSE_SECONDS:
            active[a:b] = True
    for a, b in _runs(active):  # a click is not speech
        if (b - a) * HOP_SECONDS < 0.05:
            active[a:b] = False

    # F0: autocorrelation of the Hann-windowed frame divided by the window's own (Boersma's correction),
    # in blocks so that a 10-minute clip never holds all its spectra at once
    window = np.hanning(win)
    size = 1 << int(np.ceil(np.log2(2 * win)))
    ac_window = np.fft.irfft(np.abs(np.fft.rfft(window, size)) ** 2, size)[:win]
    lo, hi = int(sr / F0_RANGE[1]), min(int(sr / F0_RANGE[0]), win - 1)
    lag, peak = np.ones(n, int), np.zeros(n)
    frames = np.lib.stride_tricks.sliding_window_view(padded, win)[::hop][:n]  # a view: no copy
    todo = np.flatnonzero(active)  # only speech can be voiced
    for a in range(0, len(todo), 2048):
        rows = todo[a : a + 2048]
        block = frames[rows].astype(np.float64) - mean[rows, None]
        ac = np.fft.irfft(np.abs(np.fft.rfft(block * window, size)) ** 2, size)[:, : hi + 1]
        r = (ac[:, lo : hi + 1] / np.maximum(ac[:, :1], 1e-12)) / (ac_window[lo : hi + 1] / ac_window[0])
        best = np.argmax(r, axis=1)
        # a maximum at the edge of the search range is a slope (low rumble, breath), not a period
        edge = (best == 0) | (best == hi - lo)
        lag[rows], peak[rows] = lo + best, np.where(edge, 0.0, r[np.arange(len(r)), best])
    voiced = active & (peak > VOICING_THRESHOLD)
    f0 = np.where(voiced, sr / lag, 0.0)

    prominence = np.zeros(n)
    if voiced.sum() >= 5:
        semitones = 12 * np.log2(np.where(voiced, f0, 1.0) / np.median(f0[voiced]))
        e = energy_db[voiced]
        z_energy = (energy_db - e.mean()) / (e.std() + 1e-6)
        s = semitones[voiced]
        z_pitch = (semitones - np.median(s)) / (s.std() + 1e-6)
        prominence = np.where(voiced, 0.5 * z_energy + 0.5 * np.clip(z_pitch, -3, 3), 0.0)
        prominence = _moving_average(prominence, 5)
        v = prominence[voiced]  # in units of its own spread: PROMINENCE_PEAK picks the top ~15 % of voiced frames
        prominence = np.where(voiced, (prominence - v.mean()) / (v.std() + 1e-6), 0.0)

    rate = 1.0 / HOP_SECONDS
    pauses = [(a / rate, b / rate) for a, b in _runs(~active) if (b - a) / rate >= MIN_PAUSE_SECONDS]
    phrase_ends = [b / rate for _, b in _runs(active)]  # each is followed by a pause or the end of the clip
    return Prosody(rate, energy_db, f0, active, prominence, pauses, phrase_ends)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _pulse(t: np.ndarray, start: float, rise: float, hold: float, fall: float) -> np.ndarray:
    """0 -> 1 over ``rise`` from ``start``, 1 for ``hold``, back to 0 over ``fall`` (eased)."""
    up = _smoothstep((t - start) / rise)
    down = 1 - _smoothstep((t - start - rise - hold) / fall)
    return np.minimum(up, down)


def blink_starts(prosody: Prosody, rng: np.random.Generator) -> list[tuple[float, float]]:
    """(start, duration) of each blink: the hazard process described in the module's docstring."""
    dt = 1.0 / prosody.rate
    n = len(prosody.energy_db)
    total = n * dt
    pause = prosody.in_pause(np.arange(n) * dt)
    t_pause = pause.sum() * dt
    ends = prosody.phrase_ends
    # every draw is made up front and in a fixed order, so nothing the later steps decide changes them
    u = rng.random(n)
    end_draws = rng.random((len(ends), 2))
    durations = np.clip(rng.normal(BLINK_SECONDS[0], BLINK_SECONDS[1], n + len(ends)), *BLINK_SECONDS[2:])
    target = BLINKS_PER_MINUTE / 60 * total
    expected_end = PHRASE_END_BLINK * len(ends)
    rate_speech = max(target - expected_end, 0.3 * target) / max((total - t_pause) + PAUSE_BOOST * t_pause, dt)
    hazard = np.where(pause, PAUSE_BOOST * rate_speech, rate_speech) * dt
    forced = {}
    for (chance, delay), e in zip(end_draws, ends, strict=True):
        if chance < PHRASE_END_BLINK:
            forced[int(round((e + 0.05 + 0.2 * delay) / dt))] = True

    def simulate(scale: float) -> list[tuple[float, float]]:
        starts: list[tuple[float, float]] = []
        last = -np.inf
        for i in range(n):
            t = i * dt
            if t - last < MIN_BLINK_INTERVAL:
                continue
            if forced.get(i) or u[i] < scale * hazard[i]:
                starts.append((t, float(durations[len(starts)])))
                last = t
        return starts

    # The refractory interval and blinks that land on a phrase end's blink lower the count below the
    # target; scale the hazard (same draws, so still deterministic) until the clip comes out near it.
    scale, starts = 1.0, simulate(1.0)
    for _ in range(4):
        if len(starts) >= target - 0.5:
            break
        scale = min(scale * target / max(len(starts), 1), 3.0)
        starts = simulate(scale)
    return starts


def _blink_curve(times: np.ndarray, blinks: list[tuple[float, float]], fps: float) -> np.ndarray:
    out = np.zeros_like(times)
    close, shut, opening = BLINK_PHASES
    for start, d in blinks:
        shut_at = round((start + close * d) * fps) / fps  # the lid is fully shut on a frame, at any rate
        out = np.maximum(out, _pulse(times, shut_at - close * d, close * d, max(shut * d, 0.5 / fps), opening * d))
    return out


def _drift(rng: np.random.Generator, frames: int, fps: float, seconds: float = 0.7) -> np.ndarray:
    """Smooth noise with unit standard deviation (Gaussian-filtered white noise)."""
    sigma = max(seconds * fps, 1.0)
    half = int(3 * sigma)
    white = rng.standard_normal(frames + 2 * half)
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    smooth = np.convolve(white, kernel / kernel.sum(), mode="valid")[:frames]
    return (smooth - smooth.mean()) / (smooth.std() + 1e-9) if frames > 1 else np.zeros(frames)


@dataclass
class Layer:
    weights: np.ndarray  # (T, P) float32 in [0, 1], columns named by PERFORMANCE_CONTROLS
    head: np.ndarray  # (T, 3) float32 radians: nod, tilt, turn
    blinks: list[tuple[float, float]]  # (start s, duration s)
    prosody: Prosody

    def info(self) -> dict:
        minutes = self.prosody.seconds / 60
        return {"blinks": len(self.blinks), "blinks_per_minute": round(len(self.blinks) / max(minutes, 1e-9), 1),
                "pauses": len(self.prosody.pauses)}


def performance_layer(audio: np.ndarray, sr: int, frames: int, fps: float, intensity: float, seed: int) -> Layer:
    """The layer for ``frames`` frames at ``fps`` (frame i at i / fps seconds of the audio)."""
    prosody = analyse(audio, sr)
    rng = np.random.default_rng(seed)
    times = np.arange(frames) / fps
    grid = np.arange(len(prosody.energy_db)) / prosody.rate
    col = {name: i for i, name in enumerate(PERFORMANCE_CONTROLS)}
    weights = np.zeros((frames, len(PERFORMANCE_CONTROLS)))

    end = frames / fps
    # a blink the clip would cut short would jump open on its last frame: only whole ones
    blinks = [(t, d) for t, d in blink_starts(prosody, rng) if t + d <= end]
    blink = _blink_curve(times, blinks, fps)

    # accents: prominence peaks, the highest first, no two closer than MIN_ACCENT_INTERVAL
    p = prosody.prominence
    peaks = np.flatnonzero((p[1:-1] > p[:-2]) & (p[1:-1] >= p[2:]) & (p[1:-1] > PROMINENCE_PEAK)) + 1
    accents: list[int] = []
    blocked = np.zeros(len(p), bool)
    reach = int(np.ceil(MIN_ACCENT_INTERVAL * prosody.rate)) - 1
    for i in peaks[np.argsort(-p[peaks], kind="stable")]:
        if not blocked[i]:
            accents.append(int(i))
            blocked[max(i - reach, 0) : i + reach + 1] = True
    accents.sort()
    accent_draws = rng.random((len(accents), 3))
    brow = np.zeros(frames)
    nods = np.zeros(frames)
    asym = np.zeros(frames)
    for i, (chance, size, side) in zip(accents, accent_draws, strict=True):
        t0, strength = grid[i] - 0.08, min(p[i], 3.0) / 2  # the brow starts rising just before the peak
        shape = _pulse(times, t0, 0.12, 0.1, 0.45)
        nods = np.maximum(nods, strength * _pulse(times, t0, 0.15, 0.05, 0.35))
        if chance < BROW_CHANCE:
            amp = np.clip((0.25 + 0.25 * (p[i] - PROMINENCE_PEAK)) * (0.8 + 0.4 * size), 0.15, 0.65)
            brow = np.maximum(brow, amp * shape)
            asym += (side - 0.5) * 0.2 * amp * shape

    # phrase ends with a falling pitch (the last 300 ms of voicing 2 semitones or more below the phrase's median)
    frown = np.zeros(frames)
    settle = np.zeros(frames)
    voiced = prosody.f0 > 0
    for end in prosody.phrase_ends:
        k = int(end * prosody.rate)
        tail, phrase = slice(max(k - 30, 0), k), slice(max(k - 200, 0), k)
        settle = np.maximum(settle, _pulse(times, end - 0.2, 0.25, 0.1, 0.6))
        if voiced[tail].sum() >= 5 and voiced[phrase].sum() >= 20:
            drop = 12 * np.log2(np.median(prosody.f0[tail][voiced[tail]]) / np.median(prosody.f0[phrase][voiced[phrase]]))
            if drop <= -2:
                frown = np.maximum(frown, 0.2 * _pulse(times, end - 0.25, 0.2, 0.2, 0.6))

    loud = np.where(prosody.active, prosody.energy_db, np.nan)
    envelope = np.zeros(len(grid))
    if np.isfinite(loud).any():
        lo, hi = np.nanpercentile(loud, 5), np.nanpercentile(loud, 95)
        envelope = np.where(prosody.active, np.clip((prosody.energy_db - lo) / max(hi - lo, 1e-6), 0, 1), 0.0)
    envelope = np.interp(times, grid, _moving_average(envelope, 15))
    emphasis = np.interp(times, grid, np.clip(p, 0, 2) / 2)

    weights[:, col["eyeBlink_L"]] = weights[:, col["eyeBlink_R"]] = blink if intensity > 0 else 0.0
    scaled = {
        "eyeWide_L": 0.5 * brow * (1 - blink), "eyeWide_R": 0.5 * brow * (1 - blink),
        "browInnerUp": brow, "browOuterUp_L": 0.8 * brow + asym, "browOuterUp_R": 0.8 * brow - asym,
        "browDown_L": frown, "browDown_R": frown,
        "cheekSquint_L": 0.15 * envelope, "cheekSquint_R": 0.15 * envelope,
        "eyeSquint_L": 0.06 * envelope * (1 - blink), "eyeSquint_R": 0.06 * envelope * (1 - blink),
        "noseSneer_L": 0.08 * emphasis * envelope, "noseSneer_R": 0.08 * emphasis * envelope,
    }
    for name, values in scaled.items():
        weights[:, col[name]] = intensity * values

    head = np.stack([
        HEAD_AMPLITUDE["nod"] * _drift(rng, frames, fps, 1.2) + ACCENT_NOD * nods + 0.015 * settle,
        HEAD_AMPLITUDE["tilt"] * _drift(rng, frames, fps, 1.5),
        HEAD_AMPLITUDE["turn"] * _drift(rng, frames, fps, 1.8),
    ], axis=1)
    # the tracks rest at 0 before and after the clip: fade in and out over EDGE_SECONDS rather than jump
    taper = _smoothstep(times / EDGE_SECONDS) * _smoothstep((end - 1 / fps - times) / EDGE_SECONDS)
    weights[:, [col[n] for n in scaled]] *= taper[:, None]
    head *= taper[:, None]
    return Layer(np.clip(weights, 0.0, 1.0).astype(np.float32), (intensity * head).astype(np.float32), blinks, prosody)
