"""The folder layout FaceFormer and CodeTalker read, and what differs between VOCASET and BIWI.

A dataset folder holds ``wav/<name>.wav``, ``vertices_npy/<name>.npy`` (one row of 3V coordinates
per captured frame) and ``templates.pkl`` (``{subject: (V, 3)}``, see ``templates.py``). A sequence
``<name>`` is ``<subject>_<sentence token>``: the subject is everything before the last ``_``, the
sentence number the last two characters, exactly as FaceFormer's ``data_loader.py:read_data`` splits
names. Splits are subject lists, each with a range of sentence numbers (``main.py`` arguments
``--train_subjects/--val_subjects/--test_subjects`` plus ``read_data``'s ``splits`` table); the order
of the training list is the order of the style one-hot, which trained checkpoints depend on.

The layouts themselves are in ``vocaset.py`` and ``biwi.py``; ``registry.py`` finds a folder's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

WAV_DIR = "wav"
VERTICES_DIR = "vertices_npy"
TEMPLATES_FILE = "templates.pkl"
MANIFEST_FILE = "dataset.json"  # optional: a folder's own layout and splits (make-dataset writes one)


@dataclass(frozen=True)
class Split:
    subjects: tuple[str, ...]
    sentences: tuple[int, int]  # first and last sentence number, inclusive

    def contains(self, subject: str, sentence: int) -> bool:
        return subject in self.subjects and self.sentences[0] <= sentence <= self.sentences[1]


@dataclass(frozen=True)
class Layout:
    """One dataset's conventions. ``stride`` is how the loader subsamples ``vertices_npy`` rows
    (VOCASET: captured at 60 fps, read ``[::2]`` at 30 fps); ``fps`` is the motion rate after it."""

    name: str
    capture_fps: float
    stride: int
    sentence_token: str  # regular expression of the part after the subject: "sentence\d\d", "e\d\d"
    splits: dict[str, Split]
    n_vertices: int | None = None  # None: whatever the templates say
    audio_note: str = ""  # how audio frames meet motion frames (for the check's report)
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.capture_fps / self.stride

    @property
    def subjects(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for split in self.splits.values():
            seen.update(dict.fromkeys(split.subjects))
        return tuple(seen)

    @property
    def style_order(self) -> tuple[str, ...]:
        """The training subjects in one-hot order."""
        return self.splits["train"].subjects

    def splits_of(self, subject: str, sentence: int) -> list[str]:
        return [name for name, split in self.splits.items() if split.contains(subject, sentence)]

    def to_dict(self) -> dict[str, object]:
        return {"layout": self.name, "capture_fps": self.capture_fps, "stride": self.stride,
                "sentence_token": self.sentence_token, "n_vertices": self.n_vertices,
                "splits": {k: {"subjects": list(s.subjects), "sentences": list(s.sentences)}
                           for k, s in self.splits.items()}, **self.extra}


def parse_name(stem: str) -> tuple[str, str, int] | None:
    """``(subject, token, sentence number)`` of ``<subject>_<token>``, or None if it has no such shape.

    The number is the last two characters (``read_data``'s rule), so ``sentence07`` and ``e07`` are 7.
    """
    subject, sep, token = stem.rpartition("_")
    if not sep or not subject or len(token) < 2 or not token[-2:].isdigit():
        return None
    return subject, token, int(token[-2:])


def read_vertices(path: str | os.PathLike[str], stride: int = 1, mmap: bool = False) -> np.ndarray:
    """``(T, 3V)`` rows of one ``vertices_npy`` file, every ``stride``-th (the loader's ``[::2]`` for
    VOCASET). ``allow_pickle=False``: a .npy holding Python objects is refused, not run."""
    array = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    if array.ndim == 3:  # (T, V, 3) is accepted too
        array = array.reshape(array.shape[0], -1)
    return array[::stride]
