"""Shared by the training tests: the trainer as a subprocess (one process, or torchrun), its CSV logs,
and the tiny synthetic VOCASET-layout dataset with a tiny phonetic encoder that they train on."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.bundles import tiny_encoder_dir
from tests.helpers import REPO


def train(out: Path, data: Path, *extra: str, processes: int = 1, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m training train --data DATA --out OUT EXTRA`` (under torchrun with ``processes`` > 1)."""
    launcher = [sys.executable, "-m", "training"]
    if processes > 1:  # --standalone: torchrun picks a free port on this host
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                    str(processes), "-m", "training"]
    cmd = [*launcher, "train", "--data", str(data), "--out", str(out), *map(str, extra)]
    result = subprocess.run(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                            text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def column(path: Path, key: str) -> np.ndarray:
    return np.array([float(r[key]) for r in rows(path)])


def tiny_dataset(root: Path) -> tuple[Path, Path]:
    """(data, encoder): 3 subjects x 3 sentences of flite speech on an 8 x 8 face, and a 32-wide encoder."""
    from training.data.voices import voice_available
    from training.datasets.synthetic import make_dataset

    if not voice_available("flite:slt"):
        pytest.skip("flite is not installed (scripts/system-packages.sh): no synthetic dataset")
    data = make_dataset(root / "data", subjects=3, sentences=3, grid=8, voices=("flite:slt", "flite:rms"),
                        progress=False)
    return data, tiny_encoder_dir(root / "encoder", hidden=32)
