"""Checkpoint files written atomically and readable with ``torch.load(weights_only=True)``.

A kill at any moment leaves the previous complete file: the new one is written next to it under a
temporary name, flushed to disk, then renamed over it. RNG states are stored as tensors and plain
lists (numpy's state array as a tensor), since weights-only loading refuses other objects.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wav2sem_contract.errors import Wav2SemError


def save_atomic(obj: Any, path: str | Path) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise Wav2SemError("resume_missing", f"The checkpoint {path} does not exist.",
                           "Pass --resume with the last.pt of the run to continue.")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a checkpoint, or holding objects weights-only refuses
        raise Wav2SemError("resume_unreadable", f"The checkpoint {path.name} cannot be read ({type(exc).__name__}).",
                           "Pass the last.pt a training run wrote (or its best.pt).") from None
    if not isinstance(obj, dict) or "model" not in obj or "epoch" not in obj:
        raise Wav2SemError("resume_unreadable", f"{path.name} is not a training checkpoint of this tool.",
                           "Pass the last.pt a training run wrote.")
    return obj


def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
