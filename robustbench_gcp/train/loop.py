"""Training with the paper's recipes: SGD with momentum 0.9, weight decay on every parameter, the
original augmentation, bf16 autocast and channels_last on GPUs, DDP under torchrun.

Every epoch writes ``checkpoint.pth.tar`` in the original format (``epoch``, ``arch``,
``state_dict`` with the ``module.`` prefix, ``best_acc1``, ``optimizer``) and copies it to
``model_best.pth.tar`` when validation top-1 improves; ``log.jsonl`` gets one line per epoch.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from torchvision import datasets, transforms

from ..choices import PRECISIONS
from ..data.builtin import write_builtin
from ..data.folders import eval_transform
from ..devices import as_model_input, autocast, effective_precision, prepare, to_float_images
from ..distributed import DistContext, init_distributed, sum_counts
from ..evaluate.clean import evaluate_clean
from ..fileio import AtomicFile, atomic_write_bytes, atomic_write_text
from ..metrics import Counts
from ..models import architecture_info, checkpoint_record, create_model, load_state, read_checkpoint
from ..progress import Progress, progress_bar
from .schedules import TrainError, family, lr_at, recipe


@dataclass
class TrainConfig:
    """Everything ``gcp-robust train`` takes; None means the recipe's value."""

    model: str
    data: str  # an ImageFolder root with train/ and val/, or "builtin"
    lr_mode: str = "LRnorm"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    num_classes: int | None = None
    out: Path = Path("runs/train")
    resume: Path | None = None
    device: str | None = None
    workers: int = min(4, os.cpu_count() or 1)
    seed: int = 0
    precision: str = "bf16"  # bf16 autocast on CUDA; the CPU always trains in float32


def _check(config: TrainConfig) -> None:
    """Zero is a value, not "use the recipe's": refuse what cannot train instead of replacing it."""
    positive = {"--epochs": config.epochs, "--batch-size": config.batch_size, "--num-classes": config.num_classes}
    for option, value in positive.items():
        if value is not None and value < 1:
            raise TrainError(f"{option} {value}: pass a positive number, or leave it out for the recipe's")
    for option, value in {"--lr": config.lr, "--weight-decay": config.weight_decay}.items():
        if value is not None and not value >= 0:
            raise TrainError(f"{option} {value}: pass a value ≥ 0, or leave it out for the recipe's")
    if config.workers < 0:
        raise TrainError(f"--workers {config.workers}: pass 0 (load in the main process) or more")
    if config.precision not in PRECISIONS:
        raise TrainError(f"--precision {config.precision!r}: choose one of {', '.join(PRECISIONS)}")


def _train_transform(arch: str, size: int) -> transforms.Compose:
    if size < 64:
        steps = [transforms.RandomCrop(size, padding=4), transforms.RandomHorizontalFlip()]
    else:
        steps = [transforms.RandomResizedCrop(size)]
        if family(arch) == "shufflenet_v2":
            steps.append(transforms.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4))
        steps.append(transforms.RandomHorizontalFlip())
    return transforms.Compose([*steps, transforms.PILToTensor()])


def _datasets(config: TrainConfig, size: int) -> tuple[datasets.ImageFolder, datasets.ImageFolder]:
    root = Path(config.out) / "builtin-data" if config.data == "builtin" else Path(config.data)
    if config.data == "builtin":
        write_builtin(root)
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise TrainError(f"{root / split} does not exist; --data needs an ImageFolder root with train/ "
                             "and val/ (or 'builtin')")
    arch = config.model
    return (datasets.ImageFolder(str(root / "train"), transform=_train_transform(arch, size)),
            datasets.ImageFolder(str(root / "val"), transform=eval_transform(size)))


