"""Timed phones -> jaw/mouth control curves: the training targets of the small default lip-sync model.

numpy only, deterministic. Two parts: an articulatory target table (one control vector per phone)
and a Cohen-Massaro dominance-function coarticulation model that blends the targets over time.

Targets (``phone_targets``; values in [0, 1], L/R pairs equal, unnamed controls 0)::

    class                 phones            controls
    silence               SIL               all 0, mouthClose 0.1 (lips lightly together)
    bilabial              P B M             mouthClose 0.95-1, jawOpen 0.06-0.07, mouthPress .45/.35/.15
    labiodental           F V               mouthRollLower .75/.65 (lip tucked), mouthUpperUp .25/.2, jaw .12
    dental                TH DH             jaw .16-.18, mouthLowerDown .22-.25, mouthUpperUp ~.1 (teeth show)
    alveolar/velar        T D N S Z L K G NG HH   jaw .10-.25, lips neutral (S/Z a little stretch)
    postalveolar          SH ZH CH JH       mouthFunnel .45-.55, mouthPucker .30-.35, mouthUpperUp .15-.2
    rhotic / glides       R W Y             R: pucker .4 funnel .3; W: pucker .85 funnel .35; Y: stretch .4 smile .3
    rounded vowels        UW UH OW AO ER    UW pucker .8 funnel .45 jaw .07; UH pucker .3 funnel .3 jaw .15;
                                            OW funnel .6 pucker .35 jaw .4; AO funnel .55 pucker .2 jaw .62; ER .3/.25
    spread vowels         IY IH EY EH       IY stretch .55 smile .45 jaw .08; IH stretch .2 smile .08 jaw .18;
                                            EY stretch .38 smile .25 jaw .38; EH stretch .25 smile .1 jaw .4
    open vowels           AA AE AH          AA jaw .8; AE jaw .68 + stretch .38 + lowerDown .42/upperUp .25;
                                            AH jaw .45
    diphthongs            AW AY EY OW OY    nucleus = the table value, then an offglide (``offglide_targets``):
                                            AW -> rounded, AY/EY/OY -> spread, OW -> UW-like pucker

Near-homophone vowels are kept apart on purpose (Euclidean target distance, see ``pair_distance``):
IY/IH 0.75, UW/UH 0.53, AA/AO 0.69, AE/IY 0.96, EH/AE 0.53 (sheep/ship, pool/pull, cot/caught,
man/mean, pen/pan); 0.25 is the floor the tests hold them to.

Coarticulation (``controls_from_phones``), per control j, at time t::

    value_j(t) = sum_i D_ij(t) T_ij / sum_i D_ij(t)
    D_ij(t)    = alpha_ij * exp(-(tau_i(t) / lambda_ij)^c),   c = 1.5
    tau_i(t)   = max(0, a_i - t)   (before the phone: anticipation, lambda = lambda_left)
               = max(0, t - b_i)   (after it: carry-over,           lambda = lambda_right)
    [a_i, b_i] = c_i -/+ kappa_i * (end_i - start_i) / 2   (c_i = middle of the phone)

That is Cohen & Massaro's (1993) ``alpha exp(-theta |t - c|^c)`` with theta = lambda^-c, different
left/right rates, and a plateau of half-width kappa * half-duration around the center (kappa = 0 gives the
original form). Why the plateau and c = 1.5: a bilabial closure must be *held* across its whole segment
even when the one frame that samples a 34 ms closure falls at its edge (kappa = 1 for P/B/M), and with
c > 1 every D is C1 in t, so the blended curves are C1 without any post-hoc low-pass (which would smear a
one-frame closure away); no smoothing is applied.

Dominance parameters per phone class and control group (open: jawOpen, mouthLowerDown; close:
mouthClose, mouthPress; round: mouthFunnel, mouthPucker; spread: mouthStretch, mouthSmile; roll:
mouthRollLower/Upper, mouthUpperUp). Defaults alpha 1, lambda_left 0.07 s, lambda_right 0.06 s, kappa 0.5::

    bilabial      open/close alpha 30, lambda 0.012/0.012 (closure wins, sharply, whatever the neighbours);
                  round/spread alpha 0.2 (lips keep the neighbours' rounding or spreading while closed); kappa 1
    labiodental   roll alpha 8 (lambda .03/.03), open/close 3 (.04/.04), round/spread 0.4; kappa 0.8
    rounded vowel round alpha 2, lambda_left 0.14 s (anticipatory rounding reaches ~150-200 ms ahead,
                  Benguerel & Cowan 1974), lambda_right 0.08 s
    spread vowel  spread alpha 1.5, lambda .09/.07; round 1.5 (resists the neighbours' rounding)
    open vowel    round 1.5
    every vowel   open alpha 2: the vowel, not the consonants around it, sets the jaw on the vowel's
                  frames (with alpha 1 and the older jaw heights, the jaw's correlation with vowel
                  openness on real speech's aligned phones was 0.77; now 0.89, ``training.eval.real_set``)
    coronal/velar open 0.8 (S Z: 1.5, teeth must be close for a sibilant), close 0.5, round 0.15, spread 0.3,
                  roll 0.5 (TH DH: open and roll 1.5): the lips are free, so they take the neighbours' shape
    postalveolar  round alpha 3 (lambda .12/.08), open 1.2, spread 0.5; kappa 0.6
    R / W / Y     R round 1.5 (.12/.08), rest 0.8; W round 3 (.10/.08), kappa 0.6; Y spread 2
    HH            all 0.2, kappa 0.3 (takes the following vowel's shape)
    SIL           lambda .08/.08; alpha 0.15 up to 100 ms, rising linearly to 1.2 at 400 ms and longer;
                  plateau = the pause inset by 80 ms at each end (no kappa). A short pause is bridged by
                  its neighbours (lips stay where they were), a long one relaxes to neutral, and the mouth
                  starts moving ~80 ms before the sound after it.

Diphthongs are split: the first 60 % of the segment is the nucleus, the last 40 % the offglide, each a
dominance term of its own. Before the first phone and after the last one an implicit SIL (alpha 1.2)
extends without end, so frames beyond the phones relax to neutral; a tiny neutral background term
(alpha 1e-6) keeps the ratio defined in any gap. Phones are sorted by start time first.

Sampling: frame k samples t_k = k / fps (the instant the model's frame k is interpolated at), not the
middle of the frame interval. A phone [start, end) "contains" frame k when start <= k / fps < end.

Metric: ``bilabial_closure_rate`` is the share of P/B/M phones (those containing at least one frame,
see ``closure_frames``) during which the predicted mouthClose exceeds a threshold at some frame.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from wav2sem_contract import lipsync
from wav2sem_contract.controls import CONTROLS, MOTION_FPS, PHONES

C_EXP = 1.5  # the dominance exponent c
DIPHTHONG_SPLIT = 0.6  # share of a diphthong's segment given to its nucleus
BACKGROUND_ALPHA = 1e-6
WINDOW_S = 1.0  # dominance is cut to 0 beyond this distance (exp(-(1/0.14)^1.5) ~ 5e-9)
BILABIALS = ("P", "B", "M")
# Pauses: alpha 0.15 up to SIL_SHORT_S, rising linearly over SIL_RAMP_S to 0.15 * (1 + SIL_GAIN_MAX) = 1.2;
# the plateau stays SIL_MARGIN_S away from the neighbours (the lips move before the sound starts).
SIL_SHORT_S = 0.1
SIL_RAMP_S = 0.3
SIL_GAIN_MAX = 7.0
SIL_MARGIN_S = 0.08

_CI = {name: i for i, name in enumerate(CONTROLS)}
_GROUPS = {
    "open": ("jawOpen", "mouthLowerDown_L", "mouthLowerDown_R"),
    "close": ("mouthClose", "mouthPress_L", "mouthPress_R"),
    "round": ("mouthFunnel", "mouthPucker"),
    "spread": ("mouthStretch_L", "mouthStretch_R", "mouthSmile_L", "mouthSmile_R"),
    "roll": ("mouthRollLower", "mouthRollUpper", "mouthUpperUp_L", "mouthUpperUp_R"),
}
assert sorted(c for g in _GROUPS.values() for c in g) == sorted(CONTROLS)

# ------------------------------------------------------------------------------------------ targets
# Short names; a name without _L/_R that has a pair sets both sides.
# fmt: off
_T: dict[str, dict[str, float]] = {
    "SIL": {"mouthClose": 0.10},
    # open vowels
    "AA": {"jawOpen": 0.80, "mouthLowerDown": 0.30, "mouthUpperUp": 0.10},
    "AE": {"jawOpen": 0.68, "mouthStretch": 0.38, "mouthSmile": 0.15, "mouthUpperUp": 0.25, "mouthLowerDown": 0.42},
    "AH": {"jawOpen": 0.45, "mouthLowerDown": 0.15, "mouthUpperUp": 0.05},
    "AW": {"jawOpen": 0.72, "mouthLowerDown": 0.25, "mouthUpperUp": 0.10, "mouthFunnel": 0.10},
    "AY": {"jawOpen": 0.72, "mouthLowerDown": 0.25, "mouthUpperUp": 0.10},
    # rounded vowels
    "AO": {"jawOpen": 0.62, "mouthFunnel": 0.55, "mouthPucker": 0.20, "mouthLowerDown": 0.10},
    "OW": {"jawOpen": 0.40, "mouthFunnel": 0.60, "mouthPucker": 0.35},
    "OY": {"jawOpen": 0.45, "mouthFunnel": 0.50, "mouthPucker": 0.35, "mouthLowerDown": 0.05},
    "UH": {"jawOpen": 0.15, "mouthFunnel": 0.30, "mouthPucker": 0.30},
    "UW": {"jawOpen": 0.07, "mouthFunnel": 0.45, "mouthPucker": 0.80},
    "ER": {"jawOpen": 0.30, "mouthFunnel": 0.30, "mouthPucker": 0.25, "mouthUpperUp": 0.15},
    # spread vowels
    "IY": {"jawOpen": 0.08, "mouthStretch": 0.55, "mouthSmile": 0.45, "mouthUpperUp": 0.10, "mouthLowerDown": 0.05},
    "IH": {"jawOpen": 0.18, "mouthStretch": 0.20, "mouthSmile": 0.08, "mouthLowerDown": 0.15},
    "EY": {"jawOpen": 0.38, "mouthStretch": 0.38, "mouthSmile": 0.25, "mouthLowerDown": 0.15, "mouthUpperUp": 0.05},
    "EH": {"jawOpen": 0.40, "mouthStretch": 0.25, "mouthSmile": 0.10, "mouthUpperUp": 0.10, "mouthLowerDown": 0.18},
    # bilabials
    "P": {"jawOpen": 0.06, "mouthClose": 1.00, "mouthPress": 0.45},
    "B": {"jawOpen": 0.07, "mouthClose": 1.00, "mouthPress": 0.35},
    "M": {"jawOpen": 0.06, "mouthClose": 0.95, "mouthPress": 0.15},
    # labiodentals
    "F": {"jawOpen": 0.12, "mouthClose": 0.15, "mouthRollLower": 0.75, "mouthUpperUp": 0.25},
    "V": {"jawOpen": 0.12, "mouthClose": 0.10, "mouthRollLower": 0.65, "mouthUpperUp": 0.20},
    # dentals
    "TH": {"jawOpen": 0.18, "mouthLowerDown": 0.25, "mouthUpperUp": 0.12},
    "DH": {"jawOpen": 0.16, "mouthLowerDown": 0.22, "mouthUpperUp": 0.10},
    # alveolars, velars, glottal
    "T": {"jawOpen": 0.14, "mouthLowerDown": 0.08},
    "D": {"jawOpen": 0.15, "mouthLowerDown": 0.08},
    "N": {"jawOpen": 0.14, "mouthLowerDown": 0.05},
    "S": {"jawOpen": 0.10, "mouthStretch": 0.15, "mouthLowerDown": 0.08, "mouthUpperUp": 0.05},
    "Z": {"jawOpen": 0.10, "mouthStretch": 0.12, "mouthLowerDown": 0.08, "mouthUpperUp": 0.05},
    "L": {"jawOpen": 0.18, "mouthLowerDown": 0.10},
    "K": {"jawOpen": 0.16, "mouthLowerDown": 0.05},
    "G": {"jawOpen": 0.16, "mouthLowerDown": 0.05},
    "NG": {"jawOpen": 0.15},
    "HH": {"jawOpen": 0.25, "mouthLowerDown": 0.10},
    # postalveolars: protruded, funnelled lips
    "SH": {"jawOpen": 0.14, "mouthFunnel": 0.55, "mouthPucker": 0.35, "mouthUpperUp": 0.20, "mouthLowerDown": 0.15},
    "ZH": {"jawOpen": 0.14, "mouthFunnel": 0.50, "mouthPucker": 0.30, "mouthUpperUp": 0.18, "mouthLowerDown": 0.15},
    "CH": {"jawOpen": 0.12, "mouthFunnel": 0.45, "mouthPucker": 0.35, "mouthUpperUp": 0.15, "mouthLowerDown": 0.10},
    "JH": {"jawOpen": 0.14, "mouthFunnel": 0.45, "mouthPucker": 0.30, "mouthUpperUp": 0.15, "mouthLowerDown": 0.10},
    # liquids and glides
    "R": {"jawOpen": 0.18, "mouthFunnel": 0.30, "mouthPucker": 0.40, "mouthUpperUp": 0.08},
    "W": {"jawOpen": 0.08, "mouthFunnel": 0.35, "mouthPucker": 0.85},
    "Y": {"jawOpen": 0.12, "mouthStretch": 0.40, "mouthSmile": 0.30},
}
# fmt: on

# Diphthong offglides: (target, dominance class).
_OFFGLIDES: dict[str, tuple[dict[str, float], str]] = {
    "AW": ({"jawOpen": 0.20, "mouthFunnel": 0.35, "mouthPucker": 0.45}, "rounded_vowel"),
    "AY": ({"jawOpen": 0.20, "mouthStretch": 0.30, "mouthSmile": 0.20}, "spread_vowel"),
    "EY": ({"jawOpen": 0.15, "mouthStretch": 0.45, "mouthSmile": 0.35}, "spread_vowel"),
    "OW": ({"jawOpen": 0.15, "mouthFunnel": 0.35, "mouthPucker": 0.65}, "rounded_vowel"),
    "OY": ({"jawOpen": 0.18, "mouthStretch": 0.30, "mouthSmile": 0.20}, "spread_vowel"),
}


def _vec(spec: dict[str, float]) -> np.ndarray:
    v = np.zeros(len(CONTROLS), dtype=np.float64)
    for name, value in spec.items():
        names = [name] if name in _CI else [f"{name}_L", f"{name}_R"]
        for n in names:
            v[_CI[n]] = value
    return v


_TARGETS = {p: _vec(s) for p, s in _T.items()}
assert sorted(_TARGETS) == sorted(PHONES), set(PHONES) ^ set(_TARGETS)
_OFFGLIDE_TARGETS = {p: _vec(s) for p, (s, _) in _OFFGLIDES.items()}


def phone_targets() -> dict[str, np.ndarray]:
    """Every phone's target control vector, shape (len(CONTROLS),), in [0, 1] (diphthongs: the nucleus)."""
    return {p: _TARGETS[p].copy() for p in PHONES}


