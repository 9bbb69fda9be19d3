"""``check-dataset``: what a dataset folder holds, and every place it disagrees with its layout.

The official loaders are silent about most problems (FaceFormer's ``read_data`` drops a wav without
motion and never compares lengths; a subject missing from ``templates.pkl`` is a KeyError halfway
through loading), so this check reads every file's header once and lists them all:

- ``no_motion`` / ``no_audio``: a wav without its ``.npy`` or the reverse;
- ``bad_name``: not ``<subject>_<token>`` with the layout's token (``sentenceNN``, ``eNN``);
- ``unknown_subject``: a subject in no split list; ``no_template``: a subject not in templates.pkl;
- ``bad_motion``: unreadable, not (T, 3V), NaN/inf, or a vertex count other than the template's;
- ``bad_audio``: unreadable or empty; ``length``: audio and motion durations differ by more than
  the tolerance (motion seconds = stored rows / capture fps);
- ``templates``: templates.pkl missing, unreadable or refused (it is never unpickled freely).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wav2sem_contract.errors import Wav2SemError

from .layout import TEMPLATES_FILE, VERTICES_DIR, WAV_DIR, Layout, parse_name, read_vertices
from .registry import detect_layout

DEFAULT_TOLERANCE_S = 0.2


@dataclass(frozen=True)
class Problem:
    kind: str
    name: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.name}: {self.detail}"


@dataclass
class Sequence:
    name: str
    subject: str
    sentence: int
    splits: list[str]
    frames: int = 0  # motion frames after the loader's subsampling
    audio_s: float = 0.0
    sample_rate: int = 0


@dataclass
class Report:
    root: Path
    layout: Layout
    template_vertices: dict[str, int] = field(default_factory=dict)
    sequences: list[Sequence] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def sequence_lines(self) -> list[str]:
        """One line per sequence: name, splits, motion frames, audio seconds and rate."""
        return [f"  {q.name}: {', '.join(q.splits) or 'no split'}; {q.frames} frames ({q.frames / self.layout.fps:.2f} s), "
                f"audio {q.audio_s:.2f} s at {q.sample_rate} Hz" for q in self.sequences]

    def lines(self) -> list[str]:
        lay = self.layout
        reading = "used as stored" if lay.stride == 1 else f"read [::{lay.stride}] = {lay.fps:g} fps"
        out = [f"dataset {self.root} ({lay.name} layout: motion captured at {lay.capture_fps:g} fps, {reading}; "
               f"{lay.audio_note})"]
        if self.template_vertices:
            sizes = sorted(set(self.template_vertices.values()))
            out.append(f"templates: {len(self.template_vertices)} subjects, {'/'.join(map(str, sizes))} vertices")
        by_subject: dict[str, list[Sequence]] = defaultdict(list)
        for seq in self.sequences:
            by_subject[seq.subject].append(seq)
        for subject in sorted(by_subject, key=lambda s: (s not in lay.subjects, lay.subjects.index(s)
                                                         if s in lay.subjects else 0, s)):
            seqs = by_subject[subject]
            splits = sorted({s for q in seqs for s in q.splits}) or ["none"]
            out.append(f"  {subject}: {len(seqs)} sentences ({_ranges(sorted(q.sentence for q in seqs))}), "
                       f"{sum(q.frames for q in seqs)} frames, {sum(q.audio_s for q in seqs):.1f} s audio; "
                       f"splits: {', '.join(splits)}")
        for name in lay.splits:
            members = [q for q in self.sequences if name in q.splits]
            out.append(f"split {name}: {len(members)} sequences, {sum(q.frames for q in members)} frames")
        unused = sum(1 for q in self.sequences if not q.splits)
        rates = sorted({q.sample_rate for q in self.sequences if q.sample_rate})
        out.append(f"total: {len(self.sequences)} sequences ({unused} in no split), "
                   f"{sum(q.frames for q in self.sequences)} frames at {lay.fps:g} fps, "
                   f"{sum(q.audio_s for q in self.sequences) / 3600:.3f} h audio at "
                   f"{', '.join(f'{r} Hz' for r in rates) or 'no rate'}")
        if self.problems:
            out.append(f"{len(self.problems)} problems:")
            out += [f"  {p}" for p in self.problems]
        else:
            out.append("no problems found")
        return out


def _ranges(numbers: list[int]) -> str:
    """``1-3,7`` for [1, 2, 3, 7]."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _files(folder: Path, suffix: str) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() == suffix and p.is_file()}


