"""The whole harness in minutes on a fresh machine: train a GAP and a GCP CIFAR ResNet-20 with a
short LRfast schedule on the built-in photo set (or a given ImageFolder), then measure both under
corruptions (generated, cifar10-c protocol), under CIFAR-10-P perturbation sequences (flip
probability) and under L∞ PGD, and print and plot the comparison.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .attacks import parse_epsilons
from .corruptions import names
from .data.builtin import write_builtin
from .devices import idle_cores
from .evaluate.attack import AttackEvalConfig, evaluate_attacks
from .evaluate.corruption import CorruptionEvalConfig, evaluate_corruptions
from .evaluate.perturbation import PerturbationEvalConfig, evaluate_perturbations
from .report import (
    attack_tables,
    corruption_table,
    perturbation_table,
    plot_attacks,
    plot_corruptions,
    plot_learning_curves,
    plot_perturbations,
    select_runs,
)
from .report.document import report_data
from .report.html import write_report
from .results import ResultStore
from .train import TrainConfig, train

MODELS = ("cifar_resnet20_gap", "cifar_resnet20_gcp")
# Each stage's share of a whole demo run on 2 CPU cores (measured), for the time estimate.
TRAIN_SHARE = {"GAP": 0.17, "GCP": 0.28}
CORRUPTION_SHARE = {"GAP": 0.10, "GCP": 0.15}
PERTURBATION_SHARE = {"GAP": 0.04, "GCP": 0.06}
ATTACK_SHARE = {"GAP": 0.09, "GCP": 0.11}


@dataclass(frozen=True)
class DemoSize:
    """How much of each stage the demo runs: the full demo, ``--quick``, or smaller for a test."""

    train_per_class: int = 500  # built-in photos per class (the given --data is used as it is)
    test_per_class: int = 100
    epochs: int = 5
    corruptions: tuple[str, ...] = tuple(names("common"))
    severities: tuple[int, ...] = (1, 3, 5)
    perturbation_videos: int = 100
    attack_images: int = 240
    attack_steps: int = 10


FULL = DemoSize()
QUICK = DemoSize(train_per_class=40, test_per_class=10, epochs=1, severities=(1, 5), perturbation_videos=20,
                 attack_images=40, attack_steps=3)


@dataclass
class DemoConfig:
    out: Path = Path("runs/demo")
    data: Path | None = None  # an ImageFolder root with train/ and val/; default: the built-in set
    size: DemoSize = FULL
    device: str | None = None
    workers: int = 0
    progress: bool = True


def _stages(config: DemoConfig, data: Path, out: Path, db: Path) -> list[tuple[str, float, Callable[[], None]]]:
    """(title, share of the whole run, work): shares measured on 2 CPU cores, for the estimate."""
    size = config.size
    classes = len([p for p in (data / "train").iterdir() if p.is_dir()])
    stages = []
    progress = config.progress
    for model, head in zip(MODELS, ("GAP", "GCP")):
        run_dir = out / "train" / model
        final = run_dir / "checkpoint.pth.tar"  # the last epoch's weights: no model selection on the test split

        def fit(model=model, run_dir=run_dir, final=final) -> None:
            train(TrainConfig(model=model, data=str(data), lr_mode="LRfast", epochs=size.epochs, batch_size=128,
                              out=run_dir, device=config.device, workers=config.workers,
                              resume=final if final.exists() else None), progress=progress)

        def corruptions(model=model, final=final) -> None:
            evaluate_corruptions(CorruptionEvalConfig(
                model=model, checkpoint=final, num_classes=classes, data=data / "val", protocol="cifar10-c",
                corruptions=list(size.corruptions), severities=list(size.severities), batch_size=200,
                workers=config.workers, device=config.device, db=db, json=out / f"{model}-corruptions.json"),
                progress=progress)

        def perturbations(model=model, final=final) -> None:
            evaluate_perturbations(PerturbationEvalConfig(
                model=model, checkpoint=final, num_classes=classes, data=data / "val", protocol="cifar10-p",
                difficulties=(1,), limit=size.perturbation_videos, batch_size=200,
                workers=config.workers, device=config.device, db=db, json=out / f"{model}-perturbations.json"),
                progress=progress)

        def attack(model=model, final=final) -> None:
            evaluate_attacks(AttackEvalConfig(
                model=model, checkpoint=final, num_classes=classes, data=data / "val", attacks=["linf-pgd"],
                eps=parse_epsilons("0,1/255,2/255,4/255"), steps=size.attack_steps, limit=size.attack_images,
                batch_size=200, workers=config.workers, device=config.device, db=db,
                json=out / f"{model}-attack.json"), progress=progress)

        stages += [(f"training {head} ResNet-20", TRAIN_SHARE[head], fit),
                   (f"corruptions of {head} ResNet-20", CORRUPTION_SHARE[head], corruptions),
                   (f"perturbation sequences of {head} ResNet-20", PERTURBATION_SHARE[head], perturbations),
                   (f"L-inf PGD-{size.attack_steps} on {head} ResNet-20", ATTACK_SHARE[head], attack)]
    return stages


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def run_demo(config: DemoConfig) -> dict[str, Path]:
    """Train, evaluate, print the GAP-vs-GCP tables; returns the paths of what it wrote."""
    out = Path(config.out)
    if config.data is None:
        data = write_builtin(out / "data", config.size.train_per_class, config.size.test_per_class)
    else:
        data = Path(config.data)
    db = out / "results.sqlite"
    stages = _stages(config, data, out, db)
    print(f"torch uses {torch.get_num_threads()} of {idle_cores()[0]} cores (--threads N to change)", flush=True)
    start, done_share = time.perf_counter(), 0.0
    for number, (title, share, work) in enumerate(stages, start=1):
        print(f"== {title} ({number}/{len(stages)})", flush=True)
        work()
        done_share += share
        elapsed = time.perf_counter() - start
        if number < len(stages):
            left = elapsed / done_share * (1 - done_share)
            print(f"   {_minutes(elapsed)} so far, about {_minutes(left)} left", flush=True)
    store = ResultStore(db)
    corruption_runs = select_runs(store, "corruption", models=MODELS, latest=True)
    perturbation_runs = select_runs(store, "perturbation", models=MODELS, latest=True)
    attack_runs = select_runs(store, "attack", models=MODELS, latest=True)
    print(corruption_table(store, corruption_runs))
    print()
    print(perturbation_table(store, perturbation_runs))
    print()
    print(attack_tables(store, attack_runs))
    logs = [out / "train" / model / "log.jsonl" for model in MODELS]
    written = {
        "database": db,
        "errors_plot": plot_corruptions(store, corruption_runs, out / "errors_vs_severity.png"),
        "flip_plot": plot_perturbations(store, perturbation_runs, out / "flip_probability.png"),
        "robustness_plot": plot_attacks(store, attack_runs, out / "robust_accuracy_vs_eps.png"),
        "learning_curves": plot_learning_curves(logs, out / "learning_curves.png"),
    }
    chosen = {"corruption": corruption_runs, "attack": attack_runs, "perturbation": perturbation_runs}
    written["report"] = write_report(report_data(store, chosen), store, chosen, out / "report.html")
    for label, path in written.items():
        print(f"{label}: {path}")
    print(f"demo finished in {_minutes(time.perf_counter() - start)}")
    return written
