"""Timed phones -> control curves (training.data.visemes): the target table, the dominance-function
coarticulation (held bilabial closures, anticipatory rounding), distinct near-homophone vowels,
and the lip-closure metric. numpy only, fast."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.data import visemes as V
from wav2sem_contract.controls import CONTROLS, MOTION_FPS, PHONES

FPS = MOTION_FPS
CI = {n: i for i, n in enumerate(CONTROLS)}
JAW, CLOSE, PUCKER = CI["jawOpen"], CI["mouthClose"], CI["mouthPucker"]
NEUTRAL = V.phone_targets()["SIL"]

# sheep/ship, beat/bit, pool/pull, cot/caught, man/mean, pen/pan
VOWEL_PAIRS = [("IY", "IH"), ("UW", "UH"), ("AA", "AO"), ("AE", "IY"), ("EH", "AE")]


def utterance(spec, t0=0.25, tail=0.4):
    """SIL, the (phone, duration) sequence from t0, SIL for ``tail`` s; and a frame count covering it."""
    out, t = [("SIL", 0.0, t0)], t0
    for p, d in spec:
        out.append((p, t, t + d))
        t += d
    out.append(("SIL", t, t + tail))
    return out, int(math.ceil((t + tail) * FPS))


def frames_in(phone, n):
    _, s, e = phone
    k = np.arange(n)
    return k[(k / FPS >= s) & (k / FPS < e)]


# ------------------------------------------------------------------------------------------ targets
def test_target_table():
    T = V.phone_targets()
    assert sorted(T) == sorted(PHONES)
    for p, v in T.items():
        assert v.shape == (len(CONTROLS),), p
        assert np.all((v >= 0) & (v <= 1)), p
        for name in CONTROLS:
            if name.endswith("_L"):
                assert v[CI[name]] == v[CI[name[:-2] + "_R"]], (p, name)
    for p in ("P", "B", "M"):
        assert T[p][CLOSE] >= 0.9 and 0.05 <= T[p][JAW] <= 0.1
    for p in ("P", "B"):
        assert 0.2 <= T[p][CI["mouthPress_L"]] <= 0.6
    for p in ("F", "V"):
        assert T[p][CI["mouthRollLower"]] >= 0.6 and T[p][CI["mouthUpperUp_L"]] > 0
    assert T["UW"][PUCKER] >= 0.7 and T["W"][PUCKER] >= 0.7
    assert T["OW"][CI["mouthFunnel"]] >= 0.5 and T["AO"][CI["mouthFunnel"]] >= 0.5
    spread = {p: T[p][CI["mouthStretch_L"]] + T[p][CI["mouthSmile_L"]] for p in ("IY", "IH", "EY", "EH")}
    assert max(spread, key=spread.get) == "IY" and min(spread.values()) > 0
    assert max(T, key=lambda p: T[p][JAW]) == "AA"
    assert T["AE"][JAW] >= 0.5 and T["AE"][CI["mouthStretch_L"]] >= 0.3
    for p in ("SH", "ZH", "CH", "JH"):
        assert T[p][CI["mouthFunnel"]] >= 0.4
    assert np.all(NEUTRAL[np.arange(len(CONTROLS)) != CLOSE] == 0) and 0 < NEUTRAL[CLOSE] <= 0.15


@pytest.mark.parametrize("a,b", VOWEL_PAIRS)
def test_near_homophone_targets_apart(a, b):
    T = V.phone_targets()
    assert np.linalg.norm(T[a] - T[b]) >= 0.25
    assert V.pair_distance(a, b) == pytest.approx(float(np.linalg.norm(T[a] - T[b])))


def test_targets_are_copies():
    V.phone_targets()["AA"][:] = 0
    assert V.phone_targets()["AA"][JAW] > 0


# ------------------------------------------------------------------------------------------ curves
@pytest.mark.parametrize(
    "spec",
    [
        [("AA", 0.12), ("M", 0.1), ("AA", 0.12)],
        [("IY", 0.12), ("B", 0.08), ("IY", 0.12)],
        [("UW", 0.12), ("P", 0.09), ("UW", 0.12)],
        [("AA", 0.1), ("M", 0.04), ("AA", 0.1)],  # short closures between open vowels
        [("AE", 0.06), ("B", 0.035), ("AA", 0.06)],
        [("AW", 0.05), ("P", 0.034), ("AY", 0.05)],
        [("M", 0.07), ("AA", 0.1), ("M", 0.05), ("AA", 0.15)],  # mama
        [("B", 0.06), ("AA", 0.12), ("B", 0.07)],  # Bob
        [("P", 0.08), ("AA", 0.1), ("P", 0.04), ("AH", 0.08)],  # papa
    ],
)
def test_bilabial_closure_held(spec):
    for offset in np.linspace(0.0, 1.0 / FPS, 7):  # wherever the frame grid falls
        phones, n = utterance(spec, t0=0.25 + offset)
        y = V.controls_from_phones(phones, n, FPS)
        for ph in phones:
            if ph[0] in V.BILABIALS:
                k = frames_in(ph, n)
                assert k.size >= 1
                ok = (y[k, CLOSE] >= 0.8) & (y[k, JAW] <= 0.15)
                assert ok.any(), (ph, offset, y[k][:, [JAW, CLOSE]])
        assert V.bilabial_closure_rate(y, phones, FPS) == 1.0


def test_anticipatory_rounding():
    phones, n = utterance([("S", 0.1), ("UW", 0.15)])
    y = V.controls_from_phones(phones, n, FPS)
    s_frames = frames_in(phones[1], n)
    assert s_frames.size >= 2
    assert np.all(y[s_frames, PUCKER] > 0.1)
    # ... and it is the vowel's doing: before IY the S is not rounded
    phones_iy, _ = utterance([("S", 0.1), ("IY", 0.15)])
    y_iy = V.controls_from_phones(phones_iy, n, FPS)
    assert np.all(y_iy[s_frames, PUCKER] < 0.05)
    # the closure of a bilabial keeps the rounding around it (UW P UW: lips closed and rounded)
    phones, n = utterance([("UW", 0.12), ("P", 0.09), ("UW", 0.12)])
    y = V.controls_from_phones(phones, n, FPS)
    assert y[frames_in(phones[2], n), PUCKER].max() > 0.4


@pytest.mark.parametrize("a,b", VOWEL_PAIRS)
@pytest.mark.parametrize("context", [("SH", "P"), ("M", "N"), ("HH", "D"), ("K", "T")])
def test_near_homophone_curves_distinct(a, b, context):
    left, right = context
    pa, n = utterance([(left, 0.1), (a, 0.12), (right, 0.1)])
    pb, _ = utterance([(left, 0.1), (b, 0.12), (right, 0.1)])
    ya, yb = V.controls_from_phones(pa, n, FPS), V.controls_from_phones(pb, n, FPS)
    k = frames_in(pa[2], n)
    assert k.size >= 3
    assert float(np.linalg.norm(ya[k] - yb[k], axis=1).mean()) >= 0.2


def test_shape_dtype_range():
    rng = np.random.default_rng(0)
    phones, t = [], 0.0
    for _ in range(200):
        d = float(rng.uniform(0.02, 0.2))
        phones.append((PHONES[rng.integers(len(PHONES))], t, t + d))
        t += d
    n = int(t * FPS) + 20
    y = V.controls_from_phones(phones, n, FPS)
    assert y.shape == (n, len(CONTROLS)) and y.dtype == np.float32
    assert np.all(np.isfinite(y)) and y.min() >= 0 and y.max() <= 1
    for name in CONTROLS:
        if name.endswith("_L"):
            np.testing.assert_array_equal(y[:, CI[name]], y[:, CI[name[:-2] + "_R"]])
    assert V.controls_from_phones(phones, 0, FPS).shape == (0, len(CONTROLS))
    # phones past n_frames are simply not sampled
    np.testing.assert_allclose(V.controls_from_phones(phones, 30, FPS), y[:30], atol=1e-6)


def test_neutral_at_silence_and_after_the_last_phone():
    np.testing.assert_allclose(V.controls_from_phones([], 10, FPS), np.tile(NEUTRAL, (10, 1)), atol=1e-6)
    np.testing.assert_allclose(
        V.controls_from_phones([("SIL", 0.0, 1.0)], 30, FPS), np.tile(NEUTRAL, (30, 1)), atol=1e-6
    )
    phones = [("SIL", 0.0, 1.0), ("AA", 1.0, 1.2), ("SIL", 1.2, 2.2), ("UW", 2.2, 2.4), ("IY", 2.4, 2.5)]
    y = V.controls_from_phones(phones, int(3.5 * FPS), FPS)
    t = np.arange(len(y)) / FPS
    mid_pause = (t > 1.5) & (t < 1.9)
    np.testing.assert_allclose(y[mid_pause], np.tile(NEUTRAL, (mid_pause.sum(), 1)), atol=0.03)
    np.testing.assert_allclose(y[t < 0.7], np.tile(NEUTRAL, ((t < 0.7).sum(), 1)), atol=0.03)
    after = t > 2.9  # no phones at all there
    np.testing.assert_allclose(y[after], np.tile(NEUTRAL, (after.sum(), 1)), atol=0.03)
    assert y[(t >= 1.05) & (t < 1.15), JAW].min() > 0.5  # the vowels do open the mouth


def test_short_pause_is_bridged():
    phones, n = utterance([("AA", 0.15), ("SIL", 0.08), ("AA", 0.15)])
    y = V.controls_from_phones(phones, n, FPS)
    assert y[frames_in(phones[2], n), JAW].min() > 0.4


def test_curves_are_c1():
    """Refining the time grid 4x shrinks first differences ~4x (continuous) and second ones >8x (C1)."""
    phones = [("SIL", 0, 0.2), ("AA", 0.2, 0.3), ("B", 0.3, 0.34), ("AA", 0.34, 0.5), ("S", 0.5, 0.6)]
    phones += [("UW", 0.6, 0.75), ("F", 0.75, 0.8), ("OY", 0.8, 1.0), ("SIL", 1.0, 1.3)]
    d1, d2 = [], []
    for fps in (1000.0, 4000.0):
        y = V.controls_from_phones(phones, int(1.3 * fps), fps).astype(np.float64)
        d1.append(np.abs(np.diff(y, axis=0)).max())
        d2.append(np.abs(np.diff(y, 2, axis=0)).max())
    assert d1[1] < d1[0] / 3
    assert d2[1] < d2[0] / 8


def test_deterministic_and_order_free():
    phones, n = utterance([("M", 0.07), ("AY", 0.2), ("W", 0.06), ("ER", 0.15), ("CH", 0.1)])
    a = V.controls_from_phones(phones, n, FPS)
    b = V.controls_from_phones([list(p) for p in reversed(phones)], n, FPS)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, V.controls_from_phones(phones, n, FPS))


def test_unknown_phone_and_bad_timing():
    with pytest.raises(ValueError, match="XX"):
        V.controls_from_phones([("AA", 0, 0.1), ("XX", 0.1, 0.2)], 10, FPS)
    with pytest.raises(ValueError, match="AA1"):
        V.controls_from_phones([("AA1", 0, 0.1)], 10, FPS)
    with pytest.raises(ValueError, match="QQ"):
        V.closure_frames([("QQ", 0, 0.1)], 10, FPS)
    with pytest.raises(ValueError):
        V.controls_from_phones([("AA", 0.2, 0.1)], 10, FPS)


def test_dominance_function():
    t = np.array([0.0, 0.1, 0.2, 0.3, 0.4])
    d = V.dominance(t, center=0.2, half_width=0.05, alpha=2.0, lambda_left=0.1, lambda_right=0.05)
    assert d.shape == (5,)
    assert d[2] == pytest.approx(2.0)
    assert d[1] == pytest.approx(2.0 * math.exp(-((0.05 / 0.1) ** V.C_EXP)))
    assert d[3] == pytest.approx(2.0 * math.exp(-((0.05 / 0.05) ** V.C_EXP)))
    assert d[1] > d[3]  # anticipation reaches further than carry-over here
    pd = V.phone_dominance("B", 0.3, 0.34, np.array([0.3, 0.32, 0.4]))
    assert pd.shape == (3, len(CONTROLS))
    assert pd[0, CLOSE] == pd[1, CLOSE] > 10 * pd[2, CLOSE]  # held over the whole closure
    params = V.dominance_params("UW")
    assert params["lambda_left"][PUCKER] > params["lambda_right"][PUCKER]


# ------------------------------------------------------------------------------------------ metric
def test_closure_frames():
    phones = [("SIL", 0, 0.1), ("M", 0.1, 0.2), ("AA", 0.2, 0.3), ("P", 0.31, 0.32), ("B", 0.9, 1.1)]
    fr = V.closure_frames(phones, 30, 30.0)
    assert [f.tolist() for f in fr] == [[3, 4, 5], [], [27, 28, 29]]


def test_bilabial_closure_rate():
    phones, n = utterance([("M", 0.07), ("AA", 0.12), ("P", 0.05), ("IY", 0.1), ("B", 0.06), ("UW", 0.1)])
    y = V.controls_from_phones(phones, n, FPS)
    assert V.bilabial_closure_rate(y, phones, FPS) == 1.0
    assert V.bilabial_closure_rate(np.zeros_like(y), phones, FPS) == 0.0
    half = y.copy()
    half[frames_in(phones[1], n), CLOSE] = 0.0
    assert V.bilabial_closure_rate(half, phones, FPS) == pytest.approx(2 / 3)
    assert math.isnan(V.bilabial_closure_rate(y, [("AA", 0, 0.5)], FPS))