def check_dataset(root: str | os.PathLike[str], layout: str | None = None,
                  tolerance_s: float = DEFAULT_TOLERANCE_S, progress: bool = True) -> Report:
    """Read every file's header (and every motion file) of a dataset folder; never raises for a
    problem in the data, only for a folder that is not a dataset at all."""
    import re

    import soundfile as sf

    from server.progress import console_bar

    from .templates import load_templates

    root = Path(root)
    if not (root / WAV_DIR).is_dir() and not (root / VERTICES_DIR).is_dir():
        raise Wav2SemError("dataset_missing", f"{root} has neither a {WAV_DIR}/ nor a {VERTICES_DIR}/ folder.",
                           "Pass the dataset folder itself (the one holding wav/, vertices_npy/ and templates.pkl).")
    lay = detect_layout(root, layout)
    report = Report(root, lay)
    templates: dict[str, np.ndarray] = {}
    try:
        templates = load_templates(root / TEMPLATES_FILE)
        report.template_vertices = {k: len(v) for k, v in templates.items()}
    except Wav2SemError as exc:
        report.problems.append(Problem("templates", TEMPLATES_FILE, exc.message))
    wavs, motions = _files(root / WAV_DIR, ".wav"), _files(root / VERTICES_DIR, ".npy")
    names = sorted(set(wavs) | set(motions))
    token = re.compile(lay.sentence_token)
    with console_bar(names, desc="checking", unit="seq", enabled=progress) as bar:
        for name in bar:
            problems = _check_one(name, wavs.get(name), motions.get(name), lay, token, templates, tolerance_s,
                                  report, sf)
            report.problems += problems
    return report


def _check_one(name, wav, motion, lay: Layout, token, templates, tolerance_s: float, report: Report,
               sf) -> list[Problem]:
    problems: list[Problem] = []
    parsed = parse_name(name)
    if parsed is None or not token.fullmatch(parsed[1]):
        problems.append(Problem("bad_name", name, f"not <subject>_<{lay.sentence_token}> as {lay.name} names files"))
        return problems
    subject, _, sentence = parsed
    seq = Sequence(name, subject, sentence, lay.splits_of(subject, sentence))
    report.sequences.append(seq)
    if subject not in lay.subjects:
        problems.append(Problem("unknown_subject", name, f"subject {subject} is in none of the {lay.name} split "
                                "lists (train, val, test)"))
    if templates and subject not in templates:
        problems.append(Problem("no_template", name, f"subject {subject} has no template in {TEMPLATES_FILE}"))
    if wav is None:
        problems.append(Problem("no_audio", name, f"{VERTICES_DIR}/{name}.npy has no {WAV_DIR}/{name}.wav"))
    else:
        try:
            info = sf.info(str(wav))
            seq.audio_s, seq.sample_rate = info.frames / info.samplerate, int(info.samplerate)
            if info.frames == 0:
                problems.append(Problem("bad_audio", name, "the wav holds no samples"))
        except Exception as exc:  # libsndfile says why in its own words
            problems.append(Problem("bad_audio", name, f"unreadable wav ({exc})"))
    if motion is None:
        problems.append(Problem("no_motion", name, f"{WAV_DIR}/{name}.wav has no {VERTICES_DIR}/{name}.npy "
                                "(the official loaders skip it silently)"))
        return problems
    try:
        rows = read_vertices(motion, mmap=True)
    except Exception as exc:  # allow_pickle=False refusals, truncated files
        problems.append(Problem("bad_motion", name, f"unreadable .npy ({type(exc).__name__}: {exc})"))
        return problems
    if rows.ndim != 2 or rows.shape[1] % 3 or rows.shape[0] == 0 or rows.dtype.kind not in "fiu":
        problems.append(Problem("bad_motion", name, f"shape {rows.shape} dtype {rows.dtype}, not (frames, 3V) numbers"))
        return problems
    seq.frames = len(rows[:: lay.stride])
    vertices = rows.shape[1] // 3
    # the subject's own template, else the size all templates share, else the layout's (5023, 23370)
    sizes = {len(t) for t in templates.values()}
    expected = (len(templates[subject]) if subject in templates else sizes.pop() if len(sizes) == 1
                else lay.n_vertices)
    if expected is not None and vertices != expected:
        problems.append(Problem("bad_motion", name, f"{vertices} vertices per frame, the template has {expected}"))
    if not np.isfinite(rows).all():
        problems.append(Problem("bad_motion", name, "NaN or infinite coordinates"))
    if wav is not None and seq.sample_rate:
        motion_s = len(rows) / lay.capture_fps
        if abs(motion_s - seq.audio_s) > tolerance_s:
            problems.append(Problem("length", name, f"audio {seq.audio_s:.2f} s but motion {motion_s:.2f} s "
                                    f"({len(rows)} frames at {lay.capture_fps:g} fps); tolerance {tolerance_s:g} s"))
    return problems