def offglide_targets() -> dict[str, np.ndarray]:
    """The diphthongs' offglide targets (the last 40 % of their segment)."""
    return {p: v.copy() for p, v in _OFFGLIDE_TARGETS.items()}


def pair_distance(a: str, b: str) -> float:
    """Euclidean distance between two phones' target vectors."""
    return float(np.linalg.norm(_TARGETS[_check(a)] - _TARGETS[_check(b)]))


# ---------------------------------------------------------------------------------------- dominance
_CLASS: dict[str, str] = {"SIL": "sil", "HH": "glottal", "R": "r", "W": "w", "Y": "y"}
for _p in ("AA", "AE", "AH", "AW", "AY"):
    _CLASS[_p] = "open_vowel"
for _p in ("AO", "OW", "OY", "UH", "UW", "ER"):
    _CLASS[_p] = "rounded_vowel"
for _p in ("IY", "IH", "EY", "EH"):
    _CLASS[_p] = "spread_vowel"
for _p in BILABIALS:
    _CLASS[_p] = "bilabial"
for _p in ("F", "V"):
    _CLASS[_p] = "labiodental"
for _p in ("TH", "DH"):
    _CLASS[_p] = "dental"
for _p in ("S", "Z"):
    _CLASS[_p] = "sibilant"
