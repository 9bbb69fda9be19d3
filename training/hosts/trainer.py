"""``train --arch faceformer|codetalker-stage1|codetalker-stage2`` on a VOCASET/BIWI-layout folder.

What differs between the hosts (model, loss, optimiser, validation, official file) is in ``arches.py``;
this loop, the data, DDP, checkpoints and resume are shared. FaceFormer's recipe (official ``main.py``):
Adam, lr 1e-4, on the parameters that require gradients; MSE on vertices; one sequence per forward;
training with ``teacher_forcing=False`` (the autoregressive loop with gradients); validation loss with teacher forcing, over every training style for an unseen
subject. ``--batch-size B`` averages the gradients of B sequences per optimiser step (official:
``--gradient_accumulation_steps``, default 1, which sums instead); under torchrun each process takes
B sequences, so the global batch is B x processes and the step equals a one-process step of that
batch. Deviations, chosen here: no SpecAugment time masking in the encoder (the encoder configs are
loaded with it off); ``--epochs`` counts passes (official runs ``max_epoch + 1``); dropout masks are
drawn from a generator seeded by (seed, epoch, sequence), so a run is the same on any number of
processes and after a resume; a Wav2Sem encoder is kept in eval mode; the best checkpoint is chosen
on validation LVE when the dataset has lip regions, else on the autoregressive validation loss.

Files in ``--out``: ``metrics.csv`` (one row per epoch), ``steps.csv`` (loss per optimiser step),
TensorBoard events when ``tensorboard`` is installed, ``last.pt`` every epoch (weights, optimiser,
RNG states, epoch; ``--resume`` continues from it), ``still_face.json`` (the validation scores of
predicting the template, the baseline), ``best.pt`` (weights) and ``best.pth`` (the
official-format checkpoint of the arch, for ``convert``), and ``bundle/`` (the best weights as a bundle;
not for CodeTalker stage 1, which has no audio path).
"""

from __future__ import annotations

import csv
import json
import math
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data.distributed import DistributedSampler

from server.progress import console_bar, console_write
from wav2sem_contract.errors import Wav2SemError

from ..datasets.registry import detect_layout
from ..eval.face_metrics import MetricAccumulator, read_regions
from .arches import HostLoss, get_arch
from .data import Sequence, load_split, normalizes, one_hot, style_conditions
from .distributed import Dist, setup
from .state import load_checkpoint, rng_state, save_atomic, set_rng_state

METRIC_FIELDS = ["epoch", "train_loss", "val_loss", "val_loss_ar", "val_lve", "best", "seconds"]
STEP_FIELDS = ["epoch", "step", "loss"]


@dataclass
class TrainConfig:
    data: str
    out: str
    encoder: str | None = None
    dataset: str | None = None
    arch: str = "faceformer"
    wav2sem: str | None = None
    wav2sem_config: str | None = None
    init: str | None = None
    vqvae: str | None = None
    resume: str | None = None
    epochs: int = 100
    lr: float = 1e-4
    batch_size: int = 1
    teacher_forcing: bool = False
    feature_dim: int | None = None
    regions: str | None = None
    seed: int = 0
    cpu: bool = False
    bundle: bool = True
    quiet: bool = False


@contextmanager
def seeded(seed: int, epoch: int, index: int, device: torch.device):
    """Dropout (and LayerDrop) randomness owned by one sequence of one epoch, whatever process runs it."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(((seed * 1_000_003 + epoch) * 1_000_003 + index) % (2**63))
        yield


def _to(seq: Sequence, device: torch.device) -> tuple[torch.Tensor, ...]:
    return seq.input_values.to(device), seq.vertices.to(device), seq.template.to(device)


class CsvLog:
    """Rows appended and flushed as they come; on resume, rows after the checkpoint's epoch are dropped."""

    def __init__(self, path: Path, fields: list[str], keep_through_epoch: int | None) -> None:
        self.path, self.fields = path, fields
        rows = []
        if keep_through_epoch is not None and path.is_file():
            with open(path, newline="", encoding="utf-8") as f:
                rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= keep_through_epoch]
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fields)
            writer.writeheader()
            writer.writerows(rows)

    def add(self, row: dict[str, object]) -> None:
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, self.fields).writerow(row)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard not installed: the CSV files are the log
        return None
    return SummaryWriter(str(out / "tensorboard"))


