"""CodeTalker (Xing et al., CVPR 2023): a motion VQ-VAE (stage 1) and a speech-to-code predictor (stage 2).

Stage 1 reproduces the quirks of the official code that parity depends on:
attention scaled by 1/sqrt(hidden) (full width), tanh-GELU, pre-LN blocks without a final
norm, one constant "positional" vector (the official table is indexed by the batch axis),
InstanceNorm over time without affine, replicate padding, BIWI's extra linears.

Stage 2 decodes autoregressively; every step quantises the new frame's features and feeds
back the *last frame of the stage-1 decode of the whole prefix*. That decode is non-causal
(InstanceNorm statistics and bidirectional attention over the prefix), so it must be redone
each step to stay exact. ``FeedbackDecoder`` does only what changes: conv outputs of all
but the last frames are cached, and the last block and the 3V output layer run for the
final frame only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from wav2sem_contract.errors import ModelError

from ..threads import parallel, sequential
from .checkpoints import layer_count, map_stage1, need, read_state_dict, take_prefix
from .decoding import periodic_encoding
from .host import HostModel, Progress, no_progress
from .windows import blend, spans


@dataclass
class VQSpec:
    hidden: int
    n_layers: int
    n_heads: int
    intermediate: int
    codes_per_frame: int  # official face_quan_num
    code_dim: int  # official zquant_dim
    n_codes: int  # official n_embed
    neg_slope: float = 0.2
    code_projection: bool = False  # BIWI: Linear after the encoder / before the decoder
    output_bias: bool = True  # BIWI's output layer has no bias

    @property
    def frame_code_width(self) -> int:
        return self.codes_per_frame * self.code_dim


class VQBlock(nn.Module):
    """x + Attn(LN(x)), then x + MLP(LN(x)); attention scaled by the full width."""

    def __init__(self, hidden: int, n_heads: int, intermediate: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.scale = hidden**-0.5
        self.attn_norm = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden, bias=False)
        self.attn_out = nn.Linear(hidden, hidden)
        self.mlp_norm = nn.LayerNorm(hidden)
        self.mlp_in = nn.Linear(hidden, intermediate)
        self.mlp_out = nn.Linear(intermediate, hidden)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        # "(qkv h d)" channel order: q, k, v blocks, heads contiguous inside each
        return x.unflatten(-1, (self.n_heads, -1)).transpose(-3, -2)

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp_out(F.gelu(self.mlp_in(self.mlp_norm(x)), approximate="tanh"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (self._heads(t) for t in self.qkv(self.attn_norm(x)).chunk(3, dim=-1))
        att = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        x = x + self.attn_out(att.transpose(-3, -2).flatten(-2))
        return self.mlp(x)

    def forward_last(self, x: torch.Tensor) -> torch.Tensor:
        """The output at the last position only (keys/values still from every position)."""
        q, k, v = (self._heads(t) for t in self.qkv(self.attn_norm(x)).chunk(3, dim=-1))
        att = F.scaled_dot_product_attention(q[..., -1:, :], k, v, scale=self.scale)
        x = x[..., -1:, :] + self.attn_out(att.transpose(-3, -2).flatten(-2))
        return self.mlp(x)


class ConvNorm(nn.Module):
    """Conv1d(k=5, replicate padding) -> LeakyReLU -> InstanceNorm over time (no affine)."""

    def __init__(self, channels: int, neg_slope: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 5)
        self.neg_slope = neg_slope

    def activations(self, x: torch.Tensor, left: int = 2, right: int = 2) -> torch.Tensor:
        """(B, T, C) -> LeakyReLU(conv(x)) with ``left``/``right`` replicated frames of padding."""
        x = F.pad(x.transpose(1, 2), (left, right), mode="replicate")
        return F.leaky_relu(self.conv(x), self.neg_slope).transpose(1, 2)

    @staticmethod
    def normalize(h: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(h.transpose(1, 2)).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.activations(x))


class VQEncoder(nn.Module):
    def __init__(self, spec: VQSpec, in_dim: int) -> None:
        super().__init__()
        self.neg_slope = spec.neg_slope
        self.vertex_in = nn.Linear(in_dim, spec.hidden)
        self.conv = ConvNorm(spec.hidden, spec.neg_slope)
        self.embed = nn.Linear(spec.hidden, spec.hidden)
        self.register_buffer("position", periodic_encoding(spec.hidden, 1)[0])
        self.blocks = nn.ModuleList(
            VQBlock(spec.hidden, spec.n_heads, spec.intermediate) for _ in range(spec.n_layers)
        )
        self.post = nn.Linear(spec.hidden, spec.frame_code_width) if spec.code_projection else None

    def forward(self, offsets: torch.Tensor) -> torch.Tensor:
        """(B, T, 3V) offsets -> (B, T, codes_per_frame * code_dim) continuous codes."""
        x = F.leaky_relu(self.vertex_in(offsets), self.neg_slope)
        x = self.embed(self.conv(x)) + self.position
        for block in self.blocks:
            x = block(x)
        return self.post(x) if self.post is not None else x


class VQDecoder(nn.Module):
    def __init__(self, spec: VQSpec, out_dim: int) -> None:
        super().__init__()
        self.pre = nn.Linear(spec.frame_code_width, spec.hidden) if spec.code_projection else None
        self.conv = ConvNorm(spec.hidden, spec.neg_slope)
        self.embed = nn.Linear(spec.hidden, spec.hidden)
        self.register_buffer("position", periodic_encoding(spec.hidden, 1)[0])
        self.blocks = nn.ModuleList(
            VQBlock(spec.hidden, spec.n_heads, spec.intermediate) for _ in range(spec.n_layers)
        )
        self.vertex_out = nn.Linear(spec.hidden, out_dim, bias=spec.output_bias)

    def project_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return self.pre(codes) if self.pre is not None else codes

    def transform(self, h: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """Normalised conv activations (B, T, hidden) -> decoder features (all, or the last frame)."""
        x = self.embed(h) + self.position
        blocks = list(self.blocks)
        if last_only:
            for block in blocks[:-1]:
                x = block(x)
            return blocks[-1].forward_last(x) if blocks else x[..., -1:, :]
        for block in blocks:
            x = block(x)
        return x

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, T, codes_per_frame * code_dim) quantised codes -> (B, T, 3V) offsets."""
        return self.vertex_out(self.transform(self.conv(self.project_codes(codes))))


