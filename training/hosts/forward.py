"""FaceFormer's training forward, with gradients and the official dropout.

The inference modules in ``server/models`` have no dropout and decode under ``no_grad`` with a
cache; training needs neither restriction, so the decoder is run here from the same weights:

- ``decoder_states``: the whole-prefix pass of ``CausalDecoder.forward_full`` plus the dropout that
  ``nn.TransformerDecoderLayer`` (p = 0.1) and FaceFormer's PPE apply in train mode: after the
  positional encoding, on attention weights, after each sub-layer and inside the feed-forward;
- ``autoregressive_offsets``: what official ``main.py`` trains with (``teacher_forcing=False``):
  the ``predict`` loop with gradients through every fed-back frame, new dropout masks each step;
- ``teacher_forced_offsets``: the official ``teacher_forcing=True`` path (its validation loss),
  whose first token is ``vertice_map(0) + style`` (the bias included), unlike ``predict``.

With dropout off the autoregressive loss is the official ``forward`` loss exactly
(``tests/test_train_host.py`` checks it against the parity fixture's official output).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from server.models.decoding import (
    Attention,
    CausalDecoder,
    DecoderLayer,
    alignment_windows,
    causal_alibi_mask,
)
from server.models.host import HostModel
from wav2sem_contract.errors import Wav2SemError

DROPOUT = 0.1  # nn.TransformerDecoderLayer's default and FaceFormer's PPE dropout


def _attend(att: Attention, query: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor, p: float) -> torch.Tensor:
    q = att._split(att.project(query, slice(0, 1)))
    k, v = (att._split(t) for t in att.project(memory, slice(1, 3)).chunk(2, dim=-1))
    if mask.dtype == torch.bool:
        mask = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(mask, float("-inf"))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
    return att.out_proj(out.transpose(-3, -2).flatten(-2))


def _layer(layer: DecoderLayer, x: torch.Tensor, memory: torch.Tensor, self_mask: torch.Tensor,
           cross_mask: torch.Tensor, p: float) -> torch.Tensor:
    x = layer.norm_self(x + F.dropout(_attend(layer.self_attn, x, x, self_mask, p), p))
    x = layer.norm_cross(x + F.dropout(_attend(layer.cross_attn, x, memory, cross_mask, p), p))
    hidden = F.dropout(F.relu(layer.ff_in(x)), p)
    return layer.norm_ff(x + F.dropout(layer.ff_out(hidden), p))


def decoder_states(decoder: CausalDecoder, tokens: torch.Tensor, memory: torch.Tensor, p: float) -> torch.Tensor:
    """tokens (1, T, d), memory (1, S, d) -> states (1, T, d); ``p`` the dropout probability (0 in eval)."""
    n = tokens.shape[1]
    x = F.dropout(tokens + decoder.positional(0, n), p)
    self_mask = causal_alibi_mask(decoder.n_head, decoder.period, n, tokens.device)
    cross_mask = alignment_windows(n, memory.shape[1], decoder.audio_per_frame).to(tokens.device)
    for layer in decoder.layers:
        x = _layer(layer, x, memory, self_mask, cross_mask, p)
    return x


def training_memory(model: HostModel, input_values: torch.Tensor, n_frames: int) -> tuple[torch.Tensor, int]:
    """(N,) normalised audio -> (memory (1, S, d), frames usable), the audio features computed for the
    ground truth's frame count as official ``forward`` does (VOCASET: interpolated to ``n_frames``; BIWI:
    two audio frames per motion frame, the motion cut when the audio is shorter)."""
    encoder = model.audio_encoder
    if not getattr(encoder, "normalized_input", False) or not hasattr(encoder, "conv_features"):
        raise Wav2SemError("train_encoder", "Host training needs a wav2vec2/HuBERT audio encoder.",
                           "Pass --encoder with a Hugging Face wav2vec2 or HuBERT folder.")
    x = input_values.reshape(1, -1)
    frames = encoder(x, frame_num=n_frames)
    usable = n_frames if model.spec.audio_per_frame == 1 else min(n_frames, frames.shape[1] // 2)
    if model.semantic is not None:
        frames = model.semantic(frames, x)
    return model.audio_proj(frames), usable


def autoregressive_offsets(model: HostModel, memory: torch.Tensor, style: torch.Tensor, n_frames: int,
                           p: float) -> torch.Tensor:
    """The official training loop: (1, n_frames, out_dim) offsets, gradients through every fed-back frame.

    Each step re-runs the decoder over the whole prefix (fresh dropout masks, as the official loop
    draws them); only the last step's outputs are the prediction, its earlier rows feed nothing back.
    """
    style = style.reshape(1, 1, -1)
    tokens = style
    states = None
    for i in range(n_frames):
        states = decoder_states(model.decoder, tokens, memory, p)
        if i + 1 < n_frames:
            # motion_in(motion_out(y)): the offsets of the last frame become the next input token
            nxt = model.motion_in(model.output_layer(states[:, -1:])) + style
            tokens = torch.cat([tokens, nxt], dim=1)
    return model.output_layer(states)


def teacher_forced_offsets(model: HostModel, memory: torch.Tensor, style: torch.Tensor, target: torch.Tensor,
                           p: float) -> torch.Tensor:
    """target offsets (1, T, out_dim) -> predicted offsets (1, T, out_dim) from the shifted ground truth."""
    shifted = torch.cat([torch.zeros_like(target[:, :1]), target[:, :-1]], dim=1)
    tokens = model.motion_in(shifted) + style.reshape(1, 1, -1)
    return model.output_layer(decoder_states(model.decoder, tokens, memory, p))


def sequence_loss(model: HostModel, input_values: torch.Tensor, vertices: torch.Tensor, template: torch.Tensor,
                  style_weights: torch.Tensor, *, teacher_forcing: bool = False,
                  dropout: float | None = None) -> torch.Tensor:
    """The official ``forward`` loss of one sequence: MSE of predicted vs ground-truth vertices.

    ``vertices`` (T, 3V), ``template`` (3V,), ``style_weights`` (n_subjects,); ``dropout`` defaults to
    0.1 in train mode and 0 in eval mode."""
    p = (DROPOUT if model.training else 0.0) if dropout is None else dropout
    memory, usable = training_memory(model, input_values, vertices.shape[0])
    target = (vertices[:usable] - template.reshape(1, -1))[None]
    style = model.style(style_weights)
    if teacher_forcing:
        offsets = teacher_forced_offsets(model, memory, style, target, p)
    else:
        offsets = autoregressive_offsets(model, memory, style, usable, p)
    return F.mse_loss(offsets + template.reshape(1, 1, -1), vertices[:usable][None])
