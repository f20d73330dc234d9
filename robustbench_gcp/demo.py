"""The whole harness in minutes on a fresh machine: train a GAP and a GCP CIFAR ResNet-20 with a
short LRfast schedule on the built-in photo set (or a given ImageFolder), then measure both under
corruptions (generated, cifar10-c protocol) and under L∞ PGD, and print and plot the comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .attacks import parse_epsilons
from .corruptions import names
from .data.builtin import write_builtin
from .evaluate.attack import AttackEvalConfig, evaluate_attacks
from .evaluate.corruption import CorruptionEvalConfig, evaluate_corruptions
from .report import attack_tables, corruption_table, plot_attacks, plot_corruptions, plot_learning_curves
from .results import ResultStore
from .train import TrainConfig, train

MODELS = ("cifar_resnet20_gap", "cifar_resnet20_gcp")


@dataclass
class DemoConfig:
    out: Path = Path("runs/demo")
    data: Path | None = None  # an ImageFolder root with train/ and val/; default: the built-in set
    epochs: int = 5
    quick: bool = False  # a reduced setting for tests: tiny data, 1 epoch, 2 severities, short attack
    device: str | None = None
    workers: int = 0


def run_demo(config: DemoConfig, progress: bool = True) -> dict[str, Path]:
    """Train, evaluate, print the GAP-vs-GCP tables; returns the paths of what it wrote."""
    out = Path(config.out)
    if config.data is None:
        sizes = dict(train_per_class=40, test_per_class=10) if config.quick else {}
        data = write_builtin(out / "data", **sizes)
    else:
        data = Path(config.data)
    db = out / "results.sqlite"
    epochs = 1 if config.quick else config.epochs
    severities = [1, 5] if config.quick else [1, 2, 3, 4, 5]
    logs = []
    for model in MODELS:
        run_dir = out / "train" / model
        checkpoint = run_dir / "checkpoint.pth.tar"
        train(TrainConfig(model=model, data=str(data), lr_mode="LRfast", epochs=epochs, batch_size=128, out=run_dir,
                          device=config.device, workers=config.workers,
                          resume=checkpoint if checkpoint.exists() else None), progress=progress)
        logs.append(run_dir / "log.jsonl")
        classes = len([p for p in (data / "train").iterdir() if p.is_dir()])
        best = run_dir / "model_best.pth.tar"
        evaluate_corruptions(CorruptionEvalConfig(
            model=model, checkpoint=best, num_classes=classes, data=data / "val", protocol="cifar10-c",
            corruptions=names("common"), severities=severities, batch_size=200, workers=config.workers,
            device=config.device, db=db, json=out / f"{model}-corruptions.json"), progress=progress)
        evaluate_attacks(AttackEvalConfig(
            model=model, checkpoint=best, num_classes=classes, data=data / "val", attacks=["linf-pgd"],
            eps=parse_epsilons("0,1/255,2/255,4/255"), steps=3 if config.quick else 10, rel_stepsize=0.25,
            limit=40 if config.quick else 400, batch_size=200, workers=config.workers, device=config.device, db=db,
            json=out / f"{model}-attack.json"), progress=progress)
    store = ResultStore(db)
    print(corruption_table(store, list(MODELS)))
    print()
    print(attack_tables(store, list(MODELS)))
    written = {
        "database": db,
        "errors_plot": plot_corruptions(store, out / "errors_vs_severity.png", list(MODELS)),
        "robustness_plot": plot_attacks(store, out / "robust_accuracy_vs_eps.png", list(MODELS)),
        "learning_curves": plot_learning_curves(logs, out / "learning_curves.png"),
    }
    for label, path in written.items():
        print(f"{label}: {path}")
    return written
