"""``make-dataset``: a small dataset in the official VOCASET (or BIWI) layout whose motion has a known cause.

Every file is made here, nothing is downloaded: speech from the project's TTS voices
(``training/data/voices.py``), and for every subject a procedural face (a half ellipsoid of
``grid x grid`` vertices, metres, facing -y, its size varied per subject) driven by

    vertices[t] = template + gain_s * controls(t) @ rig_deltas  +  brow_s * rms(t) * brow_field

- ``controls(t)``: the articulation targets of the voice's own phone timings
  (``training/data/visemes.py:controls_from_phones``) at the layout's capture rate;
- ``rig_deltas``: the articulation rig (``wav2sem_contract/articulation.py``) built on the subject's template;
- ``rms(t)``: the audio's RMS over the frame's window, a linear audio feature moving the brows (so the
  upper face has dynamics for FDD);
- ``gain_s`` and ``brow_s``: the subject's speaking style, drawn from the seed.

So a trained model has a known answer: ``controls/<name>.npy`` keeps each sequence's control curves
and ``dataset.json`` the styles. ``regions/lve.txt`` (lips) and ``regions/fdd.txt`` (upper face) are
written in BIWI's format for ``metrics``. Audio is written at the layout's native rate (VOCASET
22 kHz, BIWI 44.1 kHz) so the loaders' resampling is exercised; motion at its capture rate
(VOCASET 60 fps, read ``[::2]``; BIWI 25 fps).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from wav2sem_contract.errors import Wav2SemError

from .layout import MANIFEST_FILE, TEMPLATES_FILE, VERTICES_DIR, WAV_DIR, Split
from .registry import official

SENTENCES = (
    "Pam made a map of the bay.",
    "The sheep on the ship slept.",
    "Five wise owls flew home.",
    "Bob bought blue paper.",
    "We meet by the old well.",
    "Judge the fudge by its shape.",
)
DEFAULT_VOICES = ("flite:slt", "flite:rms", "flite:awb", "flite:kal16")
NATIVE_RATE = {"vocaset": 22000, "biwi": 44100}
MOUTH_ELEVATION = -0.42  # radians below the equator of the ellipsoid
BROW_ELEVATION = 0.45
BROW_MAX_M = 0.004  # brow lift at brow_s = 1 and RMS 0.25 (about speech at -6 dBFS peak)


def _surface(phi: np.ndarray, theta: np.ndarray, size: np.ndarray) -> np.ndarray:
    a, b, c = size
    return np.stack([a * np.sin(phi) * np.cos(theta), -b * np.cos(phi) * np.cos(theta),
                     c * np.sin(theta) + 0 * phi], axis=-1)


def face(grid: int, size: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """``(vertices (grid*grid, 3), landmark positions, (azimuth, elevation) per vertex)``."""
    phis, thetas = np.meshgrid(np.linspace(-1.3, 1.3, grid), np.linspace(-1.0, 1.0, grid))
    vertices = _surface(phis.ravel(), thetas.ravel(), size)
    half = 0.35  # mouth half-width in radians of azimuth
    landmarks = {
        "mouth_corner_L": _surface(np.array(half), np.array(MOUTH_ELEVATION), size),
        "mouth_corner_R": _surface(np.array(-half), np.array(MOUTH_ELEVATION), size),
        "lip_upper": _surface(np.array(0.0), np.array(MOUTH_ELEVATION + 0.02), size),
        "lip_lower": _surface(np.array(0.0), np.array(MOUTH_ELEVATION - 0.02), size),
        "chin": _surface(np.array(0.0), np.array(-0.85), size),
    }
    return vertices, landmarks, np.stack([phis.ravel(), thetas.ravel()], axis=1)


def rig_basis(vertices: np.ndarray, landmarks: dict[str, np.ndarray]) -> np.ndarray:
    """``(K, V, 3)`` rig displacements at weight 1, in ``CONTROLS`` order."""
    from wav2sem_contract import articulation
    from wav2sem_contract.controls import CONTROLS

    deltas = articulation.control_deltas(vertices, articulation.mouth_frame(vertices, landmarks))
    return np.stack([deltas[name] for name in CONTROLS])


def frame_rms(audio: np.ndarray, sr: int, n_frames: int, fps: float) -> np.ndarray:
    """RMS of the audio over each motion frame's window ``[k/fps, (k+1)/fps)``."""
    hop = sr / fps
    out = np.zeros(n_frames)
    for k in range(n_frames):
        chunk = audio[int(round(k * hop)): int(round((k + 1) * hop))]
        out[k] = float(np.sqrt(np.mean(np.square(chunk)))) if len(chunk) else 0.0
    return out


