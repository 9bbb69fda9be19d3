"""Clips as training examples: cached Whisper states, control targets, teacher embedding."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from server.models.encoders import NOMINAL_AUDIO_RATE
from wav2sem_contract.controls import MOTION_FPS

from .data.features import cache_embeddings, cache_features, read_clips
from .data.visemes import controls_from_phones


def motion_frames(n_states: int, fps: float = MOTION_FPS) -> int:
    return int((n_states / NOMINAL_AUDIO_RATE) * fps)


@dataclass
class Example:
    clip: dict
    states: torch.Tensor  # (T50, d) 50 Hz Whisper states
    frames: torch.Tensor  # (T, d) at the motion rate
    targets: torch.Tensor  # (T, K) control targets
    embedding: torch.Tensor  # (E,) teacher sentence embedding


def to_motion_rate(states: torch.Tensor, fps: float = MOTION_FPS) -> torch.Tensor:
    size = motion_frames(states.shape[0], fps)
    return F.interpolate(states.t()[None], size=size, mode="linear", align_corners=True)[0].t()


def load_examples(corpus: str | Path, splits: set[str] | None = None, device: str = "cpu") -> list[Example]:
    """Every clip (of ``splits``) of a corpus, with features computed and cached as needed."""
    clips = [c for c in read_clips(corpus) if splits is None or c["split"] in splits]
    features = cache_features(corpus, clips, device)
    embeddings = cache_embeddings(corpus, clips)
    out = []
    for clip in clips:
        states = torch.from_numpy(np.load(features / f"{clip['id']}.npy").astype(np.float32))
        frames = to_motion_rate(states)
        targets = controls_from_phones([tuple(p) for p in clip["phones"]], frames.shape[0], MOTION_FPS)
        out.append(Example(clip, states, frames, torch.from_numpy(np.asarray(targets, np.float32)),
                           torch.from_numpy(embeddings[clip["text"]])))
    return out


def pad(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (T_i, d) tensors into (B, T, d) with a (B, T) mask, True where padded."""
    n = max(s.shape[0] for s in seqs)
    out = torch.zeros(len(seqs), n, seqs[0].shape[1])
    mask = torch.ones(len(seqs), n, dtype=torch.bool)
    for i, s in enumerate(seqs):
        out[i, : s.shape[0]] = s
        mask[i, : s.shape[0]] = False
    return out, mask


def batches(examples: list[Example], batch_size: int, rng: np.random.Generator | None):
    """Length-bucketed batches (shuffled when ``rng`` is given) to keep padding small."""
    order = np.argsort([e.frames.shape[0] for e in examples], kind="stable")
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(chunks)
    for chunk in chunks:
        yield [examples[i] for i in chunk]