class Trainer:
    def __init__(self, cfg: TrainConfig, dist: Dist) -> None:
        self.arch = get_arch(cfg.arch)
        if self.arch.needs_encoder and not cfg.encoder:
            raise Wav2SemError("bad_request", f"--arch {cfg.arch} needs the audio encoder folder.",
                               "Pass --encoder with a Hugging Face wav2vec2 or HuBERT folder.")
        if cfg.batch_size < 1 or cfg.epochs < 1:
            raise Wav2SemError("bad_request", "--batch-size and --epochs must be at least 1.", "Pass positive values.")
        self.cfg, self.dist = cfg, dist
        self.out = Path(cfg.out)
        self.layout = detect_layout(cfg.data, cfg.dataset.lower() if cfg.dataset else None)
        norm = normalizes(cfg.encoder) if cfg.encoder else True
        self.train_set = load_split(cfg.data, self.layout, "train", norm)
        self.val_set = load_split(cfg.data, self.layout, "val", norm)
        regions_dir = Path(cfg.regions) if cfg.regions else Path(cfg.data) / "regions"
        self.regions = read_regions(regions_dir) if regions_dir.is_dir() else None
        n_vertices = self.train_set[0].vertices.shape[1] // 3
        torch.manual_seed(cfg.seed)
        self.model, self.encoder_note = self.arch.build(cfg, self.layout, n_vertices, self.out)
        self.arch.freeze(self.model)
        self.model.to(dist.device)
        self.loss = HostLoss(self.model, self.arch.loss_fn(cfg))
        if dist.active:
            ids = [dist.device.index] if dist.device.type == "cuda" else None
            # LayerDrop in the encoder skips whole layers in some steps: their parameters get no gradient
            self.loss = nn.parallel.DistributedDataParallel(self.loss, device_ids=ids, find_unused_parameters=True)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer, self.scheduler = self.arch.optimizer(params, cfg, self.layout)
        # drop_last: every process gets the same number of sequences, so steps stay in lockstep
        self.sampler = DistributedSampler(range(len(self.train_set)), num_replicas=dist.world, rank=dist.rank,
                                          shuffle=True, seed=cfg.seed, drop_last=True)
        self.start_epoch, self.step = 0, 0
        self.best, self.best_epoch = math.inf, -1
        if cfg.resume:
            self._resume(load_checkpoint(cfg.resume))

    # -- checkpoints ------------------------------------------------------------------------------
    def _recipe(self) -> dict[str, object]:
        """What a resumed run must share with the run it continues (the global batch, not the process count)."""
        c = self.cfg
        return {"arch": c.arch, "lr": c.lr, "global batch": c.batch_size * self.dist.world, "seed": c.seed,
                **self.arch.recipe(self.model, c)}

    def _resume(self, ckpt: dict) -> None:
        theirs, mine = ckpt.get("recipe", {}), self._recipe()
        differ = [f"{k} {theirs[k]} instead of {mine[k]}" for k in mine if k in theirs and theirs[k] != mine[k]]
        if differ:
            raise Wav2SemError("resume_mismatch", f"{self.cfg.resume} was trained with {', '.join(differ)}.",
                               "Resume with the run's own options (or start a new --out).")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        self.start_epoch, self.step = int(ckpt["epoch"]) + 1, int(ckpt["step"])
        self.best, self.best_epoch = float(ckpt["best"]), int(ckpt["best_epoch"])
        set_rng_state(ckpt["rng"])

    def _checkpoint(self, epoch: int) -> dict:
        scheduler = {} if self.scheduler is None else {"scheduler": self.scheduler.state_dict()}
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), **scheduler,
                "epoch": epoch, "step": self.step, "best": self.best, "best_epoch": self.best_epoch, "sampler_epoch": epoch,
                "rng": rng_state(), "recipe": self._recipe(), "config": {k: v for k, v in asdict(self.cfg).items() if v is not None}}

    # -- one epoch --------------------------------------------------------------------------------
    def _batches(self, epoch: int) -> list[list[int]]:
        self.sampler.set_epoch(epoch)
        local = list(self.sampler)
        b = self.cfg.batch_size
        return [local[i: i + b] for i in range(0, len(local), b)]

    def train_epoch(self, epoch: int, steps: CsvLog | None) -> float:
        self.arch.train_mode(self.model)
        n_styles = len(self.layout.style_order)
        total = count = 0.0
        batches = self._batches(epoch)
        bar = console_bar(batches, desc=f"epoch {epoch + 1}/{self.cfg.epochs}", unit="step",
                          enabled=self.dist.main and not self.cfg.quiet)
        with bar:
            for batch in bar:
                self.optimizer.zero_grad(set_to_none=True)
                local = 0.0
                for j, idx in enumerate(batch):
                    seq = self.train_set[idx]
                    last = j == len(batch) - 1
                    sync = nullcontext() if last or not self.dist.active else self.loss.no_sync()
                    with sync, seeded(self.cfg.seed, epoch, idx, self.dist.device):
                        x, v, t = _to(seq, self.dist.device)
                        loss = self.loss(x, v, t, one_hot(seq.style, n_styles).to(self.dist.device))
                        (loss / len(batch)).backward()
                    local += loss.item()
                self.optimizer.step()
                step_sum, step_n = self.dist.sum([local, float(len(batch))])
                total, count = total + step_sum, count + step_n
                self.step += 1
                if steps is not None:
                    steps.add({"epoch": epoch, "step": self.step, "loss": repr(step_sum / step_n)})
                bar.set_postfix(loss=f"{total / count:.3e}")
        return total / max(count, 1.0)

    def validate(self) -> dict[str, float | None]:
        """The arch's official validation loss, the MSE and LVE of what inference produces."""
        return self.arch.validate(self.model, self.val_set, len(self.layout.style_order), self.regions,
                                  self.dist.device)

    def still_face(self) -> dict[str, float | None]:
        """The validation scores of predicting the template (no motion): the bar a trained model must clear."""
        tf, metrics = [], MetricAccumulator(self.regions) if self.regions is not None else None
        for seq in self.val_set:
            still = seq.template[None].expand_as(seq.vertices)
            tf.extend([torch.mean((still - seq.vertices) ** 2).item()] * len(style_conditions(seq, len(
                self.layout.style_order))))
            if metrics is not None:
                metrics.add(still.numpy(), seq.vertices.numpy(), name=seq.name)
        return {"val_loss": sum(tf) / len(tf), "val_lve": metrics.result().lve if metrics is not None else None}

    # -- the run ----------------------------------------------------------------------------------
    def run(self) -> Path:
        main, out = self.dist.main, self.out
        keep = self.start_epoch - 1 if self.cfg.resume else None
        steps = metrics = board = None
        if main:
            out.mkdir(parents=True, exist_ok=True)
            steps = CsvLog(out / "steps.csv", STEP_FIELDS, keep)
            metrics = CsvLog(out / "metrics.csv", METRIC_FIELDS, keep)
            board = _tensorboard(out)
            still = self.still_face()
            (out / "still_face.json").write_text(json.dumps(still) + "\n", encoding="utf-8")
            self._say(f"{self.layout.name} layout: {len(self.train_set)} training and {len(self.val_set)} validation "
                      f"sequences; {self.dist.world} process(es) x batch {self.cfg.batch_size}; encoder "
                      f"{self.encoder_note}; {self.arch.describe(self.cfg)}; "
                      f"still face: val loss {still['val_loss']:.3e}"
                      + ("" if still["val_lve"] is None else f", val LVE {still['val_lve']:.3e}"))
        for epoch in range(self.start_epoch, self.cfg.epochs):
            started = time.monotonic()
            train_loss = self.train_epoch(epoch, steps)
            if self.scheduler is not None:  # per epoch, after training, as official train_vq.py
                self.scheduler.step()
            if main:
                val = self.validate()
                score = val["val_lve"] if val["val_lve"] is not None else val["val_loss_ar"]
                improved = score < self.best
                if improved:
                    self.best, self.best_epoch = score, epoch
                    save_atomic({"model": self.model.state_dict(), "epoch": epoch, "score": score}, out / "best.pt")
                    save_atomic(self.arch.official(self.model), out / "best.pth")
                row = {"epoch": epoch, "train_loss": repr(train_loss), **{k: repr(v) for k, v in val.items()},
                       "best": int(improved), "seconds": f"{time.monotonic() - started:.1f}"}
                metrics.add(row)
                if board is not None:
                    for key in ("train_loss", "val_loss", "val_loss_ar", "val_lve"):
                        if row[key] != "None":
                            board.add_scalar(key, float(row[key]), epoch)
                    board.flush()
                save_atomic(self._checkpoint(epoch), out / "last.pt")  # last: a kill before it redoes the epoch
                lve = "" if val["val_lve"] is None else f", val LVE {val['val_lve']:.3e}"
                names = self.arch.val_names
                self._say(f"epoch {epoch + 1}: train {train_loss:.3e}, val {val['val_loss']:.3e} ({names[0]}) "
                          f"{val['val_loss_ar']:.3e} ({names[1]}){lve}{' *' if improved else ''}")
            self.dist.barrier()
        if main and self.cfg.bundle and self.arch.writes_bundle and (out / "best.pt").is_file():
            self._write_bundle()
        if board is not None:
            board.close()
        return out

    def _write_bundle(self) -> None:
        from server.models.bundle import save_bundle

        best = load_checkpoint(self.out / "best.pt")
        self.model.load_state_dict(best["model"])
        save_bundle(self.model.eval(), self.out / "bundle", force=True, encoder_dir=self.cfg.encoder,
                    semantic_dir=self.cfg.wav2sem_config or (self.cfg.encoder if self.cfg.wav2sem else None),
                    provenance={"trained_by": "python -m training train", "dataset": self.layout.name,
                                "epoch": int(best["epoch"]), "score": float(best["score"])})
        self._say(f"best epoch {int(best['epoch']) + 1} written as {self.out / 'best.pth'} and {self.out / 'bundle'}")

    def _say(self, text: str) -> None:
        if self.dist.main and not self.cfg.quiet:
            console_write(text)


def train(cfg: TrainConfig) -> Path:
    dist = setup(cfg.cpu)
    try:
        return Trainer(cfg, dist).run()
    finally:
        dist.close()
