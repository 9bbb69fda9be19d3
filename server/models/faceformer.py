"""FaceFormer (Fan et al., CVPR 2022), optionally with Wav2Sem fused into its audio frames.

Decoding is incremental (cached keys/values, per-frame cross-attention), which is exact
because every part of the loop is causal. Two further exact savings:

* the feedback ``motion_in(motion_out(y))`` is one ``d x d`` affine map (computed in
  float64), so the ``3V``-wide output is never needed inside the loop;
* the output is ``Y @ W_out^T + b_out``: the decoder states ``Y`` (T, d) with the columns of
  ``W_out`` plus the bias are an exact compact basis for the Blender writer.
"""

from __future__ import annotations

import torch
from torch import nn

from ..compact import exact_linear_basis
from ..threads import sequential
from .host import HostModel, Progress, no_progress


class FaceFormer(HostModel):
    arch = "faceformer"
    description = "FaceFormer (official VOCASET/BIWI checkpoints, and the embedded default's decoder)"
    exact_compact = True
    official_style_key = "obj_vector.weight"
    official_style_transposed = True

    def __init__(self, spec, encoder_config, semantic_config=None, fusion="consistent") -> None:
        super().__init__(spec, encoder_config, semantic_config, fusion)
        self.motion_out = nn.Linear(spec.d_model, spec.out_dim)

    @property
    def output_layer(self) -> nn.Linear:
        return self.motion_out

    def feedback_map(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, c) with ``motion_in(motion_out(y)) == y @ A.T + c``, composed in float64."""
        w_in, b_in = self.motion_in.weight.double(), self.motion_in.bias.double()
        w_out, b_out = self.motion_out.weight.double(), self.motion_out.bias.double()
        dtype = self.motion_in.weight.dtype
        return (w_in @ w_out).to(dtype), (w_in @ b_out + b_in).to(dtype)

    @torch.no_grad()
    def decode_states(
        self, memory: torch.Tensor, style: torch.Tensor, progress: Progress = no_progress
    ) -> torch.Tensor:
        """Cached autoregressive decoding: memory (S, d), style (d,) -> states Y (T, d)."""
        n = self.n_frames(memory)
        a, c = self.feedback_map()
        out = torch.empty(n, self.spec.d_model, device=memory.device, dtype=memory.dtype)
        token = style
        every = max(1, n // 100)
        with sequential(memory.device):  # hundreds of tiny operations per frame: see server/threads.py
            state = self.decoder.start(memory, n)
            for i in range(n):
                y = state.step(token)
                out[i] = y
                token = y @ a.T + c + style
                if i % every == 0:
                    progress("decode", i / n)
        progress("decode", 1.0)
        return out

    @torch.no_grad()
    def decode(self, memory: torch.Tensor, style: torch.Tensor, progress: Progress = no_progress) -> torch.Tensor:
        return self.motion_out(self.decode_states(memory, style, progress))

    @torch.no_grad()
    def generate_compact(self, input_values, style_weights, semantic=True, progress=no_progress, *,
                         semantic_vector=None) -> dict:
        """Exact: offsets = states @ W.T + b, so the output layer's columns are the basis."""
        states = self.generate_states(input_values, style_weights, semantic, progress, semantic_vector=semantic_vector)
        return exact_linear_basis(states, self.motion_out.weight, self.motion_out.bias)

    @torch.no_grad()
    def generate_states(self, input_values, style_weights, semantic=True, progress=no_progress, *,
                        semantic_vector=None):
        progress("encode", 0.0)
        memory = self.memory(input_values, semantic, semantic_vector=semantic_vector)
        progress("encode", 1.0)
        return self.decode_states(memory, self.style(style_weights), progress)

    @torch.no_grad()
    def decode_reference(
        self, memory: torch.Tensor, style: torch.Tensor, progress: Progress = no_progress
    ) -> torch.Tensor:
        """The official loop: re-run the whole prefix and the 3V output layer at every frame.

        Quadratic in length; kept as the reference the tests and the benchmark compare with.
        """
        n = self.n_frames(memory)
        tokens = style[None, None]
        offsets = None
        for i in range(n):
            states = self.decoder.forward_full(tokens, memory[None])
            offsets = self.motion_out(states)
            nxt = self.motion_in(offsets[:, -1]) + style
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
            progress("decode", (i + 1) / n)
        return offsets[0]