for _p in ("T", "D", "N", "L", "K", "G", "NG"):
    _CLASS[_p] = "coronal_velar"
for _p in ("SH", "ZH", "CH", "JH"):
    _CLASS[_p] = "postalveolar"
assert sorted(_CLASS) == sorted(PHONES)

_DEFAULT = (1.0, 0.07, 0.06)  # alpha, lambda_left (anticipation), lambda_right (carry-over), seconds
_LIPS_FREE = {"close": (0.5, 0.07, 0.06), "round": (0.15, 0.07, 0.06), "spread": (0.3, 0.07, 0.06)}

# class -> (kappa, {group: (alpha, lambda_left, lambda_right)}); groups not named take _DEFAULT.
# fmt: off
_DOMINANCE: dict[str, tuple[float, dict[str, tuple[float, float, float]]]] = {
    "sil": (1.0, {g: (0.15, 0.08, 0.08) for g in _GROUPS}),  # kappa unused: see _silence
    "glottal": (0.3, {g: (0.2, 0.07, 0.06) for g in _GROUPS}),
    "bilabial": (
        1.0,
        {"open": (30.0, 0.012, 0.012), "close": (30.0, 0.012, 0.012), "round": (0.2, 0.07, 0.06),
         "spread": (0.2, 0.07, 0.06)},
    ),
    "labiodental": (
        0.8,
        {"roll": (8.0, 0.03, 0.03), "open": (3.0, 0.04, 0.04), "close": (3.0, 0.04, 0.04),
         "round": (0.4, 0.07, 0.06), "spread": (0.4, 0.07, 0.06)},
    ),
    "dental": (0.5, {**_LIPS_FREE, "open": (1.5, 0.07, 0.06), "roll": (1.5, 0.07, 0.06)}),
    "sibilant": (0.5, {**_LIPS_FREE, "open": (1.5, 0.07, 0.06), "roll": (0.5, 0.07, 0.06)}),
    "coronal_velar": (0.5, {**_LIPS_FREE, "open": (0.8, 0.07, 0.06), "roll": (0.5, 0.07, 0.06)}),
    "postalveolar": (0.6, {"round": (3.0, 0.12, 0.08), "open": (1.2, 0.07, 0.06), "spread": (0.5, 0.07, 0.06)}),
    "r": (0.5, {"round": (1.5, 0.12, 0.08), **{g: (0.8, 0.07, 0.06) for g in ("open", "close", "spread", "roll")}}),
    "w": (0.6, {"round": (3.0, 0.10, 0.08)}),
    "y": (0.5, {"spread": (2.0, 0.09, 0.07)}),
    "rounded_vowel": (0.5, {"round": (2.0, 0.14, 0.08), "open": (2.0, 0.07, 0.06)}),
    "spread_vowel": (0.5, {"spread": (1.5, 0.09, 0.07), "round": (1.5, 0.07, 0.06), "open": (2.0, 0.07, 0.06)}),
    "open_vowel": (0.5, {"open": (2.0, 0.07, 0.06), "round": (1.5, 0.07, 0.06)}),
}
# fmt: on
assert set(_DOMINANCE) == set(_CLASS.values())


