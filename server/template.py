"""Vertex offsets from a control result: the articulation rig evaluated on a template mesh.

``infer --template head.npy`` turns the default model's control weights (T, K) into offsets
(T, V, 3) on that mesh: each control's shape comes from ``articulation.control_deltas`` with
the mesh's mouth landmarks (``--landmarks name=index,...``, built in for FLAME topology).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wav2sem_contract import articulation
from wav2sem_contract.errors import Wav2SemError


def read_template(path: str) -> np.ndarray:
    """(V, 3) vertex positions from an ``.npy`` array or the ``v`` lines of an ``.obj`` file."""
    p = Path(path)
    if not p.is_file():
        raise Wav2SemError("template_missing", f"The template mesh {path} does not exist.", "Check the path.")
    try:
        if p.suffix.lower() == ".obj":
            rows = [line.split()[1:4] for line in p.read_text(errors="replace").splitlines() if line.startswith("v ")]
            vertices = np.asarray(rows, dtype=np.float64)
        else:
            vertices = np.load(p, allow_pickle=False).astype(np.float64)
    except (ValueError, OSError) as exc:
        raise Wav2SemError("template_unreadable", f"Cannot read the template mesh {path}: {exc}.",
                           "Give an .npy array of shape (V, 3) or an .obj file.") from None
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) < 5:
        raise Wav2SemError("template_unreadable", f"The template {path} is not a (V, 3) vertex array.",
                           "Give an .npy array of shape (V, 3) or an .obj file.")
    return vertices


def parse_landmarks(text: str | None, n_vertices: int) -> dict[str, int]:
    """``mouth_corner_L=12,mouth_corner_R=40,...`` -> indices; FLAME's built-ins when ``text`` is empty."""
    if not text:
        if n_vertices == articulation.FLAME_VERTICES:
            return dict(articulation.FLAME_LANDMARKS)
        raise Wav2SemError(
            "landmarks_missing",
            f"The template has {n_vertices} vertices (not FLAME's {articulation.FLAME_VERTICES}), so its mouth "
            "landmarks are unknown.",
            "Pass --landmarks " + ",".join(f"{n}=INDEX" for n in articulation.LANDMARKS) + ".",
        )
    out = {}
    for item in text.split(","):
        name, _, index = item.partition("=")
        name = name.strip()
        if name not in articulation.LANDMARKS + articulation.OPTIONAL_LANDMARKS or not index.strip().isdigit():
            raise Wav2SemError("landmarks_bad", f"Cannot read the landmark '{item.strip()}'.",
                               "Use name=vertex_index with names " + ", ".join(articulation.LANDMARKS) + ".")
        if int(index) >= n_vertices:
            raise Wav2SemError("landmarks_bad", f"Landmark {name} = {index} is past the template's "
                               f"{n_vertices} vertices.", "Use indices of the template mesh.")
        out[name] = int(index)
    return out


def offsets_from_controls(weights: np.ndarray, names: list[str], vertices: np.ndarray,
                          landmarks: dict[str, int]) -> np.ndarray:
    """(T, V, 3) float32 offsets: ``weights @ deltas`` of the rig built on ``vertices``."""
    try:
        frame = articulation.mouth_frame(vertices, {n: vertices[i] for n, i in landmarks.items()})
    except articulation.RigError as exc:
        raise Wav2SemError("landmarks_bad", f"The template's landmarks do not make a mouth: {exc}.",
                           "Check the --landmarks indices.") from None
    deltas = articulation.control_deltas(vertices, frame)
    basis = np.stack([deltas[n] for n in names]).reshape(len(names), -1).astype(np.float32)
    return (np.asarray(weights, np.float32) @ basis).reshape(len(weights), -1, 3)