def regions(basis: np.ndarray, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lip vertices (the lip controls move them by at least a quarter of the most-moved one) and
    upper-face vertices (above the eyes' height, where only the brows move)."""
    from wav2sem_contract.controls import CONTROLS

    lip_controls = [i for i, n in enumerate(CONTROLS) if n != "jawOpen"]
    reach = np.linalg.norm(basis[lip_controls], axis=2).max(axis=0)
    lips = np.flatnonzero(reach >= 0.25 * reach.max())
    upper = np.flatnonzero(angles[:, 1] > 0.2)
    return lips, upper


def _names(layout: str, n_subjects: int) -> list[str]:
    # the official shapes: VOCASET "FaceTalk_<date>_<id>_TA", BIWI "F1"/"M1"
    if layout == "vocaset":
        return [f"Synth_{i + 1:02d}_TA" for i in range(n_subjects)]
    return [f"{'FM'[i % 2]}{i // 2 + 1}" for i in range(n_subjects)]


def make_dataset(out: str | os.PathLike[str], layout: str = "vocaset", subjects: int = 3, sentences: int = 2,
                 voices: tuple[str, ...] | list[str] = DEFAULT_VOICES, grid: int = 20, seed: int = 0,
                 progress: bool = True) -> Path:
    """Write the dataset into ``out`` (an empty or absent folder) and return its path."""
    import soundfile as sf
    import soxr

    from server.progress import console_bar
    from training.data import voices as V
    from training.data.visemes import controls_from_phones

    from .templates import save_templates

    out = Path(out)
    lay = official(layout)
    if subjects < 2 or not 2 <= sentences <= len(SENTENCES):
        raise Wav2SemError("dataset_size", f"Need at least 2 subjects and 2-{len(SENTENCES)} sentences, "
                           f"got {subjects} and {sentences}.", "Use --subjects >= 2 and --sentences 2..6.")
    if grid < 8:
        raise Wav2SemError("dataset_size", f"--grid {grid} is too coarse for a mouth.", "Use --grid 8 or more.")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise Wav2SemError("dataset_exists", f"{out} exists and is not an empty folder.",
                           "Choose a new --out folder (nothing is overwritten).")
    missing = [v for v in voices if not V.voice_available(v)]
    if missing or not voices:
        raise Wav2SemError("voice_missing", f"The TTS voice {missing[0] if missing else '(none)'} is not installed.",
                           "Install flite/espeak-ng (scripts/system-packages.sh) or pass --voices.")
    rng = np.random.default_rng(seed)
    names = _names(layout, subjects)
    styles = {
        name: {"voice": voices[i % len(voices)], "gain": round(float(rng.uniform(0.6, 1.2)), 3),
               "brow": round(float(rng.uniform(0.3, 1.0)), 3),
               "size": [round(float(s), 4) for s in np.array([0.075, 0.095, 0.115]) * rng.uniform(0.9, 1.1, 3)]}
        for i, name in enumerate(names)
    }
    token = "sentence{:02d}" if layout == "vocaset" else "e{:02d}"
    rate = NATIVE_RATE[layout]
    for folder in (WAV_DIR, VERTICES_DIR, "controls", "regions"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    templates: dict[str, np.ndarray] = {}
    region_sets = None
    jobs = [(name, k) for name in names for k in range(1, sentences + 1)]
    with console_bar(jobs, desc="synthesising", unit="seq", enabled=progress) as bar:
        for name, k in bar:
            style = styles[name]
            if name not in templates:
                template, landmarks, angles = face(grid, np.array(style["size"]))
                templates[name] = template
                basis = rig_basis(template, landmarks)
                brow_field = np.zeros_like(template)
                brow_field[:, 2] = np.exp(-((angles[:, 1] - BROW_ELEVATION) / 0.2) ** 2) * (np.cos(angles[:, 0]) > 0.3)
                style["_basis"], style["_brow"] = basis, brow_field
                region_sets = region_sets or regions(basis, angles)
            audio, sr, phones = V.synthesize(style["voice"], SENTENCES[k - 1])
            audio = np.asarray(audio, dtype=np.float32)
            n = int(round(len(audio) / sr * lay.capture_fps))
            controls = controls_from_phones(phones, n, fps=lay.capture_fps)
            rms = frame_rms(audio, sr, n, lay.capture_fps)
            motion = (style["gain"] * controls.astype(np.float64)) @ style["_basis"].reshape(len(controls[0]), -1)
            motion = motion.reshape(n, -1, 3) + (style["brow"] * BROW_MAX_M / 0.25) * rms[:, None, None] * style["_brow"]
            stem = f"{name}_{token.format(k)}"
            np.save(out / VERTICES_DIR / f"{stem}.npy", (templates[name][None] + motion).reshape(n, -1).astype(np.float32))
            np.save(out / "controls" / f"{stem}.npy", controls)
            sf.write(out / WAV_DIR / f"{stem}.wav", soxr.resample(audio, sr, rate, quality="VHQ"), rate,
                     subtype="PCM_16")
    save_templates(out / TEMPLATES_FILE, templates)
    lips, upper = region_sets
    (out / "regions" / "lve.txt").write_text(", ".join(map(str, lips)), encoding="utf-8")
    (out / "regions" / "fdd.txt").write_text(", ".join(map(str, upper)), encoding="utf-8")
    # the official split shapes at this size: train/val on all but the last subject, test on the last
    splits = {"train": Split(tuple(names[:-1]), (1, sentences - 1)), "val": Split(tuple(names[:-1]), (sentences, sentences)),
              "test": Split((names[-1],), (1, sentences))}
    meta = {**lay.to_dict(), "splits": {k: {"subjects": list(s.subjects), "sentences": list(s.sentences)}
                                        for k, s in splits.items()},
            "n_vertices": grid * grid,
            "synthetic": {
                "seed": seed, "grid": grid, "audio_rate": rate, "sentences": list(SENTENCES[:sentences]),
                "motion": "template + gain * controls @ rig + brow * BROW_MAX_M / 0.25 * rms * brow_field",
                "brow_max_m": BROW_MAX_M,
                "styles": {n: {k: v for k, v in s.items() if not k.startswith("_")} for n, s in styles.items()},
            }}
    (out / MANIFEST_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return out
