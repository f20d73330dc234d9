"""`gcp-robust`: the command line. It parses arguments and calls the library, nothing more."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__
from .attacks import ATTACKS, AttackError
from .attacks import BACKENDS as ATTACK_BACKENDS
from .corruptions import BACKENDS, PROTOCOLS, CorruptionError, names
from .corruptions.api import check_name
from .corruptions.export import ExportConfig, export_corrupted_folder
from .data.sources import SOURCES
from .demo import DemoConfig, run_demo
from .evaluate.attack import AttackEvalConfig, evaluate_attacks
from .evaluate.corruption import CorruptionEvalConfig, evaluate_corruptions
from .models import CheckpointError, UnknownModelError, create_model, guess_architecture, read_checkpoint
from .models.catalog import catalog, parameter_count
from .models.zoo import file_sha256
from .report import (
    TABLE_FORMATS,
    attack_tables,
    catalog_table,
    comparison_table,
    corruption_table,
    plot_attacks,
    plot_corruptions,
    plot_learning_curves,
)
from .results import DEFAULT_DB, ResultStore, compare
from .train import LR_MODES, TrainConfig, train


class UsageError(Exception):
    """A user mistake the CLI reports in one line (exit status 2)."""


def _cmd_models(args: argparse.Namespace) -> None:
    entries = catalog(args.pattern)
    if not entries and args.format != "json":
        raise UsageError(f"no model or checkpoint matches --pattern {args.pattern!r}")
    print(catalog_table(entries, args.format))


def _cmd_checkpoint(args: argparse.Namespace) -> None:
    """Identify a checkpoint file and, with --model, prove that it loads into that model."""
    state, payload = read_checkpoint(args.path)
    guess, share = guess_architecture(state)
    summary = {
        "path": str(args.path),
        "sha256": file_sha256(args.path),
        "tensors": len(state),
        "arch_in_file": payload.get("arch") if isinstance(payload.get("arch"), str) else None,
        "epoch": payload.get("epoch") if isinstance(payload.get("epoch"), int) else None,
        "likely_architecture": guess,
        "layout_match": round(share, 4),
    }
    if args.model:
        model = create_model(args.model, num_classes=args.num_classes, checkpoint=args.path)
        summary["loaded_into"] = model.architecture.name
        summary["params"] = parameter_count(model.architecture.name) if args.num_classes is None else sum(
            p.numel() for p in model.parameters()
        )
    print(json.dumps(summary, indent=2))


def _corruption_list(text: str) -> list[str]:
    """'a,b' or a subset name ('common', 'all', 'extra', 'noise', ...)."""
    try:
        return names(text)
    except CorruptionError:
        chosen = [part.strip() for part in text.split(",") if part.strip()]
        for name in chosen:
            check_name(name)
        return chosen


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _cmd_corrupt(args: argparse.Namespace) -> None:
    config = ExportConfig(
        data=Path(args.data), out=Path(args.out), protocol=args.protocol,
        corruptions=_corruption_list(args.corruptions), severities=args.severities, backend=args.backend,
        device=args.device or _default_device(), batch_size=args.batch_size, workers=args.workers,
        seed=args.seed, size=args.size,
    )
    summary = export_corrupted_folder(config, progress=not args.quiet)
    print(f"wrote {summary.written} images, skipped {summary.skipped} already present, into {config.out}")


def _cmd_eval_corruption(args: argparse.Namespace) -> None:
    config = CorruptionEvalConfig(
        model=args.model, data=Path(args.data), checkpoint=Path(args.checkpoint) if args.checkpoint else None,
        num_classes=args.num_classes, source=args.source, protocol=args.protocol, backend=args.backend,
        corruptions=_corruption_list(args.corruptions), severities=args.severities, limit=args.limit,
        seed=args.seed, batch_size=args.batch_size, workers=args.workers, device=args.device,
        autocast=not args.no_autocast, strict=args.strict,
        clean_data=Path(args.clean_data) if args.clean_data else None,
        class_index=Path(args.class_index) if args.class_index else None, db=Path(args.db),
        json=Path(args.json) if args.json else None,
    )
    summary = evaluate_corruptions(config, progress=not args.quiet)
    if summary:
        print(corruption_table(ResultStore(config.db), [config.model]))
        if summary["skipped_unreadable"]:
            print(f"skipped {summary['skipped_unreadable']} unreadable images (use --strict to fail instead)")


def _cmd_eval_attack(args: argparse.Namespace) -> None:
    config = AttackEvalConfig(
        model=args.model, data=Path(args.data), attacks=[a.strip() for a in args.attacks.split(",") if a.strip()],
        eps=args.eps, checkpoint=Path(args.checkpoint) if args.checkpoint else None, num_classes=args.num_classes,
        steps=args.steps, restarts=args.restarts, rel_stepsize=args.rel_stepsize, backend=args.backend,
        bf16=args.bf16, limit=args.limit, seed=args.seed, batch_size=args.batch_size, workers=args.workers,
        device=args.device, class_index=Path(args.class_index) if args.class_index else None, db=Path(args.db),
        json=Path(args.json) if args.json else None,
    )
    if evaluate_attacks(config, progress=not args.quiet):
        print(attack_tables(ResultStore(config.db), [config.model]))


def _cmd_train(args: argparse.Namespace) -> None:
    config = TrainConfig(
        model=args.model, data=args.data, lr_mode=args.lr_mode, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, weight_decay=args.weight_decay, num_classes=args.num_classes, out=Path(args.out),
        resume=Path(args.resume) if args.resume else None, device=args.device, workers=args.workers, seed=args.seed,
        autocast=not args.no_autocast,
    )
    history = train(config, progress=not args.quiet)
    if history:
        last = history[-1]
        print(f"epoch {last['epoch'] + 1}: loss {last['loss']:.4f}, val top-1 {last['val_top1']:.2f} %; "
              f"checkpoints and log.jsonl in {config.out}")
    if args.plot:
        print(f"wrote {plot_learning_curves([Path(config.out) / 'log.jsonl', *args.compare], args.plot)}")


def _cmd_demo(args: argparse.Namespace) -> None:
    run_demo(DemoConfig(out=Path(args.out), data=Path(args.data) if args.data else None, epochs=args.epochs,
                        quick=args.quick, device=args.device, workers=args.workers), progress=not args.quiet)


def _cmd_table(args: argparse.Namespace) -> None:
    _require_db(args.db)
    store = ResultStore(args.db)
    kinds = {run.kind for run in store.runs(models=args.model)}
    if not kinds:
        raise UsageError(f"no runs in {args.db}" + (f" for {', '.join(args.model)}" if args.model else ""))
    if "corruption" in kinds:
        print(corruption_table(store, args.model, args.format))
    if "attack" in kinds:
        print(attack_tables(store, args.model, args.format))


def _cmd_plot(args: argparse.Namespace) -> None:
    _require_db(args.db)
    draw = plot_attacks if args.kind == "attack" else plot_corruptions
    print(f"wrote {draw(ResultStore(args.db), args.out, args.model)}")


def _read_summary(path: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file; pass run summaries written with --json") from None
    except json.JSONDecodeError as error:
        raise UsageError(f"{path}: not a JSON run summary ({error})") from None


def _cmd_compare(args: argparse.Namespace) -> int:
    differences = compare(_read_summary(args.baseline), _read_summary(args.current))
    print(comparison_table(differences, args.max_increase))
    worse = [d for d in differences if d.worse_by is not None and d.worse_by > args.max_increase]
    if worse:
        print(f"\n{len(worse)} metric(s) worse by more than {args.max_increase} points")
        return 1
    return 0


def _require_db(path: str) -> None:
    if not Path(path).is_file():
        raise UsageError(f"results database {path} does not exist; run an evaluation first or pass --db")


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="architecture or checkpoint record (gcp-robust models)")
    parser.add_argument("--checkpoint", help="weights file (.pth.tar/.th)")
    parser.add_argument("--num-classes", type=int)


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, help="a fixed, class-balanced, seeded subset of N images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--device", help="cpu or cuda (default: cuda when present)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gcp-robust", description="Robustness benchmarking of GAP and GCP (iSQRT-COV) classifiers."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    models = commands.add_parser("models", help="list architectures and released checkpoints")
    models.add_argument("--pattern", help="glob on the name, e.g. 'resnet50*' or '*GCP*'")
    models.add_argument("--format", choices=("table", "json"), default="table")
    models.set_defaults(run=_cmd_models)

    checkpoint = commands.add_parser("checkpoint", help="identify a checkpoint file and check that it loads")
    checkpoint.add_argument("path", help="a .pth.tar/.th file (original release format or a bare state_dict)")
    checkpoint.add_argument("--model", help="architecture or checkpoint record to load it into")
    checkpoint.add_argument("--num-classes", type=int, help="classifier size (default: the architecture's)")
    checkpoint.set_defaults(run=_cmd_checkpoint)

    corrupt = commands.add_parser(
        "corrupt", help="write a corrupted copy of an ImageFolder (<corruption>/<severity>/<class>/<file>)"
    )
    corrupt.add_argument("--data", required=True, help="ImageFolder root: <class>/<image>")
    corrupt.add_argument("--out", required=True, help="output root; existing files are kept (resume)")
    corrupt.add_argument("--protocol", choices=PROTOCOLS, default="imagenet-c")
    corrupt.add_argument("--corruptions", default="common",
                         help="comma-separated names, or common|extra|all|noise|blur|weather|digital")
    corrupt.add_argument("--severities", type=_int_list, default=[1, 2, 3, 4, 5], help="e.g. 1,3,5")
    corrupt.add_argument("--backend", choices=BACKENDS, default="native")
    corrupt.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    corrupt.add_argument("--batch-size", type=int, default=64)
    corrupt.add_argument("--workers", type=int, default=0, help="DataLoader decode workers")
    corrupt.add_argument("--seed", type=int, default=0)
    corrupt.add_argument("--size", type=int, help="resize+center-crop side (default 224; 32 for cifar10-c)")
    corrupt.add_argument("--quiet", action="store_true", help="no progress bar")
    corrupt.set_defaults(run=_cmd_corrupt)

    evaluate = commands.add_parser("eval-corruption", help="clean error, CE, mCE and relative mCE of a model")
    _add_model_options(evaluate)
    evaluate.add_argument("--data", required=True,
                          help="clean ImageFolder (generated), ImageNet-C root, or CIFAR-10-C folder")
    evaluate.add_argument("--source", choices=SOURCES, default="generated")
    evaluate.add_argument("--clean-data", help="clean ImageFolder for the clean error with released sources")
    evaluate.add_argument("--class-index", help="imagenet_class_index.json or synset_words.txt for class subsets")
    evaluate.add_argument("--protocol", choices=PROTOCOLS, default="imagenet-c")
    evaluate.add_argument("--backend", choices=BACKENDS, default="native")
    evaluate.add_argument("--corruptions", default="common",
                          help="comma-separated names, or common|extra|all|noise|blur|weather|digital")
    evaluate.add_argument("--severities", type=_int_list, default=[1, 2, 3, 4, 5])
    _add_run_options(evaluate)
    evaluate.add_argument("--no-autocast", action="store_true", help="float32 on the GPU instead of bf16")
    evaluate.add_argument("--strict", action="store_true", help="fail on unreadable images instead of skipping")
    evaluate.add_argument("--db", default=str(DEFAULT_DB))
    evaluate.add_argument("--json", help="write the run summary here")
    evaluate.add_argument("--quiet", action="store_true")
    evaluate.set_defaults(run=_cmd_eval_corruption)

    attack = commands.add_parser("eval-attack", help="robust accuracy under adversarial attacks across epsilons")
    _add_model_options(attack)
    attack.add_argument("--data", required=True, help="clean ImageFolder")
    attack.add_argument("--class-index", help="imagenet_class_index.json or synset_words.txt for class subsets")
    attack.add_argument("--attacks", default="linf-pgd", help=f"comma-separated: {', '.join(ATTACKS)}")
    attack.add_argument("--eps", required=True, help="comma-separated, fractions allowed: 0,1/255,2/255,4/255")
    attack.add_argument("--steps", type=int, help="iterations (default: the attack's foolbox default)")
    attack.add_argument("--restarts", type=int, default=1)
    attack.add_argument("--rel-stepsize", type=float, help="step size relative to eps (default: foolbox's)")
    attack.add_argument("--backend", choices=ATTACK_BACKENDS, default="native",
                        help="native: batched PGD for linf-pgd/l2-pgd, foolbox for the others; foolbox: all")
    attack.add_argument("--bf16", action="store_true", help="native attacks under bf16 autocast (CUDA only)")
    _add_run_options(attack)
    attack.add_argument("--db", default=str(DEFAULT_DB))
    attack.add_argument("--json", help="write the run summary here")
    attack.add_argument("--quiet", action="store_true")
    attack.set_defaults(run=_cmd_eval_attack)

    trainer = commands.add_parser("train", help="train a GAP or GCP model with the paper's LR recipes")
    trainer.add_argument("--model", required=True, help="architecture (gcp-robust models)")
    trainer.add_argument("--data", required=True, help="ImageFolder root with train/ and val/, or 'builtin'")
    trainer.add_argument("--lr-mode", choices=LR_MODES, default="LRnorm")
    trainer.add_argument("--epochs", type=int, help="default: the recipe's (the schedule stretches to it)")
    trainer.add_argument("--batch-size", type=int, help="global batch size (default: the recipe's)")
    trainer.add_argument("--lr", type=float, help="initial learning rate (default: the recipe's)")
    trainer.add_argument("--weight-decay", type=float)
    trainer.add_argument("--num-classes", type=int, help="default: the number of class folders")
    trainer.add_argument("--out", default="runs/train", help="checkpoints, log.jsonl")
    trainer.add_argument("--resume", help="a checkpoint.pth.tar written by a previous run")
    trainer.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    trainer.add_argument("--workers", type=int, default=4)
    trainer.add_argument("--seed", type=int, default=0)
    trainer.add_argument("--no-autocast", action="store_true", help="float32 on the GPU instead of bf16")
    trainer.add_argument("--plot", help="write a learning-curve PNG here at the end")
    trainer.add_argument("--compare", nargs="*", default=[], help="more log.jsonl files for the same plot")
    trainer.add_argument("--quiet", action="store_true")
    trainer.set_defaults(run=_cmd_train)

    demo = commands.add_parser("demo", help="train GAP and GCP on built-in photos, evaluate, compare (minutes)")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--data", help="ImageFolder root with train/ and val/ instead of the built-in set")
    demo.add_argument("--epochs", type=int, default=5)
    demo.add_argument("--quick", action="store_true", help="a reduced setting (tiny data, 1 epoch)")
    demo.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    demo.add_argument("--workers", type=int, default=0)
    demo.add_argument("--quiet", action="store_true")
    demo.set_defaults(run=_cmd_demo)

    table = commands.add_parser("table", help="corruption (CE, mCE) and attack (robust accuracy) tables of stored runs")
    table.add_argument("--db", default=str(DEFAULT_DB))
    table.add_argument("--model", action="append", help="only these models (repeatable)")
    table.add_argument("--format", choices=TABLE_FORMATS, default="github")
    table.set_defaults(run=_cmd_table)

    plot = commands.add_parser("plot", help="error vs severity, or robust accuracy vs eps, one line per model")
    plot.add_argument("--db", default=str(DEFAULT_DB))
    plot.add_argument("--model", action="append")
    plot.add_argument("--out", required=True, help="PNG file")
    plot.add_argument("--kind", choices=("corruption", "attack"), default="corruption",
                      help="error vs severity (corruption) or robust accuracy vs eps (attack)")
    plot.set_defaults(run=_cmd_plot)

    comparison = commands.add_parser("compare", help="regression table of two --json summaries (exit 1 if worse)")
    comparison.add_argument("baseline")
    comparison.add_argument("current")
    comparison.add_argument("--max-increase", type=float, default=1.0,
                            help="largest tolerated worsening in percentage points (default 1.0)")
    comparison.set_defaults(run=_cmd_compare)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int | None] = args.run
    try:
        return run(args) or 0
    except (UsageError, CheckpointError, UnknownModelError, CorruptionError, AttackError, FileNotFoundError,
            ValueError) as error:
        print(f"gcp-robust {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
