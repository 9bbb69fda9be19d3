"""Which layout a dataset folder follows: an official one (``vocaset``, ``biwi``), or the one its
``dataset.json`` describes (``make-dataset`` writes one with its own subjects and splits); without
that file the official splits of the layout apply.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from wav2sem_contract.errors import Wav2SemError

from . import biwi, vocaset
from .layout import MANIFEST_FILE, VERTICES_DIR, WAV_DIR, Layout, Split, parse_name

LAYOUTS = {"vocaset": vocaset.LAYOUT, "biwi": biwi.LAYOUT}


def official(name: str) -> Layout:
    """The official layout called ``vocaset`` or ``biwi``."""
    if name not in LAYOUTS:
        raise Wav2SemError("dataset_layout", f"Unknown dataset layout '{name}'.", "Use vocaset or biwi.")
    return LAYOUTS[name]


def _from_manifest(path: Path) -> Layout:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        base = official(str(meta["layout"]))
        splits = {k: Split(tuple(str(s) for s in v["subjects"]), (int(v["sentences"][0]), int(v["sentences"][1])))
                  for k, v in meta.get("splits", {}).items()} or base.splits
        return Layout(
            name=base.name,
            capture_fps=float(meta.get("capture_fps", base.capture_fps)),
            stride=int(meta.get("stride", base.stride)),
            sentence_token=str(meta.get("sentence_token", base.sentence_token)),
            splits=splits,
            n_vertices=meta.get("n_vertices", base.n_vertices),
            audio_note=base.audio_note,
            extra={k: v for k, v in meta.items() if k in ("synthetic",)},
        )
    except Wav2SemError:
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise Wav2SemError("dataset_manifest", f"{path} cannot be read as a dataset description "
                           f"({type(exc).__name__}: {exc}).", "Fix or delete it to use the official splits.") from None


def detect_layout(root: str | os.PathLike[str], name: str | None = None) -> Layout:
    """The layout of a dataset folder: ``name`` if given, else its ``dataset.json``, else guessed from the
    file names (``..._sentenceNN`` is VOCASET, ``..._eNN`` is BIWI)."""
    root = Path(root)
    manifest = root / MANIFEST_FILE
    if manifest.is_file():
        layout = _from_manifest(manifest)
        if name is None or name == layout.name:
            return layout
    if name is not None:
        return official(name)
    stems = [p.stem for d in (WAV_DIR, VERTICES_DIR) if (root / d).is_dir() for p in sorted((root / d).iterdir())]
    for stem in stems:
        parsed = parse_name(stem)
        if parsed is None:
            continue
        if re.fullmatch(r"sentence\d\d", parsed[1]):
            return official("vocaset")
        if re.fullmatch(r"e\d\d", parsed[1]):
            return official("biwi")
    raise Wav2SemError("dataset_layout", f"Cannot tell whether {root} is VOCASET or BIWI from its file names.",
                       "Pass --layout vocaset or --layout biwi.")
