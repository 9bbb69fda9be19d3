"""Stage 2: train the motion decoder on the frozen phonetic (and semantic) encoders.

Teacher forcing with the inference loop's exact token layout (first token = bare style,
then ``motion_in(previous frame) + style``), in two passes per batch: the second feeds the
first pass's own (detached) predictions back, so the decoder learns to recover from its
own errors as it must when decoding autoregressively. Loss: MSE on controls plus MSE on
their frame-to-frame velocity, with the frames where the target closes the lips weighted
``closure_weight`` times: they are about one frame in twelve, and a model trained with
every frame equal learnt to close once for two bilabials 150-300 ms apart and to skip short
ones in clusters (real speech, README).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from server.models.faceformer import FaceFormer
from server.progress import console_bar
from wav2sem_contract.controls import CONTROLS

from .examples import Example, batches, pad


def memory_from_states(model: FaceFormer, frames: torch.Tensor, states: torch.Tensor | None,
                       states_mask: torch.Tensor | None) -> torch.Tensor:
    """(B, T, d) motion-rate frames [+ semantic vector of the 50 Hz states] -> (B, T, d_model)."""
    if states is not None and model.semantic is not None:
        frames = frames + model.semantic.project(model.semantic.encoder(states, states_mask))[:, None]
    return model.audio_proj(frames)


def forced(model: FaceFormer, memory: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """Outputs (B, T, K) given the previous frames each token feeds back (B, T, K)."""
    style = model.style(torch.ones(1, device=memory.device))  # the single default style
    tokens = model.motion_in(previous[:, :-1]) + style
    tokens = torch.cat([style.expand(memory.shape[0], 1, -1), tokens], dim=1)
    return model.motion_out(model.decoder.forward_full(tokens, memory))


CLOSE = CONTROLS.index("mouthClose")
CLOSED = 0.5  # the closure threshold of wav2sem_contract.lipsync


def masked_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                closure_weight: float = 1.0) -> torch.Tensor:
    """Weighted MSE on controls and on their velocity; padded frames count nothing, frames whose
    target closes the lips count ``closure_weight`` (a velocity term takes its two frames' larger weight)."""
    keep = (~mask).unsqueeze(-1).to(pred.dtype)
    keep = keep * (1.0 + (closure_weight - 1.0) * (target[..., CLOSE : CLOSE + 1] >= CLOSED).to(pred.dtype))
    mse = ((pred - target) ** 2 * keep).sum() / (keep.sum() * pred.shape[-1])
    both = (keep[:, 1:] > 0) & (keep[:, :-1] > 0)
    vel_keep = torch.maximum(keep[:, 1:], keep[:, :-1]) * both.to(pred.dtype)
    vel = (((pred[:, 1:] - pred[:, :-1]) - (target[:, 1:] - target[:, :-1])) ** 2 * vel_keep).sum()
    return mse + 0.5 * vel / (vel_keep.sum() * pred.shape[-1]).clamp(min=1)


def train_decoder(
    model: FaceFormer,
    train: list[Example],
    *,
    semantic: bool,
    epochs: int = 60,
    batch_size: int = 16,
    lr: float = 5e-4,
    noise: float = 0.03,
    closure_weight: float = 1.0,
    seed: int = 0,
    log=print,
) -> tuple[FaceFormer, dict]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    for p in model.audio_encoder.parameters():
        p.requires_grad_(False)
    if model.semantic is not None:
        for p in model.semantic.encoder.parameters():
            p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    history = []
    started = time.perf_counter()
    with console_bar(total=epochs, desc=f"decoder {'with' if semantic else 'without'} Wav2Sem", unit="epoch") as bar:
        for epoch in range(epochs):
            model.train()
            if model.semantic is not None:
                model.semantic.encoder.eval()  # frozen means no dropout either (official bug 2)
            total, count = 0.0, 0
            for batch in batches(train, batch_size, rng):
                frames, mask = pad([e.frames for e in batch])
                targets, _ = pad([e.targets for e in batch])
                states, states_mask = pad([e.states for e in batch]) if semantic else (None, None)
                memory = memory_from_states(model, frames, states, states_mask)
                first = forced(model, memory, targets + noise * torch.randn_like(targets))
                second = forced(model, memory, first.detach())
                loss = (masked_loss(first, targets, mask, closure_weight)
                        + masked_loss(second, targets, mask, closure_weight))
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                total, count = total + loss.item() * len(batch), count + len(batch)
            sched.step()
            history.append(total / count)
            bar.set_postfix_str(f"loss {history[-1]:.5f}", refresh=False)
            bar.update()
            if epoch % 5 == 4 or epoch == epochs - 1:
                log(f"decoder ({'with' if semantic else 'without'} Wav2Sem) epoch {epoch + 1}/{epochs}: "
                    f"loss {history[-1]:.5f}")
    return model.eval(), {"loss": history[-1], "seconds": round(time.perf_counter() - started, 1)}


@torch.no_grad()
def decode(model: FaceFormer, example: Example, semantic: bool) -> torch.Tensor:
    """Autoregressive prediction (T, K) from the example's cached states, as inference runs."""
    model.eval()
    states = example.states[None] if semantic and model.semantic is not None else None
    memory = memory_from_states(model, example.frames[None], states, None)[0]
    style = model.style(torch.ones(1))
    return model.motion_out(model.decode_states(memory, style))
