"""Vertex metrics of speech-driven face animation, computed as the hosts' official evaluation code does.

Followed (read, not copied):

- CodeTalker ``main/cal_metric.py``, function ``main`` (LVE and FDD on BIWI), and FaceDiffuser
  ``evaluation/compute_objective_metrics.py``, function ``main`` (the same LVE and FDD, plus MVE),
  the protocol Wav2Sem's CodeTalker ``main/cal_metric.py`` inherits (that copy is left half converted
  to VOCASET, with BIWI's vertex count and no region files, and does not run as released).

With the prediction cut to the ground truth's length and the ground truth to the prediction's
(``pred[:len(gt)]``, ``gt[:len(pred)]``), ``e[t, v] = pred[t, v] - gt[t, v]`` and frames pooled over
all sequences (each frame counts once, long sequences weigh more):

- **LVE** = mean over frames t of max over lip vertices v of ``|e[t, v]|^2``. The official code
  takes the *squared* distance (``np.square`` summed over x, y, z, then ``max``) although papers
  write "L2 error" in mm; ``lve_l2`` is the same with the plain distance ``|e[t, v]|`` for anyone
  comparing with a paper that took the root.
- **MVE** = mean over frames and all vertices of ``|e[t, v]|`` (``np.linalg.norm(..., axis=2)``).
- **FDD**, per sequence: displacement ``d = vertices - template(subject)``; for every upper-face
  vertex the *population* standard deviation over time of ``|d[t, v]|^2``; its mean over upper-face
  vertices is the sequence's dynamics. FDD = mean over sequences of (GT dynamics - predicted
  dynamics): **signed**, as printed by the official code (``fdd_abs`` is the mean of the absolute
  differences, FaceDiffuser's "ABS FDD").

Region files (which vertices are lips, which are upper face) come from the user: BIWI's
``regions/lve.txt`` and ``regions/fdd.txt`` (comma-separated indices); for VOCASET the FLAME masks
(``lips``; forehead and eye regions), which carry their own licence and are not shipped here.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from wav2sem_contract.errors import Wav2SemError

LIP_FILES = ("lve.txt", "lips.txt")
UPPER_FILES = ("fdd.txt", "upper_face.txt", "upper.txt")


@dataclass(frozen=True)
class Regions:
    lips: np.ndarray  # vertex indices
    upper: np.ndarray

    def check(self, n_vertices: int) -> None:
        for name, idx in (("lip", self.lips), ("upper-face", self.upper)):
            if idx.max() >= n_vertices:
                raise Wav2SemError("regions_bad", f"The {name} region names vertex {int(idx.max())}, but the meshes "
                                   f"have {n_vertices} vertices.", "Use region files made for this mesh topology.")


def read_region_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Vertex indices from a text file: integers separated by commas and/or white space (BIWI's
    ``lve.txt`` is ``"12, 13, 14"``; one index per line works too)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Wav2SemError("regions_missing", f"The region file {path} cannot be read ({exc}).",
                           "Pass --regions with lve.txt (lips) and fdd.txt (upper face).") from None
    tokens = [t for t in re.split(r"[,\s]+", text) if t]
    if not tokens or not all(re.fullmatch(r"\d+", t) for t in tokens):
        bad = next((t for t in tokens if not re.fullmatch(r"\d+", t)), "nothing")
        raise Wav2SemError("regions_bad", f"The region file {path.name} should hold vertex indices, found {bad!r}.",
                           "Write non-negative integers separated by commas or spaces.")
    return np.unique(np.array([int(t) for t in tokens], dtype=np.int64))


def _first(folder: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise Wav2SemError("regions_missing", f"{folder} has none of {', '.join(names)}.",
                       "Put the lip indices in lve.txt and the upper-face indices in fdd.txt (BIWI's names).")


def read_regions(path: str | os.PathLike[str]) -> Regions:
    """The lip and upper-face regions of a folder (``lve.txt``/``lips.txt``, ``fdd.txt``/``upper_face.txt``)."""
    folder = Path(path)
    if not folder.is_dir():
        raise Wav2SemError("regions_missing", f"The regions folder {folder} does not exist.",
                           "Pass --regions with lve.txt (lips) and fdd.txt (upper face).")
    return Regions(read_region_file(_first(folder, LIP_FILES)), read_region_file(_first(folder, UPPER_FILES)))


def upper_face_dynamics(vertices: np.ndarray, template: np.ndarray, upper: np.ndarray) -> float:
    """Mean over upper-face vertices of the population std over time of the squared displacement norm."""
    motion = vertices[:, upper, :] - template[None, upper, :]
    return float(np.square(motion).sum(axis=2).std(axis=0).mean())


@dataclass
class FaceMetrics:
    lve: float  # official: squared distance, max over lip vertices, mean over pooled frames
    lve_l2: float  # the same with the plain (not squared) distance
    mve: float
    fdd: float | None  # signed mean of GT - predicted upper-face dynamics; None without templates
    fdd_abs: float | None
    sequences: int
    frames: int
    per_sequence: list[dict[str, object]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [f"LVE     {self.lve:.4e}  (per frame the max over lip vertices of the squared error, mean over frames)",
               f"LVE-L2  {self.lve_l2:.4e}  (the same with the error's length, not its square)",
               f"MVE     {self.mve:.4e}  (mean error length over all vertices and frames)"]
        if self.fdd is None:
            out.append("FDD     n/a  (needs the subjects' templates: pass --templates)")
        else:
            out.append(f"FDD     {self.fdd:.4e}  (GT minus predicted upper-face dynamics, mean over sequences; "
                       f"mean |difference| {self.fdd_abs:.4e})")
        return out


class MetricAccumulator:
    """Adds sequences one at a time (pooled frame sums, per-sequence FDD) so a test set never has to be
    held in memory at once, as the official code's ``vertices_gt_all`` list does."""

    def __init__(self, regions: Regions) -> None:
        self.regions = regions
        self.frames = 0
        self.lve_sum = self.lve_l2_sum = self.mve_sum = 0.0
        self.fdd: list[float] = []
        self.per_sequence: list[dict[str, object]] = []

    def add(self, pred: np.ndarray, gt: np.ndarray, template: np.ndarray | None = None, name: str = "") -> None:
        """One sequence: ``pred`` and ``gt`` vertices ``(T, V, 3)`` (or ``(T, 3V)``), ``template`` ``(V, 3)``."""
        gt = np.asarray(gt, dtype=np.float64)
        pred = np.asarray(pred, dtype=np.float64)
        gt, pred = gt.reshape(len(gt), -1, 3), pred.reshape(len(pred), -1, 3)
        if gt.shape[1] != pred.shape[1]:
            raise Wav2SemError("metrics_shape", f"{name or 'The prediction'} has {pred.shape[1]} vertices, the ground "
                               f"truth {gt.shape[1]}.", "Compare predictions and ground truth of the same mesh.")
        n = min(len(pred), len(gt))
        if n == 0:
            raise Wav2SemError("metrics_shape", f"{name or 'A sequence'} has no frames.", "Check the files.")
        pred, gt = pred[:n], gt[:n]
        self.regions.check(gt.shape[1])
        sq = np.square(pred - gt).sum(axis=2)  # (T, V) squared error per vertex
        lips = sq[:, self.regions.lips].max(axis=1)
        row: dict[str, object] = {"name": name, "frames": n, "lve": float(lips.mean()),
                                  "mve": float(np.sqrt(sq).mean())}
        self.lve_sum += float(lips.sum())
        self.lve_l2_sum += float(np.sqrt(lips).sum())  # sqrt is monotonic: the max of lengths is sqrt of max
        self.mve_sum += float(np.sqrt(sq).mean(axis=1).sum())
        self.frames += n
        if template is not None:
            template = np.asarray(template, dtype=np.float64).reshape(-1, 3)
            diff = (upper_face_dynamics(gt, template, self.regions.upper)
                    - upper_face_dynamics(pred, template, self.regions.upper))
            self.fdd.append(diff)
            row["fdd"] = diff
        self.per_sequence.append(row)

    def result(self) -> FaceMetrics:
        if not self.frames:
            raise Wav2SemError("metrics_empty", "No sequences to score.", "Check the prediction and GT paths.")
        # FDD only when every sequence had its template: a partial mean would mislead
        has_fdd = len(self.fdd) == len(self.per_sequence)
        return FaceMetrics(
            lve=self.lve_sum / self.frames, lve_l2=self.lve_l2_sum / self.frames, mve=self.mve_sum / self.frames,
            fdd=float(np.mean(self.fdd)) if has_fdd else None,
            fdd_abs=float(np.mean(np.abs(self.fdd))) if has_fdd else None,
            sequences=len(self.per_sequence), frames=self.frames, per_sequence=self.per_sequence,
        )


