"""What differs between the trainable hosts; the trainer (data, DDP, checkpoints, resume, logs) is shared.

Each arch says how its model is built and frozen, its loss module (what DDP wraps), its optimiser and
schedule, how it is validated, what ``best.pth`` holds (the official file ``convert`` reads) and
whether a bundle is written. The recipes are the official ones (see README "Training and evaluation"):

- ``faceformer``: FaceFormer ``main.py`` (Adam 1e-4, MSE, the autoregressive loop with gradients);
- ``codetalker-stage1``: CodeTalker ``main/train_vq.py`` + ``config/*/stage1.yaml`` (AdamW 1e-4 with
  torch's default weight decay, L1 + 1.0 x VQ loss; VOCASET StepLR every 20 epochs x 0.5, BIWI none);
- ``codetalker-stage2``: CodeTalker ``main/train_pred.py`` + ``config/*/stage2.yaml`` (Adam 1e-4 on the
  parameters that require gradients, teacher forcing, MSE + 1.0 x feature regression, stage 1 frozen).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from wav2sem_contract.errors import Wav2SemError

from ..datasets.layout import Layout
from ..eval.face_metrics import MetricAccumulator
from .build import build_from, build_scratch, freeze, train_mode
from .codetalker import build_stage2, stage2_loss
from .data import Sequence, one_hot, style_conditions
from .export import official_state
from .forward import sequence_loss, training_memory
from .vq import build_stage1, stage1_loss, stage1_state

LossFn = Callable[..., torch.Tensor]


class HostLoss(nn.Module):
    """The model behind its loss, so DistributedDataParallel sees every forward."""

    def __init__(self, model: nn.Module, fn: LossFn) -> None:
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, input_values, vertices, template, style_weights):
        return self.fn(self.model, input_values, vertices, template, style_weights)


class HostArch:
    """FaceFormer; the base of the audio-driven hosts."""

    name = "faceformer"
    writes_bundle = True
    val_names = ("teacher forced", "autoregressive")
    needs_encoder = True

    def build(self, cfg, layout: Layout, n_vertices: int, out) -> tuple[nn.Module, str]:
        if cfg.init:
            model = build_from(cfg.init, layout, n_vertices, out, cfg.encoder, cfg.wav2sem, cfg.wav2sem_config)
            return model, f"from {cfg.init}"
        return build_scratch(layout, n_vertices, cfg.encoder, cfg.feature_dim, cfg.wav2sem, cfg.wav2sem_config)

    def freeze(self, model: nn.Module) -> None:
        freeze(model)

    def train_mode(self, model: nn.Module) -> None:
        train_mode(model)

    def loss_fn(self, cfg) -> LossFn:
        tf = cfg.teacher_forcing

        def fn(model, x, v, t, w):
            return sequence_loss(model, x, v, t, w, teacher_forcing=tf)
        return fn

    def val_loss_fn(self) -> LossFn:
        """The official validation loss (eval mode)."""
        return lambda model, x, v, t, w: sequence_loss(model, x, v, t, w, teacher_forcing=True)

    def optimizer(self, params, cfg, layout: Layout):
        return torch.optim.Adam(params, lr=cfg.lr), None

    def recipe(self, model: nn.Module, cfg) -> dict[str, object]:
        return {"teacher forcing": cfg.teacher_forcing, "width": model.spec.d_model,
                "wav2sem": model.semantic is not None}

    def describe(self, cfg) -> str:
        return "teacher forcing" if cfg.teacher_forcing else "autoregressive"

    @torch.no_grad()
    def validate(self, model: nn.Module, val_set: list[Sequence], n_styles: int, regions,
                 device: torch.device) -> dict[str, float | None]:
        """The official validation loss, the MSE and LVE of ``predict``'s output (the inference decoder)."""
        model.eval()
        loss_fn = self.val_loss_fn()
        tf, ar = [], []
        metrics = MetricAccumulator(regions) if regions is not None else None
        for seq in val_set:
            x, v, t = seq.input_values.to(device), seq.vertices.to(device), seq.template.to(device)
            for style in style_conditions(seq, n_styles):
                w = one_hot(style, n_styles).to(device)
                tf.append(loss_fn(model, x, v, t, w).item())
                memory, usable = training_memory(model, x, v.shape[0])
                pred = model.decode(memory[0, : usable * model.spec.audio_per_frame], model.style(w)) + t[None]
                ar.append(torch.mean((pred - v[:usable]) ** 2).item())
                if metrics is not None:
                    metrics.add(pred.cpu().numpy(), v[:usable].cpu().numpy(), name=seq.name)
        lve = metrics.result().lve if metrics is not None else None
        return {"val_loss": sum(tf) / len(tf), "val_loss_ar": sum(ar) / len(ar), "val_lve": lve}

    def official(self, model: nn.Module) -> dict:
        return official_state(model)