class MotionVQ(nn.Module):
    """Stage 1: the motion VQ-VAE (the encoder is only used for training)."""

    def __init__(self, spec: VQSpec, out_dim: int) -> None:
        super().__init__()
        self.spec = spec
        self.encoder = VQEncoder(spec, out_dim)
        self.decoder = VQDecoder(spec, out_dim)
        self.codebook = nn.Embedding(spec.n_codes, spec.code_dim)

    def quantize(self, features: torch.Tensor) -> torch.Tensor:
        """(..., codes_per_frame * code_dim) -> nearest codebook vectors, same shape.

        Distances are computed as the official quantiser does (|z|^2 + |e|^2 - 2 z.e) so that
        ties and near-ties resolve identically.
        """
        z = features.reshape(-1, self.spec.code_dim)
        e = self.codebook.weight
        d = (z**2).sum(1, keepdim=True) + (e**2).sum(1) - 2 * (z @ e.t())
        return e[d.argmin(dim=1)].reshape(features.shape)


class FeedbackDecoder:
    """Exact last-frame stage-1 decodes of a growing prefix of code frames."""

    def __init__(self, decoder: VQDecoder, max_len: int, like: torch.Tensor) -> None:
        self.dec = decoder
        hidden = decoder.embed.in_features
        self.inputs = torch.empty(1, max_len, hidden, device=like.device, dtype=like.dtype)
        self.acts = torch.empty(1, max_len, hidden, device=like.device, dtype=like.dtype)
        self.n = 0

    def push(self, code_frame: torch.Tensor) -> torch.Tensor:
        """Append one quantised code frame (width,) and return the prefix decode's last frame (3V,)."""
        n = self.n + 1
        self.inputs[0, n - 1] = self.dec.project_codes(code_frame)
        self.n = n
        if n == 1:
            # Official step 0: a one-frame prefix is decoded as two copies of that frame
            # (InstanceNorm over a single frame would be degenerate) and frame 0 is kept.
            pair = self.inputs[:, :1].expand(1, 2, -1)
            return self.dec.vertex_out(self.dec.transform(self.dec.conv(pair))[:, 0])[0]
        # Conv outputs at j <= n-4 saw no replicated right padding and are final; redo the rest.
        lo = max(0, n - 3)
        start = max(0, lo - 2)
        self.acts[:, lo:n] = self.dec.conv.activations(self.inputs[:, start:n], left=2 - (lo - start), right=2)
        h = self.dec.conv.normalize(self.acts[:, :n])
        return self.dec.vertex_out(self.dec.transform(h, last_only=True))[0, -1]