def face_metrics(sequences: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray | None]], regions: Regions) -> FaceMetrics:
    """LVE, MVE and FDD of ``(pred, gt, template)`` triples: what training prints at its end."""
    acc = MetricAccumulator(regions)
    for pred, gt, template in sequences:
        acc.add(pred, gt, template)
    return acc.result()


# ----------------------------------------------------------------------------------- files and folders
_CONDITION = re.compile(r"_condition_.+$")  # the official test scripts' "<name>_condition_<style>.npy"


def _load_prediction(path: Path, template: np.ndarray | None) -> np.ndarray:
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if "vertices" in z.files:
                    return np.asarray(z["vertices"])
                if "offsets" in z.files:  # what ``python -m server infer`` writes for a vertex bundle
                    if template is None:
                        raise Wav2SemError("metrics_template", f"{path.name} holds offsets; adding them to the "
                                           "subject's template needs templates.pkl.", "Pass --templates.")
                    offsets = np.asarray(z["offsets"], dtype=np.float64)
                    return offsets.reshape(len(offsets), -1, 3) + template[None]
                raise Wav2SemError("metrics_file", f"{path.name} has neither 'vertices' nor 'offsets'.",
                                   "Pass vertex predictions (.npy (T, 3V) or an offsets .npz from infer).")
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise Wav2SemError("metrics_file", f"{path} cannot be read ({exc}).", "Check the file.") from None