def _class_params(cls: str) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    kappa, groups = _DOMINANCE[cls]
    alpha, lam_l, lam_r = (np.empty(len(CONTROLS)) for _ in range(3))
    for g, names in _GROUPS.items():
        a, ll, lr = groups.get(g, _DEFAULT)
        for n in names:
            alpha[_CI[n]], lam_l[_CI[n]], lam_r[_CI[n]] = a, ll, lr
    return kappa, alpha, lam_l, lam_r


_PARAMS = {cls: _class_params(cls) for cls in _DOMINANCE}


def dominance_params(phone: str) -> dict[str, object]:
    """A phone's dominance parameters: kappa, and per control alpha, lambda_left, lambda_right (seconds)."""
    kappa, alpha, lam_l, lam_r = _PARAMS[_CLASS[_check(phone)]]
    return {
        "class": _CLASS[phone],
        "kappa": kappa,
        "alpha": alpha.copy(),
        "lambda_left": lam_l.copy(),
        "lambda_right": lam_r.copy(),
    }


def dominance(
    t: np.ndarray | float,
    center: float,
    half_width: float,
    alpha: np.ndarray | float,
    lambda_left: np.ndarray | float,
    lambda_right: np.ndarray | float,
    c: float = C_EXP,
) -> np.ndarray:
    """Dominance ``alpha * exp(-(tau / lambda)^c)`` of one phone at times ``t``, broadcast over controls.

    ``tau`` is the distance from the plateau ``[center - half_width, center + half_width]`` (0 inside);
    ``lambda_left`` applies before it (anticipation), ``lambda_right`` after it (carry-over).
    Returns shape ``t.shape + broadcast(alpha, lambda_left, lambda_right).shape``.
    """
    t = np.asarray(t, dtype=np.float64)
    if np.broadcast(alpha, lambda_left, lambda_right).shape:
        t = t[..., None]
    return _dominance_ab(t, center - half_width, center + half_width, alpha, lambda_left, lambda_right, c)


