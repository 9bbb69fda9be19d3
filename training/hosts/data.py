"""The sequences of a VOCASET/BIWI-layout folder, as FaceFormer's ``data_loader.py:read_data`` reads them.

Audio: 16 kHz mono (resampled with soxr, where the official loader used librosa), then the encoder
folder's ``preprocessor_config.json`` normalisation (zero mean, unit variance when ``do_normalize``).
Motion: ``vertices_npy`` rows at the layout's stride (VOCASET ``[::2]``). Template: ``templates.pkl``
through the restricted unpickler. Style: the subject's index in the layout's training list (the
one-hot order); validation/test subjects outside that list have none and are scored once per style.
Everything is held in memory, as the official loader does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from server.audio import load_for_model
from wav2sem_contract.errors import Wav2SemError

from ..datasets.layout import TEMPLATES_FILE, VERTICES_DIR, WAV_DIR, Layout, parse_name, read_vertices
from ..datasets.templates import load_templates


@dataclass
class Sequence:
    name: str
    subject: str
    input_values: torch.Tensor  # (N,) float32, what the encoder reads
    vertices: torch.Tensor  # (T, 3V) float32 at the motion rate
    template: torch.Tensor  # (3V,) float32
    style: int | None  # index in the training subjects, None for a subject outside them


def normalizes(encoder_dir: str | Path) -> bool:
    """Whether the encoder folder's feature extractor normalises audio (wav2vec2-base-960h: yes)."""
    path = Path(encoder_dir) / "preprocessor_config.json"
    if not path.is_file():
        return True
    try:
        return bool(json.loads(path.read_text(encoding="utf-8")).get("do_normalize", True))
    except (OSError, ValueError) as exc:
        raise Wav2SemError("encoder_invalid", f"{path} is not valid JSON ({exc}).",
                           "Use the preprocessor_config.json of a Hugging Face wav2vec2/HuBERT release.") from None


def load_split(root: str | Path, layout: Layout, split: str, do_normalize: bool = True) -> list[Sequence]:
    """Every sequence of ``split`` that has both audio and motion, in name order."""
    root = Path(root)
    if split not in layout.splits:
        raise Wav2SemError("dataset_split", f"The {layout.name} layout has no '{split}' split.",
                           f"Use one of: {', '.join(layout.splits)}.")
    templates = load_templates(root / TEMPLATES_FILE)
    order = layout.style_order
    out = []
    wavs = sorted((root / WAV_DIR).glob("*.wav")) if (root / WAV_DIR).is_dir() else []
    for wav in wavs:
        parsed = parse_name(wav.stem)
        motion = root / VERTICES_DIR / f"{wav.stem}.npy"
        if parsed is None or not motion.is_file() or not layout.splits[split].contains(parsed[0], parsed[2]):
            continue  # the official loader skips a wav without motion; check-dataset lists them
        subject = parsed[0]
        if subject not in templates:
            raise Wav2SemError("dataset_template", f"templates.pkl in {root} has no template for '{subject}'.",
                               "Add it, or run check-dataset to list every problem.")
        _, values = load_for_model(wav, do_normalize=do_normalize)
        vertices = read_vertices(motion, layout.stride).astype(np.float32)
        template = np.asarray(templates[subject], dtype=np.float32).reshape(-1)
        if vertices.shape[1] != template.shape[0]:
            raise Wav2SemError("dataset_shape", f"{motion.name} has {vertices.shape[1] // 3} vertices, the "
                               f"template {template.shape[0] // 3}.", "Run check-dataset to list every problem.")
        out.append(Sequence(wav.stem, subject, torch.from_numpy(np.ascontiguousarray(values)),
                            torch.from_numpy(np.ascontiguousarray(vertices)), torch.from_numpy(template),
                            order.index(subject) if subject in order else None))
    if not out:
        raise Wav2SemError("dataset_empty", f"{root} has no {split} sequences (audio with motion) for the "
                           f"{layout.name} layout.", "Run check-dataset on the folder to see what it holds.")
    return out


def style_conditions(seq: Sequence, n_styles: int) -> list[int]:
    """The styles a sequence is scored with: its own, or every training style (official validation)."""
    return [seq.style] if seq.style is not None else list(range(n_styles))


def one_hot(index: int, n: int) -> torch.Tensor:
    out = torch.zeros(n)
    out[index] = 1.0
    return out