class CodeTalker(HostModel):
    arch = "codetalker"
    description = "CodeTalker stage 2 over its stage-1 motion VQ-VAE"
    official_style_key = "learnable_style_emb.weight"
    official_style_transposed = False
    convert_options = ("vqvae", "vq_heads")
    bundle_fields = {"vq": VQSpec}

    def __init__(self, spec, encoder_config, vq_spec: VQSpec, semantic_config=None, fusion="consistent"):
        super().__init__(spec, encoder_config, semantic_config, fusion)
        self.vq = MotionVQ(vq_spec, spec.out_dim)
        self.feat_map = nn.Linear(spec.d_model, vq_spec.frame_code_width, bias=False)

    @property
    def output_layer(self) -> nn.Linear:
        return self.vq.decoder.vertex_out

    @classmethod
    def from_meta(cls, spec, encoder_config, semantic_config, fusion, meta):
        return cls(spec, encoder_config, VQSpec(**meta["vq"]), semantic_config, fusion)

    def bundle_extra(self) -> dict:
        return {"vq": asdict(self.vq.spec)}

    @classmethod
    def from_official(cls, spec, encoder_config, semantic_config, fusion, state, source, options):
        """Stage 2 from ``state``; stage 1 from its ``autoencoder.*`` keys or the ``vqvae`` file."""
        stage1 = take_prefix(state, "autoencoder.")
        if options.get("vqvae"):
            stage1 = read_state_dict(options["vqvae"])
        if not stage1:
            raise ModelError(
                "checkpoint_mismatch",
                f"{source} does not include the stage-1 VQ-VAE weights.",
                "Pass the stage-1 checkpoint with --vqvae.",
            )
        vq_spec = vq_spec_of(stage1, state, options.get("vq_heads", 8), source)
        model = cls(spec, encoder_config, vq_spec, semantic_config, fusion)
        mapped = model.official_host_weights(state)
        mapped.update({f"vq.{k}": v for k, v in map_stage1(stage1).items()})
        return model, mapped

    @torch.no_grad()
    def decode_codes(
        self, memory: torch.Tensor, style: torch.Tensor, progress: Progress = no_progress
    ) -> torch.Tensor:
        """Exact autoregressive decoding: memory (S, d), style (d,) -> quantised codes (T, width)."""
        n = self.n_frames(memory)
        codes = torch.empty(n, self.vq.spec.frame_code_width, device=memory.device, dtype=memory.dtype)
        token = style
        every = max(1, n // 100)
        # One thread even though the stage-1 redo grows with the prefix: at official size a 2 s
        # clip decoded in 5.9 s on one thread and 27 s on two (server/threads.py).
        with sequential(memory.device):
            state = self.decoder.start(memory, n)
            feedback = FeedbackDecoder(self.vq.decoder, n, memory)
            for i in range(n):
                codes[i] = self.vq.quantize(self.feat_map(state.step(token)))
                if i < n - 1:
                    token = self.motion_in(feedback.push(codes[i])) + style
                if i % every == 0:
                    progress("decode", i / n)
        progress("decode", 1.0)
        return codes

    @torch.no_grad()
    def decode(self, memory: torch.Tensor, style: torch.Tensor, progress: Progress = no_progress) -> torch.Tensor:
        if self.n_frames(memory) <= self.exact_frames:
            codes = self.decode_codes(memory, style, progress)
            with parallel(memory.device):  # one pass of large operations over the whole clip
                return self.vq.decoder(codes[None])[0]
        return self.decode_windowed(memory, style, progress)

    # Exact decoding costs O(T^2) (see the module docstring): beyond the official 600-frame
    # limit, decode overlapping windows exactly and cross-fade them linearly.
    exact_frames = 600
    window_overlap = 60

    def windows(self, n: int) -> list[tuple[int, int]]:
        return spans(n, self.exact_frames, self.window_overlap)

    @torch.no_grad()
    def decode_windowed(
        self, memory: torch.Tensor, style: torch.Tensor, progress: Progress = no_progress
    ) -> torch.Tensor:
        n, a = self.n_frames(memory), self.spec.audio_per_frame
        windows = self.windows(n)
        parts = []
        for k, (s, e) in enumerate(windows):
            def sub(stage: str, f: float, k: int = k) -> None:
                progress(stage, (k + f) / len(windows))

            codes = self.decode_codes(memory[s * a : e * a], style, sub)
            with parallel(memory.device):
                parts.append(self.vq.decoder(codes[None])[0])
        return blend(windows, parts, n)

    @torch.no_grad()
    def decode_reference(
        self, memory: torch.Tensor, style: torch.Tensor, progress: Progress = no_progress
    ) -> torch.Tensor:
        """The official loop: whole-prefix stage-2 pass and whole-prefix stage-1 decode every frame."""
        n = self.n_frames(memory)
        tokens = style[None, None]
        features = None
        for i in range(n):
            features = self.feat_map(self.decoder.forward_full(tokens, memory[None]))
            q = self.vq.quantize(features)
            if i == 0:
                decoded = self.vq.decoder(torch.cat([q, q], dim=1))[:, :1]
            else:
                decoded = self.vq.decoder(q)
            if i < n - 1:
                nxt = self.motion_in(decoded[:, -1]) + style
                tokens = torch.cat([tokens, nxt[:, None]], dim=1)
            progress("decode", (i + 1) / n)
        return self.vq.decoder(self.vq.quantize(features))[0]


def vq_spec_of(stage1: dict, stage2: dict, n_heads: int, source: str) -> VQSpec:
    """The stage-1 dimensions, read from the official tensors' shapes."""
    n_codes, code_dim = need(stage1, "quantize.embedding.weight", source).shape
    hidden = need(stage1, "encoder.vertice_mapping.0.weight", source).shape[0]
    width = need(stage2, "feat_map.weight", source).shape[0]
    return VQSpec(
        hidden=hidden,
        n_layers=layer_count(stage1, "decoder.decoder_transformer.net.") // 2,
        n_heads=n_heads,
        intermediate=need(stage1, "decoder.decoder_transformer.net.1.fn.fn.l1.weight", source).shape[0],
        codes_per_frame=width // code_dim,
        code_dim=code_dim,
        n_codes=n_codes,
        code_projection="decoder.decoder_linear_embedding_pre.net.weight" in stage1,
        output_bias="decoder.vertice_map_reverse.bias" in stage1,
    )