def phone_dominance(phone: str, start: float, end: float, t: np.ndarray | float) -> np.ndarray:
    """The dominance ``(len(t), len(CONTROLS))`` of one (non-diphthong-split) phone segment, as used in
    ``controls_from_phones`` (SIL: its duration-dependent form)."""
    t = np.asarray(t, dtype=np.float64)[..., None]
    if _check(phone) == "SIL":
        a, b, gain, _, cls = _silence(float(start), float(end))
    else:
        cls, gain = _CLASS[phone], 1.0
        c, h = 0.5 * (start + end), _PARAMS[cls][0] * 0.5 * (end - start)
        a, b = c - h, c + h
    _, alpha, lam_l, lam_r = _PARAMS[cls]
    return _dominance_ab(t, a, b, gain * alpha, lam_l, lam_r)


def _dominance_ab(t, a, b, alpha, lambda_left, lambda_right, c=C_EXP) -> np.ndarray:
    """Dominance with the plateau given as [a, b]; a = -inf / b = inf for an unbounded one."""
    alpha, lam_l, lam_r = (np.asarray(x, dtype=np.float64) for x in (alpha, lambda_left, lambda_right))
    before = np.maximum(a - t, 0.0)  # -inf - t -> 0
    after = np.maximum(t - b, 0.0)
    return alpha * np.exp(-((before / lam_l) ** c) - (after / lam_r) ** c)