def _stride_for(gt_dir: Path, stride: int | None) -> int:
    if stride is not None:
        return stride
    from training.datasets.registry import detect_layout

    try:  # gt_dir is <dataset>/vertices_npy: the dataset's layout says how its loader subsamples
        return detect_layout(gt_dir.parent).stride
    except Wav2SemError:
        return 1


def evaluate_files(pred: str | os.PathLike[str], gt: str | os.PathLike[str], regions: Regions,
                   templates: str | os.PathLike[str] | None = None, gt_stride: int | None = None,
                   progress: bool = True) -> tuple[FaceMetrics, int]:
    """Metrics of prediction files against ``vertices_npy`` ground truth: ``(metrics, GT stride used)``.

    ``pred`` and ``gt`` are folders (every ``<name>[_condition_<style>].npy|.npz`` in ``pred`` is scored
    against ``gt/<name>.npy``) or single files. GT rows are read every ``gt_stride``-th, by default the
    dataset's own (2 for VOCASET's 60 fps files, whose models run at 30 fps; 1 for BIWI).
    Templates (for FDD and offsets predictions) default to ``templates.pkl`` next to the GT folder.
    """
    from server.progress import console_bar
    from training.datasets.layout import parse_name, read_vertices
    from training.datasets.templates import load_templates

    pred, gt = Path(pred), Path(gt)
    if not pred.exists() or not gt.exists():
        missing = pred if not pred.exists() else gt
        raise Wav2SemError("metrics_missing", f"{missing} does not exist.", "Check --pred and --gt.")
    if pred.is_dir() != gt.is_dir():
        raise Wav2SemError("metrics_paths", "--pred and --gt must both be folders or both be files.",
                           "Pass the prediction folder and the dataset's vertices_npy folder.")
    if pred.is_dir():
        pairs = []
        for p in sorted(pred.iterdir()):
            if p.suffix in (".npy", ".npz") and p.is_file():
                pairs.append((p, gt / (_CONDITION.sub("", p.stem) + ".npy")))
        missing = [g.name for _, g in pairs if not g.is_file()]
        if missing:
            raise Wav2SemError("metrics_missing", f"{len(missing)} predictions have no ground truth in {gt} "
                               f"(first: {missing[0]}).", "Name predictions <subject>_<sentence>.npy as in vertices_npy.")
        gt_dir = gt
    else:
        pairs, gt_dir = [(pred, gt)], gt.parent
    if not pairs:
        raise Wav2SemError("metrics_empty", f"{pred} holds no .npy or .npz predictions.", "Check --pred.")
    stride = _stride_for(gt_dir, gt_stride)
    if templates is None and (gt_dir.parent / "templates.pkl").is_file():
        templates = gt_dir.parent / "templates.pkl"
    table = load_templates(templates) if templates is not None else {}
    acc = MetricAccumulator(regions)
    with console_bar(pairs, desc="metrics", unit="seq", enabled=progress) as bar:
        for p, g in bar:
            parsed = parse_name(g.stem)
            template = table.get(parsed[0]) if parsed else None
            acc.add(_load_prediction(p, template), read_vertices(g, stride), template, name=g.stem)
    return acc.result(), stride


def write_json(metrics: FaceMetrics, path: str | os.PathLike[str]) -> None:
    Path(path).write_text(json.dumps(metrics.to_dict(), indent=1) + "\n", encoding="utf-8")