class CodeTalkerStage2(HostArch):
    name = "codetalker-stage2"
    val_names = ("teacher forced", "predict")

    def build(self, cfg, layout, n_vertices, out):
        if cfg.init:
            raise Wav2SemError("bad_request", "--init is for FaceFormer; stage 2 starts from --vqvae.",
                               "Leave out --init (pass the stage-1 file with --vqvae).")
        return build_stage2(layout, n_vertices, cfg.encoder, cfg.vqvae, cfg.feature_dim, cfg.wav2sem,
                            cfg.wav2sem_config)

    def loss_fn(self, cfg):
        return stage2_loss

    def val_loss_fn(self):
        return stage2_loss

    def recipe(self, model, cfg):
        return {"width": model.spec.d_model, "wav2sem": model.semantic is not None}

    def describe(self, cfg):
        return f"teacher forcing (official), stage 1 frozen from {cfg.vqvae}"

    def official(self, model):
        return {"state_dict": official_state(model)}  # official save_checkpoint(stage=2): no autoencoder.*


class CodeTalkerStage1(HostArch):
    name = "codetalker-stage1"
    writes_bundle = False  # a motion autoencoder: no audio, nothing to infer with
    val_names = ("L1 + VQ", "reconstruction MSE")
    needs_encoder = False

    def build(self, cfg, layout, n_vertices, out):
        if cfg.init or cfg.wav2sem:
            raise Wav2SemError("bad_request", "Stage 1 trains the motion VQ-VAE alone (no --init, no --wav2sem).",
                               "Leave them out; pass --wav2sem to stage 2.")
        return build_stage1(layout, n_vertices, cfg.feature_dim), "none (stage 1 reads no audio)"

    def freeze(self, model):
        pass

    def train_mode(self, model):
        model.train()

    def loss_fn(self, cfg):
        return lambda model, x, v, t, w: stage1_loss(model, v, t).total

    def optimizer(self, params, cfg, layout):
        opt = torch.optim.AdamW(params, lr=cfg.lr)  # train_vq.py passes no weight decay: torch's 0.01
        # config/vocaset/stage1.yaml StepLR True (20 epochs, x 0.5); config/BIWI/stage1.yaml False
        sched = torch.optim.lr_scheduler.StepLR(opt, 20, 0.5) if layout.name == "vocaset" else None
        return opt, sched

    def recipe(self, model, cfg):
        return {"width": model.spec.hidden}

    def describe(self, cfg):
        return "motion only"

    @torch.no_grad()
    def validate(self, model, val_set, n_styles, regions, device):
        """Official validation (L1 + VQ loss), the MSE and LVE of the reconstruction (decode of the codes)."""
        model.eval()
        official, mse = [], []
        metrics = MetricAccumulator(regions) if regions is not None else None
        for seq in val_set:
            v, t = seq.vertices.to(device), seq.template.to(device)
            out = stage1_loss(model, v, t)
            pred = out.offsets[0] + t[None]
            official.append(out.total.item())
            mse.append(torch.mean((pred - v) ** 2).item())
            if metrics is not None:
                metrics.add(pred.cpu().numpy(), v.cpu().numpy(), name=seq.name)
        lve = metrics.result().lve if metrics is not None else None
        return {"val_loss": sum(official) / len(official), "val_loss_ar": sum(mse) / len(mse), "val_lve": lve}

    def official(self, model):
        return {"state_dict": stage1_state(model)}  # official save_checkpoint: {'state_dict': VQAutoEncoder}


ARCHES = {a.name: a for a in (HostArch(), CodeTalkerStage1(), CodeTalkerStage2())}


def get_arch(name: str) -> HostArch:
    if name not in ARCHES:
        raise Wav2SemError("train_arch", f"There is no trainable arch '{name}'.", f"Use one of: {', '.join(ARCHES)}.")
    return ARCHES[name]