# ------------------------------------------------------------------------------------------ curves
def _check(phone: str) -> str:
    if phone not in _TARGETS:
        raise ValueError(f"unknown phone {phone!r} (expected one of server.controls.PHONES)")
    return phone


def _silence(s: float, e: float) -> tuple[float, float, float, np.ndarray, str]:
    """A pause's dominance term: plateau inset by SIL_MARGIN_S, alpha scaled up with the pause's length."""
    d = e - s
    gain = (
        SIL_GAIN_MAX * min(1.0, max(0.0, (d - SIL_SHORT_S) / SIL_RAMP_S))
        if math.isfinite(d)
        else SIL_GAIN_MAX
    )
    m = min(SIL_MARGIN_S, 0.5 * d)
    return (s + m, e - m, 1.0 + gain, _TARGETS["SIL"], "sil")


def _segments(phones: Iterable[Sequence]) -> list[tuple[float, float, float, np.ndarray, str]]:
    """(plateau start a, plateau end b, alpha gain, target, class) per dominance term."""
    segs: list[tuple[float, float, float, np.ndarray, str]] = []
    parsed = []
    for item in phones:
        p, s, e = item[0], float(item[1]), float(item[2])
        _check(p)
        if not (math.isfinite(s) and math.isfinite(e)) or e < s:
            raise ValueError(f"bad phone timing {p!r} [{s}, {e}]")
        parsed.append((p, s, e))
    parsed.sort(key=lambda x: (x[1], x[2]))
    for p, s, e in parsed:
        if p == "SIL":
            segs.append(_silence(s, e))
            continue
        pieces = [(s, e, _TARGETS[p], _CLASS[p])]
        if p in _OFFGLIDES:
            m = s + DIPHTHONG_SPLIT * (e - s)
            pieces = [(s, m, _TARGETS[p], _CLASS[p]), (m, e, _OFFGLIDE_TARGETS[p], _OFFGLIDES[p][1])]
        for ps, pe, target, cls in pieces:
            kappa = _PARAMS[cls][0]
            c, h = 0.5 * (ps + pe), kappa * 0.5 * (pe - ps)
            segs.append((c - h, c + h, 1.0, target, cls))
    # implicit, unbounded silence before the first and after the last phone
    first = parsed[0][1] if parsed else 0.0
    last = max((e for _, _, e in parsed), default=0.0)
    segs.insert(0, _silence(-math.inf, first))
    segs.append(_silence(last, math.inf))
    return segs