def _strip(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def save_checkpoint(path: Path, model: nn.Module, arch: str, epoch: int, best_acc1: float,
                    optimizer: torch.optim.Optimizer, extra: dict) -> None:
    """The original format: state_dict keys with ``module.`` (as saved from DataParallel)."""
    state = {f"module.{k}": v for k, v in _strip(model).state_dict().items()}
    buffer = io.BytesIO()  # torch.save's own file writer turns a full disk into a bare RuntimeError
    torch.save({"epoch": epoch, "arch": arch, "state_dict": state, "best_acc1": best_acc1,
                "optimizer": optimizer.state_dict(), **extra}, buffer)
    atomic_write_bytes(path, buffer.getbuffer())


class Trainer:
    """One training run, resumable from its checkpoint."""

    def __init__(self, config: TrainConfig) -> None:
        _check(config)
        self.config = config
        self.ctx: DistContext = init_distributed(config.device)
        plan = recipe(config.model, config.lr_mode)
        self.epochs = plan.epochs if config.epochs is None else config.epochs
        self.batch_size = plan.batch_size if config.batch_size is None else config.batch_size
        self.weight_decay = plan.weight_decay if config.weight_decay is None else config.weight_decay
        record = checkpoint_record(config.model)
        self.size = architecture_info(record.architecture if record else config.model).input_size
        self.train_set, self.val_set = _datasets(config, self.size)
        classes = config.num_classes or len(self.train_set.classes)
        torch.manual_seed(config.seed)
        model = prepare(create_model(config.model, num_classes=classes), self.ctx.device)
        self.model = model
        lr = plan.lr if config.lr is None else config.lr
        self.optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=self.weight_decay)
        self.start_epoch, self.best = 0, 0.0
        if config.resume:
            self._resume(Path(config.resume))
        if self.ctx.world > 1:
            self.model = nn.parallel.DistributedDataParallel(model)
        self.precision = effective_precision(config.precision, self.ctx.device)
        self.out = Path(config.out)
        self.out.mkdir(parents=True, exist_ok=True)

    def _resume(self, path: Path) -> None:
        state, payload = read_checkpoint(path)
        load_state(self.model, state, path)
        if "optimizer" in payload:
            self.optimizer.load_state_dict(payload["optimizer"])
        self.start_epoch = int(payload.get("epoch", 0))
        self.best = float(payload.get("best_acc1", 0.0))

    def _lr(self, epoch: int, iteration: int, iters: int) -> float:
        c = self.config
        return lr_at(c.model, c.lr_mode, epoch, iteration, iters, lr=c.lr, epochs=self.epochs)

    def _epoch(self, epoch: int, loader: DataLoader, bar: Progress) -> tuple[float, float, float]:
        self.model.train()
        per_iteration = recipe(self.config.model, self.config.lr_mode).per_iteration
        loss_sum, counts, start = 0.0, Counts(), time.perf_counter()
        for i, (images, labels) in enumerate(loader):
            if per_iteration or i == 0:
                for group in self.optimizer.param_groups:
                    group["lr"] = self._lr(epoch, i, len(loader))
            batch = as_model_input(to_float_images(images, self.ctx.device))
            labels = labels.to(self.ctx.device)
            with autocast(self.precision, self.ctx.device):
                logits = self.model(batch)
                loss = F.cross_entropy(logits.float(), labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss_sum += float(loss.detach()) * len(labels)
            counts.add(logits.detach().float(), labels)
            bar.update(len(labels) * self.ctx.world)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", lr=f"{self.optimizer.param_groups[0]['lr']:.4g}")
        seconds = time.perf_counter() - start
        n, errors = sum_counts([counts.n, counts.top1_errors], self.ctx)
        total_loss = sum_counts([round(loss_sum * 1e6)], self.ctx)[0] / 1e6
        return total_loss / n, 100 * (1 - errors / n), n / seconds if seconds else 0.0

    def run(self, progress: bool = True) -> list[dict]:
        sampler = DistributedSampler(self.train_set, num_replicas=self.ctx.world, rank=self.ctx.rank,
                                     shuffle=True, seed=self.config.seed)
        per_rank = max(1, self.batch_size // self.ctx.world)
        loader = DataLoader(self.train_set, batch_size=per_rank, sampler=sampler, num_workers=self.config.workers,
                            pin_memory=self.ctx.device.type == "cuda", drop_last=len(self.train_set) > per_rank)
        log_path = self.out / "log.jsonl"
        history = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.exists() else []
        history = [h for h in history if h["epoch"] < self.start_epoch]
        for epoch in range(self.start_epoch, self.epochs):
            sampler.set_epoch(epoch)
            bar = progress_bar(len(loader) * per_rank * self.ctx.world,
                               f"{self.config.model} epoch {epoch + 1}/{self.epochs}", progress and self.ctx.is_main)
            start = time.perf_counter()
            loss, train_top1, rate = self._epoch(epoch, loader, bar)
            bar.close()
            val = evaluate_clean(_strip(self.model), self.val_set, batch_size=256, device=str(self.ctx.device))
            self.model.train()
            entry = {"epoch": epoch, "loss": round(loss, 6), "train_top1": round(train_top1, 4),
                     "val_top1": round(val.top1_accuracy, 4), "lr": self.optimizer.param_groups[0]["lr"],
                     "images_per_s": round(rate, 1), "seconds": round(time.perf_counter() - start, 2)}
            history.append(entry)
            if self.ctx.is_main:
                self._save(epoch, val.top1_accuracy, history)
            if self.ctx.world > 1:
                dist.barrier()
        return history

    def _save(self, epoch: int, top1: float, history: list[dict]) -> None:
        improved = top1 > self.best
        self.best = max(self.best, top1)
        extra = {"lr_mode": self.config.lr_mode, "num_classes": len(self.train_set.classes)}
        checkpoint = self.out / "checkpoint.pth.tar"
        save_checkpoint(checkpoint, self.model, self.config.model, epoch + 1, self.best, self.optimizer, extra)
        if improved:
            with checkpoint.open("rb") as source, AtomicFile(self.out / "model_best.pth.tar") as best:
                shutil.copyfileobj(source, best)
        atomic_write_text(self.out / "log.jsonl", "".join(json.dumps(h) + "\n" for h in history))


def train(config: TrainConfig, progress: bool = True) -> list[dict]:
    """Train (or resume) a model with a recipe; returns the per-epoch log."""
    return Trainer(config).run(progress)
