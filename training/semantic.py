"""Stage 1 (the paper's first stage): train the semantic encoder.

Audio -> the sentence embedding of its transcript (the text teacher), with an L1 loss on
the time-mean of the encoder's per-frame outputs, as Wav2Sem does. Unlike the official
loader, every utterance is used (not the last one of each chapter), and the encoder is in
eval mode wherever it is used frozen later.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from server.models.wav2sem import SemanticHead, SemanticHeadSpec
from server.progress import console_bar

from .examples import Example, batches, pad


def predict(head: SemanticHead, examples: list[Example], batch_size: int = 64) -> torch.Tensor:
    head.eval()
    out = []
    with torch.no_grad():
        for batch in batches(examples, batch_size, None):
            states, mask = pad([e.states for e in batch])
            out.append((batch, head(states, mask)))
    # restore the examples' order
    index = {id(e): i for i, e in enumerate(examples)}
    result = torch.empty(len(examples), head.spec.out_width)
    for batch, vectors in out:
        for e, v in zip(batch, vectors, strict=True):
            result[index[id(e)]] = v
    return result


def evaluate(head: SemanticHead, examples: list[Example], seed: int = 0) -> dict[str, float]:
    """Cosine of predicted vs true embedding, and vs a shuffled (wrong-sentence) baseline."""
    if not examples:
        return {}
    pred = torch.nn.functional.normalize(predict(head, examples), dim=-1)
    truth = torch.stack([e.embedding for e in examples])
    rng = np.random.default_rng(seed)
    texts = np.array([e.clip["text"] for e in examples])
    perm = rng.permutation(len(examples))
    for i in range(len(perm)):  # a different sentence for every clip
        if texts[perm[i]] == texts[i]:
            perm[i] = (perm[i] + 1) % len(perm)
    cos = (pred * truth).sum(-1)
    shuffled = (pred * truth[torch.from_numpy(perm)]).sum(-1)
    retrieval = _retrieval_accuracy(pred, truth, texts)
    return {"cosine": float(cos.mean()), "cosine_shuffled": float(shuffled.mean()), "retrieval_top1": retrieval,
            "clips": len(examples)}


def _retrieval_accuracy(pred: torch.Tensor, truth: torch.Tensor, texts: np.ndarray) -> float:
    """Share of clips whose nearest teacher embedding (among the set's sentences) is their own."""
    unique, inverse = np.unique(texts, return_inverse=True)
    first = [int(np.flatnonzero(inverse == k)[0]) for k in range(len(unique))]
    bank = truth[first]
    best = (pred @ bank.t()).argmax(-1).numpy()
    return float((best == inverse).mean())


def train_semantic(
    train: list[Example],
    held_out: dict[str, list[Example]],
    spec: SemanticHeadSpec,
    *,
    epochs: int = 40,
    batch_size: int = 32,
    lr: float = 3e-4,
    seed: int = 0,
    log=print,
) -> tuple[SemanticHead, dict]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head = SemanticHead(spec)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    started = time.perf_counter()
    with console_bar(total=epochs, desc="semantic stage", unit="epoch") as bar:
        for epoch in range(epochs):
            head.train()
            total, count = 0.0, 0
            for batch in batches(train, batch_size, rng):
                states, mask = pad([e.states for e in batch])
                target = torch.stack([e.embedding for e in batch])
                loss = (head(states, mask) - target).abs().mean()
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
                opt.step()
                total, count = total + loss.item() * len(batch), count + len(batch)
            sched.step()
            bar.set_postfix_str(f"L1 {total / count:.4f}", refresh=False)
            bar.update()
            if epoch % 5 == 4 or epoch == epochs - 1:
                log(f"semantic epoch {epoch + 1}/{epochs}: L1 {total / count:.4f}")
    metrics = {name: evaluate(head, exs, seed) for name, exs in held_out.items()}
    metrics["train"] = evaluate(head, train[:500], seed)
    metrics["seconds"] = round(time.perf_counter() - started, 1)
    return head.eval(), metrics