def controls_from_phones(phones: Iterable[Sequence], n_frames: int, fps: float = MOTION_FPS) -> np.ndarray:
    """Control curves ``(n_frames, len(CONTROLS))`` float32 in [0, 1] from ``[(PHONE, start_s, end_s), ...]``.

    Frame k samples time ``k / fps``. Raises ValueError on an unknown phone or a bad timing.
    """
    n_frames = int(n_frames)
    if n_frames < 0 or fps <= 0:
        raise ValueError(f"need n_frames >= 0 and fps > 0, got {n_frames}, {fps}")
    segs = _segments(phones)
    times = np.arange(n_frames, dtype=np.float64) / float(fps)
    num = np.zeros((n_frames, len(CONTROLS)))
    den = np.full((n_frames, len(CONTROLS)), BACKGROUND_ALPHA)  # neutral background (target 0)
    neutral = _TARGETS["SIL"]
    num += BACKGROUND_ALPHA * neutral
    for a, b, gain, target, cls in segs:
        # only frames within WINDOW_S of the plateau
        lo = np.searchsorted(times, a - WINDOW_S, side="left")
        hi = np.searchsorted(times, b + WINDOW_S, side="right")
        if hi <= lo:
            continue
        _, alpha, lam_l, lam_r = _PARAMS[cls]
        d = _dominance_ab(times[lo:hi, None], a, b, gain * alpha, lam_l, lam_r)
        num[lo:hi] += d * target
        den[lo:hi] += d
    return np.clip(num / den, 0.0, 1.0).astype(np.float32)


# ------------------------------------------------------------------------------------------ metrics
def closure_frames(phones: Iterable[Sequence], n_frames: int, fps: float = MOTION_FPS) -> list[np.ndarray]:
    """For each bilabial (P B M) phone, in input order, the frames k < n_frames with start <= k/fps < end
    (the shared definition, ``wav2sem_contract.lipsync``; here every phone's name is checked first).

    The array is empty when no frame samples the phone (shorter than a frame, or past ``n_frames``).
    """
    phones = list(phones)
    for item in phones:
        _check(item[0])
    return lipsync.closure_frames(phones, n_frames, fps)


def bilabial_closure_rate(
    pred_controls: np.ndarray, phones: Iterable[Sequence], fps: float = MOTION_FPS, threshold: float = lipsync.CLOSED_THRESHOLD
) -> float:
    """Share of bilabial phones during which the predicted mouthClose exceeds ``threshold`` at some frame.

    Only bilabials that contain at least one frame count; NaN when there are none.
    """
    pred = np.asarray(pred_controls)
    close = pred[:, _CI["mouthClose"]]
    frames = [f for f in closure_frames(phones, pred.shape[0], fps) if f.size]
    if not frames:
        return float("nan")
    return float(np.mean([lipsync.is_closed(close, f, threshold) for f in frames]))
